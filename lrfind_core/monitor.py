"""Online sweep monitor: smoothing plus stop rule, one call per recorded loss.

This is what a backend runs while sweeping (the torch backend on host floats,
the JAX backend on ``jax.numpy`` inside its compiled loop). The final result is
always recomputed in float64 from the raw losses by :mod:`lrfind_core.result`,
so both backends report the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

from lrfind_core.array_namespace import python_scalars
from lrfind_core.smoothing import (
    EwaState,
    blended,
    debiased_step,
    ewa_init,
    ewa_update,
    new_value_weight,
)
from lrfind_core.stopping import (
    STOP_DIVERGED,
    STOP_NON_FINITE,
    STOP_NONE,
    StopState,
    stop_init,
    stop_update,
)


class MonitorSettings(NamedTuple):
    """Static settings: EWA ``beta``, ``debias`` and the ``diverge_factor``."""

    beta: float
    debias: bool
    diverge_factor: float


class MonitorState(NamedTuple):
    """The online smoothing and stop-rule state."""

    ewa: EwaState
    stop: StopState


def monitor_init(xp: Any = python_scalars, dtype: Any = None) -> MonitorState:
    """Fresh monitor state; ``dtype`` is the float dtype of the running values."""
    return MonitorState(ewa_init(xp, dtype), stop_init(xp, dtype))


def monitor_update(
    state: MonitorState, loss: Any, settings: MonitorSettings, xp: Any = python_scalars
) -> tuple[MonitorState, Any, Any]:
    """Fold in one raw loss; return ``(state, smoothed_loss, stop_code)``."""
    is_first = state.ewa.count == 0
    ewa, smoothed = ewa_update(state.ewa, loss, beta=settings.beta, debias=settings.debias, xp=xp)
    stop, code = stop_update(
        state.stop, loss, smoothed, is_first, diverge_factor=settings.diverge_factor, xp=xp
    )
    return MonitorState(ewa, stop), smoothed, code


def host_update(state: MonitorState, loss: float, settings: MonitorSettings) -> tuple[
    MonitorState, int
]:
    """:func:`monitor_update` on the host: one Python float in, ``(state, stop_code)`` out.

    The same float64 operations as ``monitor_update(state, loss, settings)`` with
    the default ``python_scalars`` namespace, in about a quarter of the time
    (a backend runs it once per optimizer step, between its framework's work,
    where each Python call costs the most). The smoothing shares its steps with
    :mod:`lrfind_core.smoothing`; the stop rule below is
    :func:`~lrfind_core.stopping.stop_update` with each select made in Python, and
    ``tests/core/test_core_monitor_host.py`` keeps the two equal bit for bit.
    """
    ewa, stop = state
    first_point = ewa.count == 0
    if settings.debias:
        average, beta_power, smoothed = debiased_step(ewa.average, ewa.beta_power, loss,
                                                      settings.beta)
    else:
        beta_power = ewa.beta_power
        smoothed = average = (loss if first_point else
                              blended(ewa.average, loss, new_value_weight(settings.beta)))
    if first_point:
        best = first = smoothed
    else:
        best, first = stop.best, stop.first
        best = math.nan if best != best or smoothed != smoothed else min(best, smoothed)
    factor = settings.diverge_factor
    if not math.isfinite(loss):
        code = STOP_NON_FINITE
    elif best > 0:
        code = STOP_DIVERGED if smoothed > factor * best else STOP_NONE
    else:
        spread, fall = abs(best), first - best
        scale = math.nan if spread != spread or fall != fall else max(spread, fall)
        code = STOP_DIVERGED if smoothed - best > (factor - 1.0) * scale else STOP_NONE
    return MonitorState(EwaState(ewa.count + 1, average, beta_power), StopState(best, first)), code


def monitor_fold(
    state: MonitorState, losses: Iterable[float], settings: MonitorSettings
) -> tuple[MonitorState, int | None]:
    """Fold raw losses into the monitor in order, up to the first that fires the rule.

    Returns the state after the last loss folded and that loss's offset from the
    start of ``losses`` (None when none fired). A backend checks a growing curve with it,
    a chunk at a time, in time linear in the curve's length.
    """
    for offset, value in enumerate(losses):
        state, code = host_update(state, value, settings)
        if code:
            return state, offset
    return state, None
