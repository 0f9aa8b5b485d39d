"""How good are lrfind's LR suggestions? Regret against an oracle grid search.

For every task (bench/quality/tasks.py), seed and protocol ("one_cycle":
OneCycleLR peaking at the LR; "constant": the LR throughout), a fresh model is
trained for the task's budget of steps at each LR of a log grid; the lowest validation loss
is the oracle's best. ``lr_find`` is run on a fresh model of the same case in
three modes ("classic": one sweep; "k_sweeps": the median of 5 sweeps;
"independent": one short run per LR), each suggestion method's LR is trained
under each protocol, and its regret ``val_loss / oracle_best - 1`` is reported,
raw and with a per-(method, mode, protocol) factor fit leave-one-task-out.

Training runs are cached in bench/quality_cache/runs.json.gz (committed, with the
pretrained weights of the fine-tuning tasks) and finder results saved in
bench/quality_runs/, so a rerun (new methods, new factors) only trains new LRs.
``--oracle-only`` trains the oracle grids alone (no ``lr_find``), task by task,
and logs each task's optima as they are ready.

    python bench/suggestion_quality.py [--tasks ...] [--seeds 3] [--budget STEPS]
        [--grid-points 25] [--methods valley steep minimum slide ...] [--workers 2]
        [--quick] [--oracle-only]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_facts
from quality import rules
from quality.cache import RUNS_PATH, RunCache, round_lr, run_key
from quality.jobs import FINDER_DESCRIPTIONS, FINDER_MODES, finder_job, run_jobs, train_job
from quality.report import markdown_section, oracle_table, write_section
from quality.scoring import (
    fit_factor,
    fixed_lr_baselines,
    log_grid,
    loto_factors,
    oracle_summary,
    score_cases,
    summarize,
)
from quality.tasks import TASKS, get_task
from quality.training import PROTOCOLS, untrained_loss

import lrfind_core
from lrfind_core import LRFindResult, available_methods

logger = logging.getLogger("suggestion_quality")

BENCH = Path(__file__).resolve().parent
DEFAULT_METHODS = ("valley", "steep", "minimum", "slide")
QUICK_TASKS = ("blobs_mlp_adam", "teacher_regression_sgd")
RUNS_DIR = BENCH / "quality_runs"
RESULTS_JSON = BENCH / "quality_results.json"
RESULTS_MD = BENCH / "RESULTS.md"
SAVE_EVERY = 25


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", nargs="+", choices=list(TASKS), default=list(TASKS), metavar="TASK",
        help=f"tasks to run (default all: {', '.join(TASKS)})",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per task (0..N-1)")
    parser.add_argument(
        "--budget", type=int, default=None,
        help="optimizer steps of every run (default: each task's own budget)",
    )
    parser.add_argument("--grid-points", type=int, default=25, help="oracle grid size")
    parser.add_argument("--grid-low", type=float, default=1e-5, help="lowest grid LR")
    parser.add_argument("--grid-high", type=float, default=10.0, help="highest grid LR")
    parser.add_argument(
        "--methods", nargs="+", default=[*DEFAULT_METHODS, *rules.CANDIDATES],
        help=f"suggestion methods (registered: {', '.join(available_methods())}, "
        f"bench candidates: {', '.join(rules.CANDIDATES)})",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--quick", action="store_true",
        help="smoke test: 2 tasks, 1 seed, budget 60, 8 grid points; writes "
        "quality_results_quick.json and leaves RESULTS.md alone",
    )
    parser.add_argument(
        "--no-cache", action="store_true",
        help="train everything afresh, in memory and a temp folder (the cache is left alone)",
    )
    parser.add_argument(
        "--oracle-only", action="store_true",
        help="train the oracle grids only, task by task (no lr_find); logs each task's "
        "optima; writes --json if given, never the markdown",
    )
    parser.add_argument("--json", type=Path, default=None, help="results JSON path")
    parser.add_argument("--markdown", type=Path, default=None, help="markdown file to update")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.budget, args.grid_points = list(QUICK_TASKS), 1, 60, 8
    if args.oracle_only:
        return args
    args.json = args.json or (
        BENCH / "quality_results_quick.json" if args.quick else RESULTS_JSON
    )
    if args.markdown is None and not args.quick:
        args.markdown = RESULTS_MD
    if len(args.tasks) < 2:
        parser.error("leave-one-task-out calibration needs at least 2 tasks")
    unknown = set(args.methods) - set(available_methods())
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {available_methods()}")
    return args


def finder_path(runs_dir: Path, task: str, seed: int, mode: str) -> Path:
    """Where the finder result of a case and mode is saved."""
    return runs_dir / task / f"seed{seed}_{mode}.json"


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(path.relative_to(BENCH.parent))
    except ValueError:
        return str(path)


class Runner:
    """Runs the missing training and finder jobs, caching as results arrive."""

    def __init__(
        self, cache: RunCache, budget: int | None, workers: int, runs_dir: Path
    ) -> None:
        self.cache, self.budget_override = cache, budget
        self.workers, self.runs_dir = workers, runs_dir
        self.trained = 0
        self.used: dict[str, float] = {}
        self.train_seconds = 0.0

    def budget(self, task: str) -> int:
        """Optimizer steps of every run of ``task``: its own budget unless overridden."""
        return self.budget_override or get_task(task).budget

    def key(self, task: str, seed: int, protocol: str, lr: float) -> str:
        return run_key(task, seed, protocol, self.budget(task), lr)

    def score(self, task: str, seed: int, protocol: str, lr: float) -> float:
        entry = self.cache[self.key(task, seed, protocol, lr)]
        self.used[self.key(task, seed, protocol, lr)] = entry["seconds"]
        return float(entry["val_loss"])

    @property
    def seconds_used(self) -> float:
        """Training seconds of every run read so far, cached or not (as first recorded)."""
        return float(sum(self.used.values()))

    def run(
        self,
        runs: set[tuple[str, int, str, float]],
        finders: Sequence[tuple[str, int, str]] = (),
    ) -> None:
        """Train the runs not in the cache and the finder runs asked for, longest first."""
        # One run per cache key: LRs that round to the same 4 digits are the same run.
        by_key = {self.key(*run): (*run[:3], round_lr(run[3])) for run in runs}
        missing = sorted(
            (run for key, run in by_key.items() if key not in self.cache),
            key=lambda run: (-get_task(run[0]).step_ms * self.budget(run[0]), run),
        )
        jobs: list[tuple[Any, Any]] = [
            (("finder", *case), (finder_job, (*case, str(finder_path(self.runs_dir, *case)))))
            for case in sorted(finders, key=lambda case: -get_task(case[0]).step_ms)
        ]
        jobs += [
            (("train", *run), (train_job, (*run, self.budget(run[0]))))
            for run in missing
        ]
        if not jobs:
            return
        logger.info("%d training runs and %d finder runs to do", len(missing), len(finders))
        started = time.perf_counter()
        try:
            for done, (tag, result) in enumerate(run_jobs(jobs, self.workers), start=1):
                if tag[0] == "train":
                    self.cache.put(self.key(*tag[1:]), result)
                    self.trained += 1
                    self.train_seconds += result["seconds"]
                if done % SAVE_EVERY == 0:
                    self.cache.save()
                    logger.info(
                        "%d/%d jobs done, %.0f s", done, len(jobs), time.perf_counter() - started
                    )
        finally:
            self.cache.save()


def run_oracle(
    runner: Runner, tasks: list[str], seeds: list[int], grid: list[float],
    caps: dict[tuple[str, int], float],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per protocol and task, the oracle summary of the grid runs."""
    oracles: dict[str, dict[str, dict[str, Any]]] = {}
    for protocol in PROTOCOLS:
        oracles[protocol] = {}
        for task in tasks:
            losses = np.array([
                [runner.score(task, seed, protocol, lr) for lr in grid] for seed in seeds
            ])
            oracles[protocol][task] = oracle_summary(
                grid, losses, [caps[task, seed] for seed in seeds]
            )
    return oracles


