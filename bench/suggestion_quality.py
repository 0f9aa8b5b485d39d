"""How good are lrfind's LR suggestions? Regret against an oracle grid search.

For every task (bench/quality/tasks.py), seed and protocol ("one_cycle":
OneCycleLR peaking at the LR; "constant": the LR throughout), a fresh model is
trained for the task's budget of steps at each LR of a log grid; the lowest validation loss
is the oracle's best. ``lr_find`` is run on a fresh model of the same case in
three curve modes ("classic": one sweep; "k_sweeps": the median of 5 sweeps;
"independent": one short run per LR), each suggestion method's LR is trained
under each protocol, and its regret ``val_loss / oracle_best - 1`` is reported,
raw and with a per-(method, mode, protocol) factor fit leave-one-task-out. The
search (``mode="search"``) runs per case and protocol at budgets of 0.3, 1 and
3 times the task's training steps T (modes ``search_0.3``, ``search_1``,
``search_3``); its LR is scored as it is. Every method is then compared at its
cost, the optimizer steps ``lr_find`` trained over T (quality/at_cost.py), and
plotted (bench/quality_regret_cost.png).

Training runs are cached in bench/quality_cache/runs.json.gz (committed, with the
pretrained weights of the fine-tuning tasks) and finder results saved in
bench/quality_runs/ (searches under a fingerprint of the search policy, see
quality/finders.py), so a rerun (new methods, new factors) only trains new LRs,
and a changed search policy reruns only the searches. ``--rerun MODE ...`` runs
those finder modes again even when saved. ``--oracle-only`` trains the oracle
grids alone (no ``lr_find``), task by task, and logs each task's optima as they
are ready.

    python bench/suggestion_quality.py [--tasks ...] [--seeds 3] [--budget STEPS]
        [--grid-points 25] [--methods valley steep minimum slide ...] [--workers 2]
        [--modes classic ... search_3] [--rerun search_0.3 search_1 search_3]
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_facts
from quality import rules
from quality.at_cost import METHODS, RULE, TASK_GROUPS, Method, summarize_at_cost
from quality.cache import RUNS_PATH, RunCache, round_lr, run_key
from quality.finders import (
    ALL_MODES,
    CURVE_MODES,
    MODE_DESCRIPTIONS,
    POLICY_FILES,
    SEARCH_MODES,
    curve_path,
    curve_summary,
    planned_steps,
    search_budget,
    search_fingerprint,
    search_path,
    search_summary,
)
from quality.horizon_fit import fit_exponent, loto_exponents, scaled_lr
from quality.jobs import finder_job, run_jobs, search_job, train_job
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
from lrfind_core import available_methods
from lrfind_core.horizon import HORIZON_EXPONENT
from lrfind_core.search import minimum_budget

logger = logging.getLogger("suggestion_quality")

BENCH = Path(__file__).resolve().parent
DEFAULT_METHODS = ("valley", "steep", "minimum", "slide")
QUICK_TASKS = ("blobs_mlp_adam", "teacher_regression_sgd")
RUNS_DIR = BENCH / "quality_runs"
RESULTS_JSON = BENCH / "quality_results.json"
RESULTS_MD = BENCH / "RESULTS.md"
PLOT_PATH = BENCH / "quality_regret_cost.png"
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
        f"bench candidates: {', '.join([*rules.CANDIDATES, *rules.RESULT_CANDIDATES])})",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--modes", nargs="+", choices=ALL_MODES, default=list(ALL_MODES), metavar="MODE",
        help=f"finder modes to run and report (default all: {', '.join(ALL_MODES)})",
    )
    parser.add_argument(
        "--rerun", nargs="+", choices=ALL_MODES, default=[], metavar="MODE",
        help="finder modes to run again even where a saved result exists (the others "
        "are read from bench/quality_runs/; a search whose policy changed reruns anyway)",
    )
    parser.add_argument(
        "--plot", type=Path, default=None,
        help=f"regret-versus-cost plot (default {PLOT_PATH.name} in bench/; none with --quick)",
    )
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
    if args.plot is None and not args.quick:
        args.plot = PLOT_PATH
    args.modes = [mode for mode in ALL_MODES if mode in args.modes]
    if not set(args.rerun) <= set(args.modes):
        parser.error(f"--rerun {sorted(set(args.rerun) - set(args.modes))}: not in --modes")
    if len(args.tasks) < 2:
        parser.error("leave-one-task-out calibration needs at least 2 tasks")
    unknown = set(args.methods) - set(available_methods()) - set(rules.RESULT_CANDIDATES)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {available_methods()}")
    return args


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
        self.finder_seconds = 0.0

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
        finders: Sequence[tuple[Any, Any, float]] = (),
    ) -> None:
        """Train the runs not in the cache and run the finder jobs asked for (``(tag, job,
        weight)``, heaviest first), longest first."""
        # One run per cache key: LRs that round to the same 4 digits are the same run.
        by_key = {self.key(*run): (*run[:3], round_lr(run[3])) for run in runs}
        missing = sorted(
            (run for key, run in by_key.items() if key not in self.cache),
            key=lambda run: (-get_task(run[0]).step_ms * self.budget(run[0]), run),
        )
        jobs: list[tuple[Any, Any]] = [
            (tag, job) for tag, job, _ in sorted(finders, key=lambda item: -item[2])
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
                else:
                    self.finder_seconds += result["seconds"]
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


def pending_finders(
    args: argparse.Namespace, runner: Runner, seeds: list[int], runs_dir: Path,
    fingerprint: str,
) -> list[tuple[Any, Any, float]]:
    """The finder jobs to run, ``(tag, job, weight)``: each mode's results not saved
    yet (for a search: under this policy's fingerprint), and every one of ``--rerun``."""
    jobs: list[tuple[Any, Any, float]] = []
    for task in args.tasks:
        training_steps, step_ms = runner.budget(task), get_task(task).step_ms
        for seed in seeds:
            for mode in args.modes:
                weight = step_ms * planned_steps(mode, training_steps)
                again = mode in args.rerun
                if mode in CURVE_MODES:
                    path = curve_path(runs_dir, task, seed, mode)
                    if again or not path.exists():
                        jobs.append((("finder", task, seed, mode),
                                     (finder_job, (task, seed, mode, str(path))), weight))
                    continue
                budget = search_budget(mode, training_steps)[1]
                for protocol in PROTOCOLS:
                    path = search_path(runs_dir, task, seed, mode, protocol, training_steps,
                                       fingerprint)
                    if again or not path.exists():
                        arguments = (task, seed, protocol, training_steps, budget, str(path))
                        jobs.append((("search", task, seed, mode, protocol),
                                     (search_job, arguments), weight))
    return jobs


def load_finders(
    args: argparse.Namespace, runner: Runner, seeds: list[int], runs_dir: Path,
    fingerprint: str,
) -> dict[str, dict[str, Any]]:
    """Per task, seed and mode, the summary of the saved finder result (per protocol
    for a search); a search that trained past its budget is logged as an error."""
    found: dict[str, dict[str, Any]] = {}
    for task in args.tasks:
        training_steps = runner.budget(task)
        for seed in seeds:
            entry = found.setdefault(task, {}).setdefault(str(seed), {})
            for mode in args.modes:
                if mode in CURVE_MODES:
                    entry[mode] = curve_summary(curve_path(runs_dir, task, seed, mode),
                                                args.methods, BENCH.parent, PROTOCOLS)
                    continue
                entry[mode] = {}
                for protocol in PROTOCOLS:
                    path = search_path(runs_dir, task, seed, mode, protocol, training_steps,
                                       fingerprint)
                    summary = search_summary(path, mode, training_steps, BENCH.parent)
                    if summary["over_budget"]:
                        logger.error("%s/seed %d/%s/%s: the search trained %d steps, over its "
                                     "budget of %d (%s)", task, seed, mode, protocol,
                                     summary["steps_trained"], summary["budget_steps"], path)
                    entry[mode][protocol] = summary
    return found


def build_cases(
    oracle: dict[str, dict[str, Any]],
    seeds: list[int],
    suggested: Callable[[str, int], float | None],
) -> list[dict[str, Any]]:
    """The cases of one protocol: ``suggested(task, seed)``, the oracle best and cap of each."""
    return [
        {
            "task": task,
            "seed": seed,
            "suggested": suggested(task, seed),
            "best_lr": oracle[task]["best_lr"][index],
            "best_loss": oracle[task]["best_loss"][index],
            "cap": oracle[task]["caps"][index],
        }
        for task in oracle
        for index, seed in enumerate(seeds)
    ]


def compared_methods(args: argparse.Namespace) -> list[Method]:
    """The methods of the at-cost comparison whose mode runs (curve modes need :data:`RULE`)."""
    return [
        method for method in METHODS
        if method.mode in args.modes and (method.use.startswith("search")
                                          or RULE in args.methods)
    ]


def horizon_cases(
    oracles: dict[str, dict[str, Any]], finder: dict[str, dict[str, Any]], seeds: list[int],
    modes: list[str],
) -> list[dict[str, Any]]:
    """Every search of ``modes`` (both protocols) with what an exponent fit needs: its
    measured LR and horizon, the training's length and its seed's oracle grid."""
    cases = []
    for protocol, by_task in oracles.items():
        for task, oracle in by_task.items():
            for index, seed in enumerate(seeds):
                for mode in modes:
                    summary = finder[task][str(seed)][mode][protocol]
                    cases.append({
                        "task": task, "measured_lr": summary["measured_lr"],
                        "horizon": summary["measured_horizon"],
                        "training_steps": summary["training_steps"],
                        "grid": oracle["grid"], "losses": oracle["val_loss"][index],
                        "best_loss": oracle["best_loss"][index], "cap": oracle["caps"][index],
                    })
    return cases


def direct_lr(
    finder: dict[str, dict[str, Any]], method: Method, protocol: str,
    exponents: dict[str, float],
) -> Callable[[str, int], float | None]:
    """The LR a method trains as it is under ``protocol``: the library's own for the
    protocol (``shipped``), the search's for it as returned (``search``), or its
    measured LR scaled by the task's leave-one-task-out exponent (``search_loto``)."""
    if method.use == "shipped":
        return lambda task, seed: finder[task][str(seed)][method.mode]["shipped"][protocol]
    if method.use == "search_loto":
        def scaled(task: str, seed: int) -> float | None:
            summary = finder[task][str(seed)][method.mode][protocol]
            return scaled_lr({"measured_lr": summary["measured_lr"],
                              "horizon": summary["measured_horizon"],
                              "training_steps": summary["training_steps"]}, exponents[task])
        return scaled
    return lambda task, seed: finder[task][str(seed)][method.mode][protocol]["lr"]


SEARCH_ROW_FIELDS = ("budget_asked", "budget_steps", "at_edge_of_last_rung",
                     "at_bottom_of_all", "at_top_of_all", "over_budget")
"""What a search row of the comparison carries from the search's summary."""


def with_cost(
    rows: list[dict[str, Any]], finder: dict[str, dict[str, Any]], runner: Runner,
    mode: str, protocol: str,
) -> list[dict[str, Any]]:
    """Each scored row with its finder's ``steps_trained`` and ``cost`` (steps / T)
    (and, for a search, the facts of :data:`SEARCH_ROW_FIELDS`)."""
    out = []
    for row in rows:
        entry = finder[row["task"]][str(row["seed"])][mode]
        extra: dict[str, Any] = {}
        if mode in SEARCH_MODES:
            entry = entry[protocol]
            extra = {name: entry[name] for name in SEARCH_ROW_FIELDS}
        steps = entry["steps_trained"]
        out.append({**row, **extra, "steps_trained": steps,
                    "cost": steps / runner.budget(row["task"])})
    return out


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
    fingerprint = search_fingerprint()
    finders = pending_finders(args, runner, seeds, runs_dir, fingerprint)
    runner.run(grid_runs(args.tasks, seeds, grid), finders)
    phase1 = time.perf_counter() - started
    oracles = run_oracle(runner, args.tasks, seeds, grid, caps)
    for protocol, by_task in oracles.items():
        for task, oracle in by_task.items():
            if not oracle["inside_grid"]:
                logger.warning("%s/%s: an optimum lies on the grid's edge; widen the grid",
                               task, protocol)
    finder = load_finders(args, runner, seeds, runs_dir, fingerprint)

    # Phase 2: train every suggestion: each rule's raw and calibrated leave-one-task-out,
    # the library's shipped LR and the searches' LRs as they are.
    curve_modes = [mode for mode in args.modes if mode in CURVE_MODES]
    plans: dict[tuple[str, str, str], dict[str, Any]] = {}
    wanted: set[tuple[str, int, str, float]] = set()
    for protocol in PROTOCOLS:
        for mode in curve_modes:
            for method in args.methods:
                cases = build_cases(
                    oracles[protocol], seeds,
                    lambda task, seed, mode=mode, method=method:
                        finder[task][str(seed)][mode]["suggestions"][method],
                )
                loto = loto_factors(cases)
                plans[protocol, mode, method] = {"cases": cases, "loto": loto}
                for case in cases:
                    for factor in (1.0, loto[case["task"]]):
                        if case["suggested"] is not None:
                            wanted.add((case["task"], case["seed"], protocol,
                                        case["suggested"] * factor))
    compared = [(protocol, method) for protocol in PROTOCOLS for method in compared_methods(args)]
    search_modes = [mode for mode in args.modes if mode in SEARCH_MODES]
    fit_cases = horizon_cases(oracles, finder, seeds, search_modes)
    exponents = loto_exponents(fit_cases) if fit_cases else {}
    exponent_all = fit_exponent(fit_cases) if fit_cases else None
    direct: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for protocol, method in compared:
        if method.use != "loto":
            cases = build_cases(oracles[protocol], seeds,
                                direct_lr(finder, method, protocol, exponents))
            direct[protocol, method.name] = cases
            wanted |= {(case["task"], case["seed"], protocol, case["suggested"])
                       for case in cases if case["suggested"] is not None}
    runner.run(wanted)

    def scorer(protocol: str) -> Callable[[str, int, float], float]:
        return lambda task, seed, lr: runner.score(task, seed, protocol, lr)

    evaluation: dict[str, Any] = {}
    for (protocol, mode, method), plan in plans.items():
        cases, loto = plan["cases"], plan["loto"]
        raw = score_cases(cases, dict.fromkeys(loto, 1.0), scorer(protocol))
        calibrated = score_cases(cases, loto, scorer(protocol))
        evaluation.setdefault(protocol, {}).setdefault(mode, {})[method] = {
            "factor_all_tasks": fit_factor(cases),
            "loto_factors": loto,
            "raw": {**summarize(raw), "rows": raw},
            "calibrated_loto": {**summarize(calibrated), "rows": calibrated},
        }
    at_cost: dict[str, dict[str, Any]] = {}
    for protocol, method in compared:
        if method.use == "loto":
            rows = evaluation[protocol][method.mode][RULE]["calibrated_loto"]["rows"]
        else:
            rows = score_cases(direct[protocol, method.name], dict.fromkeys(args.tasks, 1.0),
                               scorer(protocol))
        at_cost.setdefault(protocol, {})[method.name] = {
            "mode": method.mode,
            "use": method.use,
            "description": method.description,
            **summarize_at_cost(with_cost(rows, finder, runner, method.mode, protocol)),
        }

    wall = time.perf_counter() - started
    results = {
        "format": "lrfind-bench-suggestion-quality",
        "version": 2,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "tasks": args.tasks,
            "seeds": seeds,
            "budgets": {task: runner.budget(task) for task in args.tasks},
            "batch_size": 64,
            "grid": grid,
            "protocols": list(PROTOCOLS),
            "finder_modes": {
                mode: CURVE_MODES[mode] if mode in CURVE_MODES
                else {"mode": "search", "budget_fraction": SEARCH_MODES[mode]}
                for mode in args.modes
            },
            "finder_mode_descriptions": {mode: MODE_DESCRIPTIONS[mode] for mode in args.modes},
            "methods": args.methods,
            "candidates": [method for method in args.methods
                           if method in rules.CANDIDATES or method in rules.RESULT_CANDIDATES],
            "at_cost_rule": RULE,
            "task_groups": {name: [task for task in members if task in args.tasks]
                            for name, members in TASK_GROUPS.items()},
            "search": {
                "fingerprint": fingerprint,
                "policy_files": [f"lrfind_core/{name}" for name in POLICY_FILES],
                "minimum_budget": minimum_budget(),
                "budget_fractions": {mode: SEARCH_MODES[mode] for mode in search_modes},
                "horizon_exponent_shipped": HORIZON_EXPONENT,
                "horizon_exponent_fit_all_tasks": exponent_all,
                "horizon_exponents_loto": exponents,
                "budget_steps": {
                    task: {mode: list(search_budget(mode, runner.budget(task)))
                           for mode in search_modes}
                    for task in args.tasks
                },
            },
            "workers": args.workers,
            "quick": args.quick,
            "cap": "untrained model's validation loss (same seed)",
        },
        "task_descriptions": {task: get_task(task).description for task in args.tasks},
        "machine": machine_facts(("numpy", "torch", "sklearn")),
        "versions": {"lrfind": lrfind_core.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "search policy": fingerprint},
        "timings": {
            "wall_s": wall,
            "phase1_s": phase1,
            "runs_trained": runner.trained,
            "train_cpu_s": runner.train_seconds,
            "train_cpu_s_all_runs_used": runner.seconds_used,
            "finder_runs": len(finders),
            "finder_cpu_s": runner.finder_seconds,
        },
        "oracle": oracles,
        "finder": finder,
        "evaluation": evaluation,
        "at_cost": at_cost,
        "baselines": {protocol: fixed_lr_baselines(oracles[protocol]) for protocol in PROTOCOLS},
    }
    if args.plot is not None and at_cost:
        from quality.plot import plot_regret_cost

        plot_regret_cost(results, args.plot)
        results["plot"] = str(args.plot.relative_to(BENCH)) if args.plot.is_relative_to(
            BENCH) else str(args.plot)
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
