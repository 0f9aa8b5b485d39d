"""The benchmark's arithmetic: oracle optima, regrets, calibration factors (numpy only).

Definitions (per protocol):

* case: a (task, seed) pair; the seed fixes the initial weights and the data order.
* score of a run: its final validation loss, capped at the case's untrained loss.
* oracle best of a case: the lowest score over the LR grid for that seed, at the
  case's oracle-best LR.
* regret of an LR: ``score(lr) / oracle_best - 1``; 0.1 means a 10% higher loss
  than the best grid LR. It can be slightly negative: an LR between grid points
  may beat them all. No suggestion scores the cap.
* offset of a suggestion: ``log10(suggested / oracle_best_lr)``, in decades (signed).
* factor of a rule: ``10 ** median(log10(oracle_best_lr / suggested))`` over the
  cases with a suggestion, rounded to a quarter decade.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

WITHIN = 0.10
"""A case counts as a hit when its regret is at most this."""


def log_grid(points: int, low: float, high: float) -> list[float]:
    """``points`` log-spaced LRs from ``low`` to ``high``, each rounded to 4 significant digits."""
    values = np.logspace(np.log10(low), np.log10(high), points)
    return [float(f"{value:.4g}") for value in values]


def oracle_summary(grid: Sequence[float], losses: np.ndarray, caps: Sequence[float]) -> dict:
    """The oracle of one (task, protocol) from its ``(seeds, grid points)`` scores.

    Returns the per-seed best LR and loss, the mean curve over seeds and its best
    LR, and whether every optimum lies strictly inside the grid.
    """
    losses = np.asarray(losses, dtype=np.float64)
    best_index = np.argmin(losses, axis=1)
    mean = losses.mean(axis=0)
    mean_index = int(np.argmin(mean))
    last = len(grid) - 1
    indices = [*best_index.tolist(), mean_index]
    return {
        "grid": list(grid),
        "val_loss": losses.tolist(),
        "caps": list(caps),
        "mean_val_loss": mean.tolist(),
        "best_index": best_index.tolist(),
        "best_lr": [grid[i] for i in best_index],
        "best_loss": losses[np.arange(len(losses)), best_index].tolist(),
        "mean_best_index": mean_index,
        "mean_best_lr": grid[mean_index],
        "mean_best_loss": float(mean[mean_index]),
        "inside_grid": all(0 < i < last for i in indices),
    }


def quarter_decade(offset: float) -> float:
    """``10 ** offset`` with ``offset`` rounded to the nearest quarter decade."""
    return float(10.0 ** (np.round(4.0 * offset) / 4.0))


def fit_factor(cases: Sequence[dict[str, Any]]) -> float:
    """The rule's factor on ``cases``: quarter-decade-rounded median of
    ``log10(best_lr / suggested)`` over the cases with a suggestion (1 if none has one)."""
    offsets = [
        np.log10(case["best_lr"] / case["suggested"])
        for case in cases
        if case["suggested"] is not None
    ]
    return quarter_decade(float(np.median(offsets))) if offsets else 1.0


def loto_factors(cases: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per task, the factor fit on the cases of all other tasks (leave one task out)."""
    tasks = sorted({case["task"] for case in cases})
    return {
        task: fit_factor([case for case in cases if case["task"] != task]) for task in tasks
    }


def applied_lr(suggested: float | None, factor: float) -> float | None:
    """The LR trained for a suggestion: suggested times the factor, to 4 significant digits."""
    return None if suggested is None else float(f"{suggested * factor:.4g}")


def score_cases(
    cases: Sequence[dict[str, Any]],
    factors: dict[str, float],
    score: Callable[[str, int, float], float],
) -> list[dict[str, Any]]:
    """Each case with the LR trained (suggestion x its task's factor), its score and regret."""
    rows = []
    for case in cases:
        lr = applied_lr(case["suggested"], factors[case["task"]])
        loss = case["cap"] if lr is None else score(case["task"], case["seed"], lr)
        rows.append({
            **case,
            "factor": factors[case["task"]],
            "lr": lr,
            "val_loss": loss,
            "regret": loss / case["best_loss"] - 1.0,
            "log10_offset": None if lr is None else float(np.log10(lr / case["best_lr"])),
        })
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median regret, hits within 10%, median and IQR of the offset, suggestions missing."""
    regrets = np.array([row["regret"] for row in rows])
    offsets = np.array([row["log10_offset"] for row in rows if row["log10_offset"] is not None])
    quartiles = np.percentile(offsets, [25, 75]) if len(offsets) else [np.nan, np.nan]
    return {
        "cases": len(rows),
        "median_regret": float(np.median(regrets)),
        "mean_regret": float(np.mean(regrets)),
        "within_10pct": int(np.sum(regrets <= WITHIN)),
        "median_log10_offset": float(np.median(offsets)) if len(offsets) else None,
        "iqr_log10_offset": float(quartiles[1] - quartiles[0]) if len(offsets) else None,
        "missing": int(sum(row["lr"] is None for row in rows)),
    }


def grid_regrets(oracles: dict[str, dict[str, Any]], task: str, index: int) -> list[float]:
    """Per seed of ``task``, the regret of grid LR ``index`` (from the oracle's own runs)."""
    oracle = oracles[task]
    return [
        losses[index] / best - 1.0
        for losses, best in zip(oracle["val_loss"], oracle["best_loss"], strict=True)
    ]


def fixed_lr_baselines(oracles: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Finder-free references for one protocol, from the oracle's runs alone.

    * ``task_best``: each task at its own best grid LR of the mean curve (what a
      perfect one-number-per-task rule could reach; the floor of the table).
    * ``fixed_loto``: one LR for every task, the grid LR with the lowest median
      regret over the other tasks' cases (what "just use a default LR" gets).
    """
    tasks = list(oracles)
    task_best = [
        regret
        for task in tasks
        for regret in grid_regrets(oracles, task, oracles[task]["mean_best_index"])
    ]
    points = len(next(iter(oracles.values()))["grid"])

    def best_fixed(pool: list[str]) -> int:
        medians = [
            np.median([r for task in pool for r in grid_regrets(oracles, task, index)])
            for index in range(points)
        ]
        return int(np.argmin(medians))

    loto_rows, loto_lrs = [], {}
    for task in tasks:
        index = best_fixed([other for other in tasks if other != task])
        loto_lrs[task] = oracles[task]["grid"][index]
        loto_rows += grid_regrets(oracles, task, index)
    overall = best_fixed(tasks)

    def stats(regrets: list[float]) -> dict[str, Any]:
        values = np.array(regrets)
        return {
            "cases": len(values),
            "median_regret": float(np.median(values)),
            "mean_regret": float(np.mean(values)),
            "within_10pct": int(np.sum(values <= WITHIN)),
        }

    return {
        "task_best": stats(task_best),
        "fixed_loto": {**stats(loto_rows), "lr_per_task": loto_lrs},
        "fixed_all_tasks_lr": next(iter(oracles.values()))["grid"][overall],
    }
