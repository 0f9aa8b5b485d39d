"""The one shell of ``lr_find``, shared by both backends.

A backend's ``lr_find`` checks its framework objects, builds a :class:`Backend`
and calls :func:`run_finder`, which owns everything that is not framework work:
the settings, the plan of runs, the run itself inside the backend's session
(where torch snapshots and restores), the judgement, one meta layout with the
same keys in both backends, the notices as warnings and the plot.

A backend provides (as optax composes ``init``/``update``):

* ``name``, ``versions()`` and ``devices()`` (the names of the devices the runs use,
  ``cpu`` or ``cuda:0``): facts for ``result.meta``;
* ``session(notices)``: a context manager around every run of the call (torch
  snapshots the training state on entry and restores it on exit, error or not);
* ``run(plan, notices) -> RunRecord``: make the planned runs, each from the
  initial state, and record raw losses (:mod:`lrfind_core.plan`);
* ``facts()``: backend-only facts for ``result.meta``, asked after the session;
* ``num_batches()``: batches in one pass of the training data, if known;
* ``is_main_process``: whether this process shows progress and saves the plot;
* ``common_meta(meta)``: the meta every process returns (torch under
  ``torch.distributed``: rank 0's, so that every rank's result is the same).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from lrfind_core import judging
from lrfind_core.batch_source import held_out_error, is_exhausted
from lrfind_core.curve_signal import MIN_FALL_IN_NOISE, sweep_fall_in_noise_units
from lrfind_core.notices import warn_user
from lrfind_core.plan import RunPlan, RunRecord, plan_independent, plan_sweeps
from lrfind_core.plotting import check_plot_file
from lrfind_core.result import LRFindResult
from lrfind_core.search import (
    MIN_HORIZON,
    budget_of,
    held_out_batches,
    minimum_budget,
    run_search,
    sweep_steps_for,
)
from lrfind_core.settings import Settings, resolve_settings
from lrfind_core.suggestion import check_method

MAX_STEPS = 10_000_000
"""The most optimizer steps one call may plan (a larger plan is almost surely a mistake)."""


class Backend(Protocol):
    """What a framework supplies to :func:`run_finder`."""

    name: str
    is_main_process: bool

    def versions(self) -> dict[str, str]: ...

    def devices(self) -> list[str]: ...

    def session(self, notices: list[str]) -> contextlib.AbstractContextManager[Any]: ...

    def run(self, plan: RunPlan, notices: list[str]) -> RunRecord: ...

    def facts(self) -> dict[str, Any]: ...

    def common_meta(self, meta: dict[str, Any]) -> dict[str, Any]: ...

    def num_batches(self) -> int | None: ...


def call_settings(settings: Settings | str | None, **keywords: Any) -> Settings:
    """The settings of a call: ``settings`` with the backend's common keywords applied
    (``mode``, ``for_schedule``, ``start_lr``, ``end_lr``, ``num_steps``,
    ``training_steps``, ``budget_steps``; None leaves a field as it is)."""
    chosen = resolve_settings(settings, **keywords)
    if chosen.mode == "independent" and keywords.get("num_steps") is not None:
        raise ValueError(
            "num_steps is the length of a classic sweep; mode='independent' runs "
            "Settings(independent_lrs=24, steps_per_lr=20) instead: pass those"
        )
    if chosen.mode == "search":
        if keywords.get("num_steps") is not None:
            raise ValueError(
                "num_steps is the length of a classic sweep; mode='search' sizes its "
                "bracketing sweep from budget_steps (a fifth of it, 20 to 100 steps): pass "
                "budget_steps instead"
            )
        if chosen.training_steps < MIN_HORIZON:
            raise ValueError(
                f"training_steps={chosen.training_steps}: a search compares candidate runs of "
                f"at least {MIN_HORIZON} steps, so it needs training_steps >= {MIN_HORIZON}; "
                "for a training this short use mode='sweep'"
            )
    for name in ("training_steps", "budget_steps"):
        if keywords.get(name) is not None and chosen.mode != "search":
            raise ValueError(
                f"{name} belongs to mode='search' (the planned training and the search's "
                f"budget); mode={chosen.mode!r} does not use it"
            )
    return chosen


def device_kind(devices: list[str]) -> str:
    """The kind of the devices named (``cpu``, ``cuda``), the same in both backends:
    each name up to its ``:``, each kind once, comma-separated."""
    return ", ".join(dict.fromkeys(name.split(":")[0] for name in devices))


def check_plot_path(plot_path: Any) -> None:
    """``plot_path`` is None or a file lr_find can save the plot to (checked before any
    work; see :func:`~lrfind_core.plotting.check_plot_file`)."""
    if plot_path is not None:
        check_plot_file(plot_path, "plot_path")


def check_settings(settings: Settings) -> None:
    """Checks that need the method registry or bound the work, before anything runs."""
    for method in settings.methods:
        check_method(method)
    if settings.mode == "independent":
        planned = settings.num_sweeps * settings.independent_lrs * settings.steps_per_lr
    elif settings.mode == "search":
        planned = budget_of(settings)
        sweep_steps_for(planned)  # a clear error for a budget too small
    else:
        planned = settings.num_sweeps * settings.num_steps
    if planned * settings.accumulation_steps > MAX_STEPS:
        raise ValueError(
            f"the settings plan {planned} optimizer steps of {settings.accumulation_steps} "
            f"micro-batch(es); lr_find allows at most {MAX_STEPS:,} micro-batches per call"
        )


def budget_notices(settings: Settings) -> list[str]:
    """A search whose default budget (``training_steps``) is below the least a search
    can do trains more than the training it is for: the user hears it."""
    budget = budget_of(settings)
    if settings.budget_steps is not None or budget <= settings.training_steps:
        return []
    return [
        f"budget_steps defaults to training_steps ({settings.training_steps}), fewer than the "
        f"{minimum_budget()} steps a search needs at least: the search may train up to "
        f"{budget} steps. Pass budget_steps={budget} to allow it, or use mode='sweep' for a "
        "training this short"
    ]


def check_candidates_had_data(records: list[RunRecord]) -> None:
    """A search's candidates all ran to their end: one that ran out of data (a one-shot
    iterator shorter than a candidate's run) has no score, and the search no answer
    it could stand by."""
    short = [reason for each in records for reason in each.end_reasons if is_exhausted(reason)]
    if short:
        raise ValueError(
            f"train_data ran out in the search's candidate runs ({short[0]}): a one-shot "
            "iterator is kept, not cycled, and every candidate reads it from its start. Pass "
            "more data, or a re-iterable (a list or DataLoader, which is cycled)"
        )


def check_held_out(has_validation: bool, num_batches: int | None) -> None:
    """A search without ``val_data`` holds out training batches: there must be more
    than it holds out (when the data's length is known; a backend checks as it reads
    otherwise)."""
    if has_validation or num_batches is None:
        return
    count = held_out_batches(num_batches)
    if num_batches <= count:
        raise held_out_error(num_batches, count)


def plan_for(settings: Settings, has_validation: bool) -> RunPlan:
    """The runs a mode makes."""
    if settings.mode == "independent":
        if has_validation:
            raise ValueError(
                "val_data is not supported with mode='independent'; use mode='sweep'"
            )
        return plan_independent(settings)
    if has_validation and settings.val_every > settings.num_steps:
        raise ValueError(
            f"val_every must be <= num_steps ({settings.num_steps}), got {settings.val_every}: "
            "no validation point would be recorded"
        )
    return plan_sweeps(settings, validation=has_validation)


def run_finder(
    backend: Backend,
    settings: Settings,
    *,
    has_validation: bool = False,
    plot_path: str | os.PathLike[str] | None = None,
) -> LRFindResult:
    """Plan, run, judge: the whole of ``lr_find`` after the backend's own checks."""
    started = time.perf_counter()
    check_settings(settings)
    check_plot_path(plot_path)
    notices: list[str] = []
    search = None
    if settings.mode != "search":
        plan = plan_for(settings, has_validation)
    with backend.session(notices):
        run_started = time.perf_counter()
        if settings.mode == "search":
            check_held_out(has_validation, backend.num_batches())
            notices += budget_notices(settings)
            outcome = run_search(lambda planned: backend.run(planned, notices), settings,
                                 has_validation, backend.num_batches(), notices)
            plan, record, records, search = (outcome.sweep, outcome.sweep_record,
                                             outcome.records, outcome.search)
            check_candidates_had_data(records[1:])
            settings = dataclasses.replace(settings, num_steps=plan.num_steps)
        else:
            record = backend.run(plan, notices)
            records = [record]
        run_time = time.perf_counter() - run_started
    notices += run_notices(plan, record, settings)
    judgement = judge_record(plan, record, settings)
    curve_validated = has_validation and settings.mode != "search"
    meta = {
        "backend": backend.name,
        "versions": backend.versions(),
        "device": device_kind(devices := backend.devices()),
        "devices": devices,
        "mode": settings.mode,
        "num_sweeps": settings.num_sweeps,
        "accumulation_steps": settings.accumulation_steps,
        # a search's curve is its bracketing sweep's training loss; its candidates'
        # validation scores are in result.search
        "loss_kind": "validation" if curve_validated else "train",
        "val_every": settings.val_every if curve_validated else None,
        "runs": plan.num_runs,
        "steps_trained": sum(int(each.steps.sum()) for each in records),
        "end_reasons": record.end_reasons,
        "skipped_steps": skipped_steps(plan, record, settings),
        **backend.facts(),
        "run_time_s": run_time,
        "wall_time_s": time.perf_counter() - started,
    }
    result = LRFindResult.from_judgement(judgement, settings, backend.common_meta(meta), search)
    notices += result_notices(result)
    warn_user(notices)
    if plot_path is not None and backend.is_main_process:
        save_plot(result, plot_path)
    return result