def grid_runs(
    tasks: list[str], seeds: list[int], grid: list[float]
) -> set[tuple[str, int, str, float]]:
    """Every oracle run of ``tasks``: each seed, protocol and grid LR."""
    return {
        (task, seed, protocol, lr)
        for task in tasks
        for seed in seeds
        for protocol in PROTOCOLS
        for lr in grid
    }


def oracle_line(task: str, protocol: str, oracle: dict[str, Any]) -> str:
    """One log line on a task's oracle: where the optimum is and how sharp the curve is.

    Sharpness: the mean curve's regret one decade (4 points on the default grid)
    either side of its best LR, and the share of grid LRs that scored the cap.
    """
    mean, index = np.array(oracle["mean_val_loss"]), oracle["mean_best_index"]
    points_per_decade = round((len(mean) - 1) / np.log10(oracle["grid"][-1] / oracle["grid"][0]))
    below = mean[max(0, index - points_per_decade)] / mean[index] - 1.0
    above = mean[min(len(mean) - 1, index + points_per_decade)] / mean[index] - 1.0
    capped = np.mean(np.array(oracle["val_loss"]) >= np.array(oracle["caps"])[:, None])
    seeds = ", ".join(f"{lr:.3g}" for lr in oracle["best_lr"])
    return (
        f"{task}/{protocol}: best LR {oracle['mean_best_lr']:.3g} (seeds {seeds}), "
        f"loss {oracle['mean_best_loss']:.4f}, cap {np.mean(oracle['caps']):.4f}; "
        f"regret a decade below {below:+.3f}, above {above:+.3f}; "
        f"{capped:.0%} of runs capped; inside grid: {oracle['inside_grid']}"
    )


