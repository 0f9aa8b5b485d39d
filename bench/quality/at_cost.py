"""Every method at its cost: how close each way of getting an LR comes to the oracle,
against the optimizer steps it trained to get there.

A *method* here is a finder mode with its default use (:data:`METHODS`): the
``minimum`` rule read off a classic sweep, off 5 sweeps or off independent runs,
scaled by the factor for the protocol fit on the other tasks (LOTO, as in the
per-rule tables), or by the factor the library ships; or the search at a budget
of 0.3, 1 or 3 times T, whose LR is for the protocol it searched under, with its
horizon exponent fit on the other tasks (LOTO), or as the library returns it.
Its *cost* on a case is the optimizer steps ``lr_find`` trained
(``result.meta["steps_trained"]``: every sweep, run or candidate; validation
forward passes not counted) over the task's training steps T.

:data:`TASK_GROUPS` names the groups of tasks reported apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quality.scoring import WITHIN, summarize

RULE = "minimum"
"""The suggestion rule of the curve modes in this comparison (the library's default)."""


@dataclass(frozen=True)
class Method:
    """One row of the comparison: its name, finder mode and how its LR is made.

    ``use``: ``"loto"`` (curve LR x the protocol's factor fit on the other tasks),
    ``"shipped"`` (the library's own schedule-aware LR, ``result.suggest(for_schedule=
    protocol)``), ``"search_loto"`` (the search's measured LR scaled to the training
    by the horizon exponent fit on the other tasks, :mod:`quality.horizon_fit`) or
    ``"search"`` (the search's LR for the protocol as it is, its exponent fit on
    every task: in-sample).
    """

    name: str
    mode: str
    use: str
    description: str


METHODS: tuple[Method, ...] = (
    Method("classic", "classic", "loto",
           "one sweep; minimum x the protocol's factor fit on the other tasks (LOTO)"),
    Method("classic, shipped factor", "classic", "shipped",
           "one sweep; minimum x the factor lrfind ships for the protocol "
           "(fit on the first 8 tasks: in-sample there)"),
    Method("k_sweeps", "k_sweeps", "loto", "5 sweeps, median curve; minimum x LOTO factor"),
    Method("independent", "independent", "loto",
           "24 runs of 20 steps; minimum x LOTO factor"),
    Method("search_0.3", "search_0.3", "search_loto",
           "search, budget 0.3 T; horizon exponent fit on the other tasks (LOTO)"),
    Method("search_1", "search_1", "search_loto",
           "search, budget 1 T; horizon exponent fit on the other tasks (LOTO)"),
    Method("search_3", "search_3", "search_loto",
           "search, budget 3 T; horizon exponent fit on the other tasks (LOTO)"),
    Method("search_1, shipped", "search_1", "search",
           "search, budget 1 T; its LR as lrfind returns it (exponent fit on every task: "
           "in-sample)"),
)
"""The methods compared at their cost, in report order."""

TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "fine-tuning": ("prose_finetune_lm_adamw", "syntax_finetune_cls_adamw"),
    "small data": ("cancer_small_mlp_adam", "diabetes_small_mlp_sgd", "digits_small_mlp_sgd"),
    "long budget": ("tabular_long_mlp_adamw", "friedman_long_mlp_sgd"),
    "tabular_long_mlp_adamw": ("tabular_long_mlp_adamw",),
}
"""Groups of tasks reported apart (a group with none of the tasks run is left out)."""


def _stats(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    regrets = np.array([row["regret"] for row in rows])
    return {
        "cases": len(rows),
        "median_regret": float(np.median(regrets)),
        "mean_regret": float(np.mean(regrets)),
        "worst_regret": float(np.max(regrets)),
        "within_10pct": int(np.sum(regrets <= WITHIN)),
    }


def summarize_at_cost(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The scored rows of one method and protocol (each with its ``cost``, steps / T):
    regret statistics, the worst case, the cost's median and range, and per task group."""
    costs = np.array([row["cost"] for row in rows])
    tasks = {row["task"] for row in rows}
    groups = {
        name: _stats([row for row in rows if row["task"] in members])
        for name, members in TASK_GROUPS.items()
        if tasks & set(members)
    }
    worst = max(rows, key=lambda row: row["regret"])
    return {
        **summarize(rows),
        "worst_regret": float(worst["regret"]),
        "worst_case": f"{worst['task']}/seed {worst['seed']}",
        "median_cost": float(np.median(costs)),
        "min_cost": float(np.min(costs)),
        "max_cost": float(np.max(costs)),
        "groups": groups,
        "rows": list(rows),
    }