def run_notices(plan: RunPlan, record: RunRecord, settings: Settings) -> list[str]:
    """What the user should hear about runs that ended early or did not train (of the
    classic sweep, the K sweeps, the independent runs or the search's sweep)."""
    notices = []
    if settings.mode == "independent":
        short = [reason for reason in record.end_reasons if is_exhausted(reason)]
        if short:
            raise ValueError(
                f"train_data ran out ({short[0]}); mode='independent' reads "
                f"{plan.num_curves * plan.block_batches} micro-batches ({plan.num_curves} "
                f"block(s) of {plan.block_batches}). Pass more data, or a re-iterable "
                "(it is cycled)"
            )
        notices += _untrained_runs(plan, record, settings)
    elif plan.num_runs > 1:
        for run, reason in enumerate(record.end_reasons):
            if reason is not None:
                notices.append(
                    f"sweep {run} of {plan.num_runs}: {reason}; its curve ends after "
                    f"{record.made[run]} point(s)"
                )
    elif record.end_reasons[0] is not None:
        notices.append(f"the sweep ended early: {record.end_reasons[0]}")
    return notices


def result_notices(result: LRFindResult) -> list[str]:
    """What the user should hear about the answer: none, one within a point of either
    end of the curve, or a band that measured nothing."""
    notices = []
    detail = result.suggest()
    if detail.lr is None:
        notices.append(f"lr_find has no suggestion: {detail.reason}")
    elif result.search is not None:
        notices += _search_edge(result)
    else:
        lrs = result.lrs
        low, high = float(lrs[0]), float(lrs[-1])
        if detail.lr <= lrs[min(1, len(lrs) - 1)] * (1 + 1e-9):
            notices.append(
                f"the suggestion {detail.lr:.3g} sits at the start of the swept range "
                f"({low:.3g}): the best LR may be lower. Lower start_lr, or give the sweep "
                "more data if it ended early"
            )
        elif detail.lr >= lrs[max(len(lrs) - 2, 0)] * (1 - 1e-9):
            notices.append(
                f"the suggestion {detail.lr:.3g} sits at the end of the curve ({high:.3g}): "
                "the best LR may be higher. Raise end_lr, or give the sweep more data if it "
                "ended early"
            )
        else:
            notices += _noise_notices(result, detail.lr)
    ensemble = result.ensemble
    if ensemble is not None and ensemble.num_sweeps > 1:
        first = ensemble.sweep_losses[0]
        # Curves alike only in being non-finite (all NaN) say nothing about the data.
        if np.any(np.isfinite(first)) and all(
            np.array_equal(first, row, equal_nan=True) for row in ensemble.sweep_losses[1:]
        ):
            notices.append(
                f"the {ensemble.num_sweeps} curves are identical: nothing differed between "
                "them (the data cycles through the same batches, and no randomness differs, "
                "e.g. no rng=), so their band and spread measure nothing. Give more data "
                "(each curve reads the next batches) or randomness"
            )
    return notices