def oracle_only(
    args: argparse.Namespace, runner: Runner, seeds: list[int], grid: list[float],
    caps: dict[tuple[str, int], float],
) -> int:
    """Train the oracle grids task by task, logging each task's optima; no finder runs."""
    oracles: dict[str, dict[str, dict[str, Any]]] = {protocol: {} for protocol in PROTOCOLS}
    for task in args.tasks:
        runner.run(grid_runs([task], seeds, grid))
        for protocol, oracle in run_oracle(runner, [task], seeds, grid, caps).items():
            oracles[protocol].update(oracle)
            logger.info("%s", oracle_line(task, protocol, oracle[task]))
    settings = {"tasks": args.tasks, "budgets": {task: runner.budget(task) for task in args.tasks}}
    print("\n".join(oracle_table({"oracle": oracles, "settings": settings})))
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"settings": {**settings, "seeds": seeds, "grid": grid},
                       "oracle": oracles}, handle, indent=1)
    return 0


def load_suggestions(
    runs_dir: Path, tasks: list[str], seeds: list[int], methods: list[str]
) -> dict[str, dict[str, Any]]:
    """Per task, seed and mode: the saved finder result's suggestion of every method."""
    found: dict[str, dict[str, Any]] = {}
    for task in tasks:
        for seed in seeds:
            for mode in FINDER_MODES:
                path = finder_path(runs_dir, task, seed, mode)
                result = LRFindResult.load(path)
                found.setdefault(task, {}).setdefault(str(seed), {})[mode] = {
                    "path": shown_path(path),
                    "stop_reason": result.stop_reason,
                    "points": len(result.lrs),
                    "seconds": result.meta.get("wall_time_s"),
                    "suggestions": {method: result.suggest(method, for_schedule="curve").lr
                                    for method in methods},
                }
    return found


