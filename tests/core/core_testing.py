"""Shared pieces of the core tests."""

from __future__ import annotations

import numpy as np


def reference_ewa(losses, beta, debias) -> np.ndarray:
    """The smoothing module docstring's formulas, written out step by step."""
    smoothed, average = [], 0.0
    for t, x in enumerate(losses):
        if debias:
            average = beta * average + (1 - beta) * x
            smoothed.append(average / (1 - beta ** (t + 1)))
        else:
            average = x if t == 0 else beta * average + (1 - beta) * x
            smoothed.append(average)
    return np.asarray(smoothed)


def sweeps_result(lrs, curves, settings, *, meta=None, **options):
    """The result of K recorded curves (:func:`lrfind_core.judging.judge_sweeps`)."""
    from lrfind_core import LRFindResult
    from lrfind_core.judging import judge_sweeps

    return LRFindResult.from_judgement(judge_sweeps(lrs, curves, settings, **options), settings,
                                       meta)


def runs_result(lrs, run_losses, settings, *, meta=None, **options):
    """The result of independent runs (:func:`lrfind_core.judging.judge_runs`)."""
    from lrfind_core import LRFindResult
    from lrfind_core.judging import judge_runs

    return LRFindResult.from_judgement(judge_runs(lrs, run_losses, settings, **options),
                                       settings, meta)