def _noise_notices(result: LRFindResult, lr: float) -> list[str]:
    """A sweep that ran to its end and whose smoothed curve fell by less than its own
    noise allows may be noise (:mod:`lrfind_core.curve_signal`); not said again
    beside a notice that the answer sits at an edge."""
    measured = sweep_fall_in_noise_units(result)
    if measured is None or measured[0] >= MIN_FALL_IN_NOISE:
        return []
    units, sigma = measured
    return [
        f"the smoothed loss fell by only {units:.1f}x its own noise over the sweep (the "
        f"batch-to-batch noise is {sigma:.3g}): the curve may be noise, and the suggestion "
        f"{lr:.3g} a guess. If the loss never started to fall, raise end_lr; else average "
        "more (Settings(num_sweeps=5)) or use larger batches"
    ]


def _search_edge(result: LRFindResult) -> list[str]:
    """A search whose best candidate stayed at an edge of those it ran."""
    search = result.search
    lrs, scores = search.rung(int(search.rungs.max()))
    finite = np.isfinite(scores)
    best = int(np.argmin(np.where(finite, scores, np.inf)))
    if best == 0:
        return [f"the search's best candidate, {lrs[0]:.3g}, is the lowest it ran (its budget "
                "allowed no lower one): the best LR may be lower. Raise budget_steps or "
                "lower start_lr"]
    if best == len(lrs) - 1:
        return [f"the search's best candidate, {lrs[-1]:.3g}, is the highest it ran (its "
                "budget allowed no higher one): the best LR may be higher. Raise "
                "budget_steps"]
    return []


