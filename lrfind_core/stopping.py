"""The stop rule: when has the range test diverged?

Let ``s_t`` be the smoothed loss, ``b_t = min(s_0..s_t)`` the best smoothed loss so
far (this step included), ``f = s_0`` the first smoothed loss and ``k`` the
``diverge_factor`` (> 1). The sweep stops at the first step ``t`` where

* the raw loss is NaN or +-inf (code :data:`STOP_NON_FINITE`), or
* it has diverged (code :data:`STOP_DIVERGED`):

  - if ``b_t > 0``: ``s_t > k * b_t``, the classic ratio rule of fastai (k=4) and
    torch-lr-finder (k=5), bit for bit;
  - if ``b_t <= 0``: ``s_t - b_t > (k - 1) * max(|b_t|, f - b_t)``. The ratio rule
    means nothing for losses at or below zero (it would stop at once, or never).
    This rule is its continuation: for ``b_t > 0`` the ratio rule is the same as
    ``s_t - b_t > (k - 1) * |b_t|``. The ``f - b_t`` term (how far the loss has
    fallen) keeps a loss that crosses zero from stopping on noise.

The online form (:func:`stop_update`) is written against an array namespace ``xp``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from lrfind_core.array_namespace import python_scalars

STOP_NONE = 0
STOP_NON_FINITE = 1
STOP_DIVERGED = 2

STOP_REASONS = {
    STOP_NON_FINITE: "non-finite loss",
    STOP_DIVERGED: "diverged",
}


class StopState(NamedTuple):
    """Online stop-rule state: best and first smoothed loss so far."""

    best: Any
    first: Any


def stop_init(xp: Any = python_scalars, dtype: Any = None) -> StopState:
    """Fresh state before the first loss."""
    return StopState(best=xp.asarray(0.0, dtype=dtype), first=xp.asarray(0.0, dtype=dtype))


def stop_update(
    state: StopState,
    loss: Any,
    smoothed: Any,
    is_first: Any,
    *,
    diverge_factor: float,
    xp: Any = python_scalars,
) -> tuple[StopState, Any]:
    """Apply the rule to one step; return the new state and the stop code (0, 1 or 2).

    ``loss`` is the raw loss, ``smoothed`` its smoothed value, ``is_first`` whether
    this is step 0. ``diverge_factor`` is a Python constant.
    """
    best = xp.where(is_first, smoothed, xp.minimum(state.best, smoothed))
    first = xp.where(is_first, smoothed, state.first)
    ratio_rule = smoothed > diverge_factor * best
    scale = xp.maximum(xp.abs(best), first - best)
    gap_rule = (smoothed - best) > (diverge_factor - 1.0) * scale
    diverged = xp.where(best > 0, ratio_rule, gap_rule)
    code = xp.where(
        xp.logical_not(xp.isfinite(loss)),
        STOP_NON_FINITE,
        xp.where(diverged, STOP_DIVERGED, STOP_NONE),
    )
    return StopState(best, first), code


def find_stop(
    losses: Any, smoothed_losses: Any, *, diverge_factor: float
) -> tuple[int | None, int]:
    """First index where the rule fires over whole curves, and its code.

    Returns ``(None, STOP_NONE)`` when the curve never stops. The online rule
    (:func:`stop_update`) is applied to every step at once with numpy: of the
    values it carries, the first smoothed loss is fixed after step 0 and the best
    smoothed loss before step ``t`` is a running minimum, so each step's code is
    the one the online rule gives, in the same float64 operations.
    """
    raw = np.asarray(losses, dtype=np.float64)
    smoothed = np.asarray(smoothed_losses, dtype=np.float64)
    if raw.ndim != 1 or smoothed.ndim != 1:
        raise ValueError(
            f"losses and smoothed_losses must be 1-D curves, got shapes {raw.shape} and "
            f"{smoothed.shape}"
        )
    if raw.shape != smoothed.shape:
        raise ValueError(
            "losses and smoothed_losses must have the same length, got "
            f"{len(raw)} and {len(smoothed)}"
        )
    if raw.size == 0:
        return None, STOP_NONE
    with np.errstate(invalid="ignore", over="ignore"):
        best_before = np.empty_like(smoothed)
        best_before[0] = smoothed[0]
        np.minimum.accumulate(smoothed[:-1], out=best_before[1:])
        is_first = np.zeros(raw.shape, dtype=bool)
        is_first[0] = True
        state = StopState(best=best_before, first=np.full_like(smoothed, smoothed[0]))
        _, codes = stop_update(
            state, raw, smoothed, is_first, diverge_factor=diverge_factor, xp=np
        )
    fired = np.flatnonzero(codes)
    if fired.size == 0:
        return None, STOP_NONE
    return int(fired[0]), int(codes[fired[0]])
