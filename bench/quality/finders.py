"""The benchmark's finder runs: which modes, where their results are kept, what they found.

Two kinds of finder mode:

* curve modes (:data:`CURVE_MODES`: ``classic``, ``k_sweeps``, ``independent``)
  run ``lr_find`` once per case (task x seed); every suggestion method reads its
  LR off that one curve, and the LR is scored under both protocols (raw, and with
  a factor per protocol fit leave-one-task-out);
* search modes (:data:`SEARCH_MODES`: ``search_0.3``, ``search_1``, ``search_3``)
  run ``lr_find(mode="search", for_schedule=protocol)`` once per case *and*
  protocol, with ``training_steps`` = the task's budget T and ``budget_steps`` =
  ``round(f * T)`` (raised to the library's minimum budget when below it; both are
  recorded). Its LR is for that protocol and is scored raw, under it only.

Results are saved as ``LRFindResult`` files under ``bench/quality_runs/`` (not
committed; reruns read them instead of running ``lr_find`` again):

* ``<task>/seed<seed>_<mode>.json`` for a curve mode;
* ``<task>/seed<seed>_<mode>_<protocol>_T<T>_<fingerprint>.json`` for a search,
  where the fingerprint (:func:`search_fingerprint`) hashes the search policy's
  source and lrfind's version: a changed policy reruns the searches and nothing else.

The summaries :func:`curve_summary` and :func:`search_summary` are what the
results JSON keeps of each file (suggestions, optimizer steps trained, and for a
search its candidates and choice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import lrfind_core
from lrfind_core import LRFindResult
from lrfind_core.search import minimum_budget
from quality.rules import RESULT_CANDIDATES

CURVE_MODES: dict[str, dict[str, Any]] = {
    "classic": {},
    "k_sweeps": {"num_sweeps": 5},
    "independent": {"mode": "independent"},
}
"""``Settings`` fields of each curve mode (on top of the library defaults)."""

SEARCH_MODES: dict[str, float] = {"search_0.3": 0.3, "search_1": 1.0, "search_3": 3.0}
"""Each search mode's budget as a multiple of the task's training steps T."""

ALL_MODES: tuple[str, ...] = (*CURVE_MODES, *SEARCH_MODES)

MODE_DESCRIPTIONS: dict[str, str] = {
    "classic": "one sweep, 1e-7 to 10 in 100 steps, EWA beta 0.98",
    "k_sweeps": "num_sweeps=5: five such sweeps from the same start, median curve",
    "independent": "mode='independent': 24 LRs 1e-7 to 10, 20 steps each from the same "
    "start on the same batches, scored by the mean of the last 5",
    **{
        mode: f"mode='search', budget_steps=round({fraction:g} T), once per case and protocol"
        for mode, fraction in SEARCH_MODES.items()
    },
}
"""What each finder mode runs, for the report."""

POLICY_FILES: tuple[str, ...] = ("search.py", "smoothing.py", "horizon.py")
"""The files of ``lrfind_core`` whose text is the search policy (the search's plan and
choice, and the lag-free reading of its bracketing sweep)."""


def search_fingerprint() -> str:
    """10 hex digits of a SHA-256 over :data:`POLICY_FILES`' text and lrfind's version."""
    digest = hashlib.sha256(lrfind_core.__version__.encode("utf-8"))
    package = Path(lrfind_core.__file__).resolve().parent
    for name in POLICY_FILES:
        digest.update(b"\0" + name.encode("utf-8") + b"\0")
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:10]


def search_budget(mode: str, training_steps: int) -> tuple[int, int]:
    """``(asked, used)``: ``round(f * T)`` of a search mode, and that raised to the
    library's :func:`~lrfind_core.search.minimum_budget` when below it."""
    asked = round(SEARCH_MODES[mode] * training_steps)
    return asked, max(asked, minimum_budget())


def curve_path(runs_dir: Path, task: str, seed: int, mode: str) -> Path:
    """Where the result of a curve mode's run on a case is saved."""
    return runs_dir / task / f"seed{seed}_{mode}.json"


