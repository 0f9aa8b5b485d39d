"""Pure functions over several curves of one range test.

* The aggregate curve of K sweeps is their pointwise median raw loss, over the
  points that a strict majority of the curves reached (:func:`median_curve`); it
  is then smoothed, stopped and judged like any single curve.
* An independent run is scored by the mean raw loss of its last steps
  (:func:`end_losses`); a curve of scores ends where the stop rule fires on it
  (:func:`score_stop`), unsmoothed.

Both are aggregates, not raw losses: a non-finite raw loss (NaN included) enters
them as +inf, so a NaN raw loss shows there as ``inf``. The raw losses themselves
(``SweepEnsemble.sweep_losses`` of sweeps, ``IndependentRuns.run_losses``) keep
every value as recorded, NaN as NaN.
"""

from __future__ import annotations

import numpy as np

from lrfind_core.stopping import find_stop


def pad_curves(curves: list[np.ndarray], length: int) -> np.ndarray:
    """Stack 1-D curves into (K, length), cut to ``length`` points or padded with NaN."""
    padded = np.full((len(curves), length), np.nan)
    for row, curve in enumerate(curves):
        values = np.asarray(curve[:length], dtype=np.float64)
        padded[row, : len(values)] = values
    return padded


def median_curve(curves: list[np.ndarray]) -> np.ndarray:
    """Pointwise median raw loss over the points a strict majority of curves reached.

    A point where some curve recorded a non-finite loss (NaN, +inf or -inf) counts
    that curve as +inf for the median (it diverged there), so the median stays
    honest: where that decides the median, it is +inf, never NaN. The curves passed
    in are not changed.
    """
    lengths = np.array([len(curve) for curve in curves])
    majority = len(curves) // 2 + 1
    reach = int(np.sort(lengths)[::-1][majority - 1])
    stacked = np.full((len(curves), reach), np.nan)
    for row, curve in enumerate(curves):
        values = np.asarray(curve[:reach], dtype=np.float64)
        stacked[row, : len(values)] = np.where(np.isfinite(values), values, np.inf)
    return np.nanmedian(stacked, axis=0) if reach else np.empty(0)


def spread_in_decades(values: list[float | None]) -> float | None:
    """``log10(max / min)`` of the LRs that are not None; None if fewer than two."""
    present = [value for value in values if value is not None]
    if len(present) < 2:
        return None
    return float(np.log10(max(present)) - np.log10(min(present)))


def end_losses(run_losses: np.ndarray, average_last: int) -> np.ndarray:
    """Score of each independent run: the mean raw loss of its last ``average_last`` steps.

    ``run_losses`` is (M, n). A run with any non-finite loss (NaN, +inf or -inf)
    scores +inf (it diverged), so the stop rule cuts the curve there: a score is
    never NaN. ``run_losses`` is not changed.
    """
    losses = np.asarray(run_losses, dtype=np.float64)
    scores = losses[:, -average_last:].mean(axis=1)
    return np.where(np.all(np.isfinite(losses), axis=1), scores, np.inf)


def score_stop(scores: np.ndarray, diverge_factor: float) -> int | None:
    """Index of the run whose score fires the stop rule (runs in increasing LR order).

    Scores are judged unsmoothed (each is a run of its own). None if none fires.
    """
    stop, _ = find_stop(scores, scores, diverge_factor=diverge_factor)
    return stop
