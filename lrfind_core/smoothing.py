"""Exponentially weighted average (EWA) of the loss, online and over whole curves.

With ``beta`` the weight of the past and ``alpha = 1 - beta`` the weight of the new
loss ``x_t``:

* ``debias=True`` (fastai, Lightning, lrfind): ``a_t = beta * a_{t-1} + alpha * x_t``
  with ``a_{-1} = 0``, reported as ``a_t / (1 - beta ** (t + 1))``. The first
  smoothed value equals the first loss and no early value is biased toward 0.
* ``debias=False`` (torch-lr-finder with ``smooth_f = alpha``): ``a_0 = x_0``, then
  ``a_t = w * x_t + (1 - w) * a_{t-1}``, reported as ``a_t``, where ``w`` is
  ``alpha`` as the short decimal it stands for (``beta=0.95`` gives ``w = 0.05``
  exactly, where ``1 - 0.95`` is 0.050000000000000044), in torch-lr-finder's order
  of operations, so its curves are reproduced bit for bit.

``beta = 0`` turns smoothing off. The online form (:func:`ewa_update`) is written
against an array namespace ``xp`` so the JAX backend runs the very same rule
inside a compiled loop.

Arithmetic (:data:`ARITHMETICS`): whole curves are smoothed in float64
(``"lrfind"``), or as fastai 2.8 smooths them (``"fastai"``, its
``AvgSmoothLoss``): in float32, each step ``a_t = torch.lerp(x_t, a_{t-1}, beta)``
as torch computes it on the CPU (for ``beta >= 0.5``,
``a_{t-1} - (a_{t-1} - x_t) * (1 - beta)`` with one fused multiply-add, the
weight rounded to float32), reported as ``a_t / float32(1 - beta ** (t + 1))``.
That reproduces fastai's recorded curves bit for bit (see
``tests/presets/test_fastai_preset.py``); the float64 rule differs from them by
up to about 1e-6 relative (1.03e-6 measured), mostly because torch rounds the
weight: the new loss weighs ``1 - float32(0.98) = 0.019999981``, 9.5e-7 less
than the 0.02 the debiasing divides by; float32 rounding adds up to 4e-7.
With ``debias=False``, ``"fastai"`` starts from ``a_0 = x_0`` and reports ``a_t``.
"""

from __future__ import annotations

import functools
import math
import struct
from typing import Any, NamedTuple

import numpy as np

from lrfind_core.arguments import check_choice, check_fraction
from lrfind_core.array_namespace import python_scalars

ARITHMETICS = ("lrfind", "fastai")
"""How a whole curve is smoothed and read: lrfind's float64 rules, or fastai 2.8's
own float32 arithmetic (this module's docstring and
:mod:`lrfind_core.suggestion_methods`)."""


class EwaState(NamedTuple):
    """Online EWA state: steps seen, the accumulator, and ``beta ** count``."""

    count: Any
    average: Any
    beta_power: Any


def ewa_init(xp: Any = python_scalars, dtype: Any = None) -> EwaState:
    """Fresh state before the first loss; ``dtype`` is the float dtype to keep."""
    return EwaState(
        count=xp.asarray(0),
        average=xp.asarray(0.0, dtype=dtype),
        beta_power=xp.asarray(1.0, dtype=dtype),
    )


@functools.lru_cache(maxsize=32)
def new_value_weight(beta: float) -> float:
    """torch-lr-finder's ``smooth_f`` for ``beta``: ``1 - beta`` as the decimal it was
    written as (0.95 gives 0.05, not 0.050000000000000044), so that
    ``w * loss + (1 - w) * prev`` matches that tool bit for bit."""
    return float(f"{1.0 - beta:.15g}")


def ewa_update(
    state: EwaState, loss: Any, *, beta: float, debias: bool, xp: Any = python_scalars
) -> tuple[EwaState, Any]:
    """Fold one loss into the average; return the new state and the smoothed loss.

    ``beta`` and ``debias`` are Python constants (static under ``jax.jit``).
    """
    if debias:
        average, beta_power, smoothed = debiased_step(state.average, state.beta_power, loss, beta)
    else:
        average = xp.where(
            state.count == 0, loss, blended(state.average, loss, new_value_weight(beta))
        )
        beta_power = state.beta_power
        smoothed = average
    return EwaState(state.count + 1, average, beta_power), smoothed