def search_path(
    runs_dir: Path, task: str, seed: int, mode: str, protocol: str, training_steps: int,
    fingerprint: str,
) -> Path:
    """Where a search's result is saved: keyed by protocol, T and the policy's fingerprint."""
    return runs_dir / task / f"seed{seed}_{mode}_{protocol}_T{training_steps}_{fingerprint}.json"


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when it lies inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def curve_summary(
    path: Path, methods: list[str], root: Path, protocols: tuple[str, ...]
) -> dict[str, Any]:
    """What the results keep of a curve mode's result: each method's LR read off the
    curve, the default method's LR as shipped for each protocol, steps trained."""
    result = LRFindResult.load(path)
    return {
        "path": shown_path(path, root),
        "stop_reason": result.stop_reason,
        "points": len(result.lrs),
        "seconds": result.meta.get("wall_time_s"),
        "steps_trained": int(result.meta["steps_trained"]),
        "suggestions": {
            method: (RESULT_CANDIDATES[method](result) if method in RESULT_CANDIDATES
                     else result.suggest(method, for_schedule="curve").lr)
            for method in methods
        },
        "shipped": {
            protocol: result.suggest(for_schedule=protocol).lr for protocol in protocols
        },
        "shipped_method": result.settings.method,
        "spread_decades": None if result.ensemble is None else {
            method: result.ensemble.spread_decades(method) for method in methods
            if method not in RESULT_CANDIDATES
        },
        "warnings": result.meta.get("bench_warnings", []),
    }


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(value) if np.isfinite(value) else None for value in values]


def search_summary(path: Path, mode: str, training_steps: int, root: Path) -> dict[str, Any]:
    """What the results keep of a search: its LR, budget and steps, every candidate
    (LR, horizon, rung, score; None where it diverged), and where the choice lies."""
    result = LRFindResult.load(path)
    search = result.search
    if search is None:
        raise ValueError(f"{path}: not a search result")
    asked, used = search_budget(mode, training_steps)
    steps = int(result.meta["steps_trained"])
    lrs = np.asarray(search.lrs, dtype=np.float64)
    last = search.rungs == search.rungs.max()
    chosen = search.measured_lr  # the edge facts are about what was measured

    def at(values: np.ndarray, edge: Callable[[np.ndarray], float]) -> bool:
        return chosen is not None and bool(np.isclose(chosen, edge(values), rtol=1e-9))

    return {
        "path": shown_path(path, root),
        "lr": search.lr,
        "measured_lr": search.measured_lr,
        "measured_horizon": search.measured_horizon,
        "training_steps": int(search.training_steps),
        "horizon_exponent": search.horizon_exponent,
        "suggestion": result.suggestion,
        "budget_asked": asked,
        "budget_steps": int(search.budget_steps),
        "budget_used_is_minimum": used > asked,
        "steps_trained": steps,
        "over_budget": steps > int(search.budget_steps),
        "sweep_steps": int(search.sweep_steps),
        "seconds": result.meta.get("wall_time_s"),
        "candidates": {
            "lr": lrs.tolist(),
            "horizon": np.asarray(search.horizons).astype(int).tolist(),
            "rung": np.asarray(search.rungs).astype(int).tolist(),
            "score": _finite(np.asarray(search.scores, dtype=np.float64)),
        },
        "near_best": None if search.near_best is None else list(search.near_best),
        "warnings": result.meta.get("bench_warnings", []),
        "at_edge_of_last_rung": at(lrs[last], np.min) or at(lrs[last], np.max),
        "at_bottom_of_all": at(lrs, np.min),
        "at_top_of_all": at(lrs, np.max),
        "reason": search.reason,
    }


def planned_steps(mode: str, training_steps: int) -> int:
    """Optimizer steps a finder mode plans on a task of ``training_steps`` (to order the
    work, longest first; a sweep that diverges trains fewer)."""
    if mode in SEARCH_MODES:
        return search_budget(mode, training_steps)[1]
    settings = lrfind_core.Settings(**CURVE_MODES[mode])
    if settings.mode == "independent":
        return settings.num_sweeps * settings.independent_lrs * settings.steps_per_lr
    return settings.num_sweeps * settings.num_steps
