"""Does a sweep's curve carry a signal, or only batch noise?

A sweep whose LRs never reach where the model trains records the loss of one
model on different batches: noise around a constant. Its smoothed curve still has
a lowest point, and a method still reads an LR off it. This module measures how
far the smoothed curve fell, in units of the noise left in the smoothed curve:

* the batch-to-batch noise of the raw losses, ``sigma``, estimated from the
  differences of neighbouring points (``1.4826 * median|x_{t+1} - x_t| / sqrt 2``:
  robust to outliers and to a slow trend, which changes neighbours little);
* the noise of the EWA of such losses, ``sigma * sqrt((1 - beta) / (1 + beta))``
  (the stationary spread of an EWA of independent noise);
* the fall: the first judged smoothed value minus the lowest one.

On a curve of pure noise the fall is the spread of a noisy running average's
lowest point below its start: a median of about 2 units. The warning fires below
:data:`MIN_FALL_IN_NOISE` (``bench/curve_signal_check.py``, committed as
``bench/curve_signal_check.json``): on 79%, 86% and 93% of pure-noise curves of 50,
100 and 200 points; on none of the quality benchmark's real classic and K-sweep
curves that ran to their end (39, lowest fall 14.2 units), nor, counting those
that stopped too, of all 90 (lowest 7.9). It is only given for a curve that ran
to its end: one that stopped did reach LRs that change the loss. A warning is a
hint, not a proof: a noise curve can fall 5 units by chance, and a real one could
fall less.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MIN_FALL_IN_NOISE = 5.0
"""A smoothed curve that falls by less than this many units of its own noise may be
noise: the user is told."""
MIN_POINTS = 20
"""Fewer judged points than this (a short validation curve) are not measured."""


def fall_in_noise_units(
    losses: np.ndarray, smoothed: np.ndarray, begin: int, beta: float
) -> tuple[float, float] | None:
    """``(fall / noise of the smoothed curve, sigma)`` of the points from ``begin`` on,
    up to the first non-finite loss; None with fewer than :data:`MIN_POINTS` of them
    or no measurable noise (a noiseless curve: any fall is signal)."""
    losses = np.asarray(losses, dtype=np.float64)[begin:]
    smoothed = np.asarray(smoothed, dtype=np.float64)[begin:]
    finite = ~np.isfinite(losses) | ~np.isfinite(smoothed)
    end = int(np.argmax(finite)) if np.any(finite) else len(losses)
    if end < MIN_POINTS:
        return None
    steps = np.diff(losses[:end])
    sigma = 1.4826 * float(np.median(np.abs(steps))) / math.sqrt(2.0)
    noise = sigma * math.sqrt((1.0 - beta) / (1.0 + beta))
    if not noise > 0.0:
        return None
    fall = float(smoothed[0] - np.min(smoothed[:end]))
    return fall / noise, sigma


def sweep_fall_in_noise_units(result: Any) -> tuple[float, float] | None:
    """:func:`fall_in_noise_units` of a result's judged curve, for a classic sweep (or
    the median of K) that ran to its end; None for a curve that stopped (its loss
    blew up, so the range did reach LRs that change it), for independent runs
    (unsmoothed scores) and for a search (its answer comes from its candidates)."""
    settings = result.settings
    if result.stop_step is not None or result.search is not None or (
            settings.mode == "independent"):
        return None
    begin = result.planned_points // 10 if settings.skip_start is None else settings.skip_start
    return fall_in_noise_units(result.losses, result.smoothed_losses, begin, settings.beta)


__all__ = ["MIN_FALL_IN_NOISE", "MIN_POINTS", "fall_in_noise_units",
           "sweep_fall_in_noise_units"]
