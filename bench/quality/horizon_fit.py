"""The search's horizon exponent, fit leave-one-task-out on the oracle grids.

The search measures the best LR of runs of ``h`` steps and scales it by
``(h / T) ** c`` for the ``T`` steps of the planned training
(:mod:`lrfind_core.horizon`, which ships ``c`` fit on every task). To score the
search honestly, each task gets ``c`` fit on the *other* tasks: the ``c`` of
:data:`EXPONENTS` whose scaled LRs have the lowest mean ``log(1 + regret)``
there, the regret read off each case's oracle grid by interpolating its
validation losses linearly in log-LR (no training run needed for a fit; the LRs
this gives are then trained and scored like any other).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lrfind_core.horizon import horizon_factor

EXPONENTS: tuple[float, ...] = tuple(float(c) for c in np.round(np.arange(0.0, 1.51, 0.05), 2))
"""The exponents a fit chooses among."""


def interpolated_loss(grid: Sequence[float], losses: Sequence[float], lr: float) -> float:
    """The validation loss at ``lr`` read off one seed's oracle grid: linear in log10(LR)
    between the grid's finite points, the end value beyond them."""
    x = np.log10(np.asarray(grid, dtype=np.float64))
    y = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(y)
    return float(np.interp(np.log10(lr), x[finite], y[finite]))


def scaled_lr(case: dict[str, Any], exponent: float) -> float | None:
    """The case's measured LR scaled from its horizon to its training by ``exponent``."""
    if case["measured_lr"] is None:
        return None
    return case["measured_lr"] * horizon_factor(case["horizon"], case["training_steps"],
                                                exponent)


def mean_log_regret(cases: Sequence[dict[str, Any]], exponent: float) -> float:
    """Mean ``log(1 + regret)`` of the cases' scaled LRs on their oracle grids (a case
    with no LR counts as its cap)."""
    values = []
    for case in cases:
        lr = scaled_lr(case, exponent)
        loss = case["cap"] if lr is None else interpolated_loss(case["grid"], case["losses"], lr)
        values.append(np.log(loss / case["best_loss"]))
    return float(np.mean(values))


def fit_exponent(cases: Sequence[dict[str, Any]]) -> float:
    """The exponent of :data:`EXPONENTS` with the lowest :func:`mean_log_regret`."""
    return min(EXPONENTS, key=lambda exponent: mean_log_regret(cases, exponent))


def loto_exponents(cases: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per task, the exponent fit on the cases of every other task."""
    tasks = sorted({case["task"] for case in cases})
    return {task: fit_exponent([case for case in cases if case["task"] != task])
            for task in tasks}


__all__ = ["EXPONENTS", "fit_exponent", "interpolated_loss", "loto_exponents",
           "mean_log_regret", "scaled_lr"]
