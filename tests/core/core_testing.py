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