def _untrained_runs(plan: RunPlan, record: RunRecord, settings: Settings) -> list[str]:
    """Independent runs whose every update a GradScaler skipped: named, or an error
    when no run trained at all."""
    counts: dict[int, int] = {}
    for entry in record.skipped:
        counts[entry["run"]] = counts.get(entry["run"], 0) + 1
    untrained = sorted(run for run, count in counts.items() if count == record.steps[run])
    if not untrained:
        return []
    made = int(np.count_nonzero(record.steps))
    message = (
        f"GradScaler skipped every update of {len(untrained)} of {made} independent "
        "run(s) (inf/NaN gradients at every scale it tried)"
    )
    if len(untrained) == made:
        raise RuntimeError(f"lr_find recorded no trained run: {message}")
    grid = settings.independent_lrs
    named = [(run // grid, run % grid) for run in untrained]
    return [f"{message}: (sweep, run) {named}; their scores are untrained losses"]


def skipped_steps(plan: RunPlan, record: RunRecord, settings: Settings) -> list[dict[str, Any]]:
    """The GradScaler's skipped updates, by sweep (and run, in independent mode); a
    non-finite loss is kept as the text ``"inf"`` or ``"nan"`` (the meta is JSON)."""
    entries = []
    for entry in record.skipped:
        run = entry["run"]
        if settings.mode == "independent":
            grid = settings.independent_lrs
            where = {"sweep": run // grid, "run": run % grid}
        else:
            where = {"sweep": int(plan.curves[run])}
        loss = float(entry["loss"])  # JSON has no NaN or inf: those are kept as text
        entries.append({**where, "step": entry["step"], "lr": entry["lr"],
                        "loss": loss if math.isfinite(loss) else str(loss)})
    return entries


def judge_record(plan: RunPlan, record: RunRecord, settings: Settings) -> judging.Judgement:
    """The judgement of what the runs recorded."""
    if settings.mode == "independent":
        grid = settings.independent_grid()
        curves = settings.num_sweeps
        made = [
            int(np.count_nonzero(record.steps[curve * len(grid) : (curve + 1) * len(grid)]))
            for curve in range(curves)
        ]
        losses = record.losses.reshape(curves, len(grid), plan.num_steps)
        return judging.judge_runs(grid, losses, settings, made=made)
    curves = [record.curve(run) for run in range(plan.num_runs)]
    reasons = [reason for reason in record.end_reasons if reason is not None]
    if not any(len(curve) for curve in curves):
        detail = reasons[0] if reasons else "no step was run"
        error = ValueError if is_exhausted(detail) else RuntimeError
        raise error(f"lr_find recorded no point: {detail}")
    return judging.judge_sweeps(
        plan.point_lrs(0),
        curves,
        settings,
        end_reason=reasons[0] if reasons else None,
        planned_points=plan.num_points,
    )


def save_plot(result: LRFindResult, plot_path: str | os.PathLike[str]) -> None:
    """Save the plot; a failure is a warning, never the loss of the result."""
    try:
        with _closing_figures():
            result.plot(path=plot_path)
    except Exception as error:
        warn_user([f"the result is complete, but saving the plot to {os.fspath(plot_path)!r} "
                   f"failed: {type(error).__name__}: {error}; call result.plot(path=...)"])


@contextlib.contextmanager
def _closing_figures() -> Iterator[None]:
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        yield
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


__all__ = ["MAX_STEPS", "Backend", "call_settings", "check_plot_path", "run_finder"]