def build_cases(
    oracle: dict[str, dict[str, Any]],
    finder: dict[str, dict[str, Any]],
    seeds: list[int],
    mode: str,
    method: str,
) -> list[dict[str, Any]]:
    """The cases of one (protocol, mode, method): suggestion, oracle best and cap of each."""
    return [
        {
            "task": task,
            "seed": seed,
            "suggested": finder[task][str(seed)][mode]["suggestions"][method],
            "best_lr": oracle[task]["best_lr"][index],
            "best_loss": oracle[task]["best_loss"][index],
            "cap": oracle[task]["caps"][index],
        }
        for task in oracle
        for index, seed in enumerate(seeds)
    ]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    seeds = list(range(args.seeds))
    grid = log_grid(args.grid_points, args.grid_low, args.grid_high)
    cache = RunCache(None if args.no_cache else RUNS_PATH)
    runs_dir = Path(tempfile.mkdtemp(prefix="lrfind_quality_")) if args.no_cache else RUNS_DIR
    runner = Runner(cache, args.budget, args.workers, runs_dir)
    if args.no_cache:
        logger.info("no cache: finder results go to %s", runs_dir)
    caps = {
        (task, seed): untrained_loss(get_task(task), seed) for task in args.tasks for seed in seeds
    }
    if args.oracle_only:
        return oracle_only(args, runner, seeds, grid, caps)

    # Phase 1: the oracle grid and the finder runs.
    finders = [
        (task, seed, mode)
        for task in args.tasks
        for seed in seeds
        for mode in FINDER_MODES
        if not finder_path(runs_dir, task, seed, mode).exists()
    ]
    runner.run(grid_runs(args.tasks, seeds, grid), finders)
    phase1 = time.perf_counter() - started
    oracles = run_oracle(runner, args.tasks, seeds, grid, caps)
    for protocol, by_task in oracles.items():
        for task, oracle in by_task.items():
            if not oracle["inside_grid"]:
                logger.warning("%s/%s: an optimum lies on the grid's edge; widen the grid",
                               task, protocol)
    finder = load_suggestions(runs_dir, args.tasks, seeds, args.methods)

    # Phase 2: train every suggestion, raw and calibrated leave-one-task-out.
    plans: dict[tuple[str, str, str], dict[str, Any]] = {}
    wanted: set[tuple[str, int, str, float]] = set()
    for protocol in PROTOCOLS:
        for mode in FINDER_MODES:
            for method in args.methods:
                cases = build_cases(oracles[protocol], finder, seeds, mode, method)
                loto = loto_factors(cases)
                plans[protocol, mode, method] = {"cases": cases, "loto": loto}
                for case in cases:
                    for factor in (1.0, loto[case["task"]]):
                        if case["suggested"] is not None:
                            wanted.add((case["task"], case["seed"], protocol,
                                        case["suggested"] * factor))
    runner.run(wanted)

    evaluation: dict[str, Any] = {}
    for (protocol, mode, method), plan in plans.items():
        cases, loto = plan["cases"], plan["loto"]

        def score(task: str, seed: int, lr: float, protocol: str = protocol) -> float:
            return runner.score(task, seed, protocol, lr)

        raw = score_cases(cases, dict.fromkeys(loto, 1.0), score)
        calibrated = score_cases(cases, loto, score)
        evaluation.setdefault(protocol, {}).setdefault(mode, {})[method] = {
            "factor_all_tasks": fit_factor(cases),
            "loto_factors": loto,
            "raw": {**summarize(raw), "rows": raw},
            "calibrated_loto": {**summarize(calibrated), "rows": calibrated},
        }

    wall = time.perf_counter() - started
    results = {
        "format": "lrfind-bench-suggestion-quality",
        "version": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "tasks": args.tasks,
            "seeds": seeds,
            "budgets": {task: runner.budget(task) for task in args.tasks},
            "batch_size": 64,
            "grid": grid,
            "protocols": list(PROTOCOLS),
            "finder_modes": {mode: FINDER_MODES[mode] for mode in FINDER_MODES},
            "finder_mode_descriptions": FINDER_DESCRIPTIONS,
            "methods": args.methods,
            "candidates": [method for method in args.methods if method in rules.CANDIDATES],
            "workers": args.workers,
            "quick": args.quick,
            "cap": "untrained model's validation loss (same seed)",
        },
        "task_descriptions": {task: get_task(task).description for task in args.tasks},
        "machine": machine_facts(("numpy", "torch", "sklearn")),
        "versions": {"lrfind": lrfind_core.__version__, "torch": torch.__version__,
                     "numpy": np.__version__},
        "timings": {
            "wall_s": wall,
            "phase1_s": phase1,
            "runs_trained": runner.trained,
            "train_cpu_s": runner.train_seconds,
            "train_cpu_s_all_runs_used": runner.seconds_used,
            "finder_runs": len(finders),
        },
        "oracle": oracles,
        "finder": finder,
        "evaluation": evaluation,
        "baselines": {protocol: fixed_lr_baselines(oracles[protocol]) for protocol in PROTOCOLS},
    }
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    section = markdown_section(results)
    if args.markdown is not None:
        write_section(args.markdown, section)
    print(section)
    logger.info("done in %.0f s; results in %s", wall, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