def debiased_step(average: Any, beta_power: Any, loss: Any, beta: float) -> tuple[Any, Any, Any]:
    """One debiased step: ``(average, beta ** (t + 1), smoothed)`` (any array namespace)."""
    average = beta * average + (1.0 - beta) * loss
    beta_power = beta_power * beta
    return average, beta_power, average / (1.0 - beta_power)


def blended(average: Any, loss: Any, weight: float) -> Any:
    """One step without debiasing, after the first: ``weight * loss + (1 - weight) * average``."""
    return weight * loss + (1.0 - weight) * average


def ewa_smooth(
    losses: Any, beta: float = 0.98, debias: bool = True, arithmetic: str = "lrfind"
) -> np.ndarray:
    """Smooth a whole curve of losses with the rule in the module docstring, in float64
    (``arithmetic="lrfind"``) or as fastai does (``"fastai"``: float32 values, returned
    as float64).

    Non-finite losses propagate into every later smoothed value.
    """
    beta = check_fraction("beta", beta)
    check_choice("arithmetic", arithmetic, ARITHMETICS)
    values = np.asarray(losses, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"losses must be a 1-D array, got shape {values.shape}")
    if arithmetic == "fastai":
        return fastai_ewa_smooth(values, beta, debias)
    # The online rule's steps on Python floats (no state tuples: ~5x faster, same bits).
    smoothed: list[float] = []
    if debias:
        average, beta_power = 0.0, 1.0
        for loss in values.tolist():
            average, beta_power, value = debiased_step(average, beta_power, loss, beta)
            smoothed.append(value)
    elif len(values):
        weight = new_value_weight(beta)
        smoothed.append(average := float(values[0]))
        for loss in values[1:].tolist():
            smoothed.append(average := blended(average, loss, weight))
    return np.array(smoothed, dtype=np.float64)


def fma_float32(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once to float32, as a fused multiply-add of float32
    operands gives it (``a``, ``b``, ``c`` float32 values held as Python floats).

    The product of two float32 numbers is exact in float64. The sum is rounded to
    odd in float64 (an inexact sum gets its last bit set), and float64's 53 bits are
    at least 2 * 24 + 2, so the final rounding to float32 is that of the exact sum.
    """
    product = a * b
    total = product + c
    if math.isfinite(total):
        # TwoSum: the exact rounding error of product + c.
        virtual = total - product
        error = (product - (total - virtual)) + (c - virtual)
        if error and not struct.unpack("<q", struct.pack("<d", total))[0] & 1:
            total = math.nextafter(total, math.inf if error > 0 else -math.inf)
    return float(np.float32(total))


def fastai_ewa_smooth(values: np.ndarray, beta: float, debias: bool) -> np.ndarray:
    """The EWA of a curve as fastai's ``AvgSmoothLoss`` computes it, in float32:
    ``torch.lerp(loss, average, beta)`` each step, then the division by
    ``float32(1 - beta ** count)``. Returns the float32 values as float64."""
    weight = float(np.float32(beta))
    rest = float(np.float32(1.0) - np.float32(weight))
    smoothed = np.empty_like(values)
    average = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for index, value in enumerate(values.tolist()):
            loss = float(np.float32(value))
            if not debias and index == 0:
                average = loss
            elif weight < 0.5:  # torch.lerp(start, end, w) = start + w * (end - start)
                average = fma_float32(weight, float(np.float32(average - loss)), loss)
            else:  # ... = end - (end - start) * (1 - w)
                average = fma_float32(-float(np.float32(average - loss)), rest, average)
            if debias:
                divisor = float(np.float32(1.0 - beta ** (index + 1)))
                smoothed[index] = np.float32(average / divisor)
            else:
                smoothed[index] = average
    return smoothed


def centered_smooth(lrs: Any, losses: Any, width_decades: float) -> np.ndarray:
    """A two-sided reading of a whole curve, with no lag: at each point, the mean of the
    finite losses weighted by a Gaussian of ``width_decades`` (its standard deviation,
    in decades of LR) around the point's LR. Non-finite losses get no weight; a point
    with no finite loss near it is NaN.
    """
    x = np.log10(np.asarray(lrs, dtype=np.float64))
    values = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(values)
    weights = np.exp(-0.5 * ((x[:, None] - x[None, :]) / width_decades) ** 2) * finite[None, :]
    totals = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(finite, values, 0.0)) / totals
