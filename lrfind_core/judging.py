"""Judging recorded curves: smoothing, the stop, suggestions, aggregation (pure functions).

Each ``judge_*`` function turns what a backend recorded (or any recorded curve)
into a :class:`Judgement`: the fields of an
:class:`~lrfind_core.result.LRFindResult` apart from the settings and the run
facts. Nothing here runs a model or keeps state; the same raw losses always
give the same judgement, bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from lrfind_core.aggregation import end_losses, median_curve, pad_curves, score_stop
from lrfind_core.arguments import check_choice, check_curve, check_int
from lrfind_core.records import IndependentRuns, SearchRecord, SweepEnsemble
from lrfind_core.schedule_aware import curve_kind, for_schedule
from lrfind_core.settings import FOR_SCHEDULES, Settings
from lrfind_core.smoothing import ewa_smooth
from lrfind_core.stopping import STOP_REASONS, find_stop
from lrfind_core.suggestion import Suggestion, check_method, read_curve, suggest

COMPLETED = "completed"
ENDED_EARLY = "ended before the planned steps"
MAJORITY_ENDED = "ended where most curves had ended"


class Judgement(NamedTuple):
    """A judged curve: what a result holds besides its settings and meta.

    Attributes:
      lrs, losses, smoothed_losses: the curve up to and including its stop (float64).
      stop_step: index of the point that fired the stop rule (the last kept), or None.
      stop_reason: why the curve ended.
      suggestions: every method's :class:`~lrfind_core.suggestion.Suggestion`.
      planned_points: curve points the run planned.
      ensemble: with several curves, every curve and their band.
      runs: in independent mode, every run's losses.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    stop_step: int | None
    stop_reason: str
    suggestions: dict[str, Suggestion]
    planned_points: int
    ensemble: SweepEnsemble | None = None
    runs: IndependentRuns | None = None


def is_independent(settings: Settings) -> bool:
    """Whether the curve holds independent-run scores (judged unsmoothed, untrimmed)."""
    return settings.mode == "independent"


def smooth(losses: np.ndarray, settings: Settings) -> np.ndarray:
    """The smoothed curve: the EWA of ``settings`` (none for independent scores)."""
    if is_independent(settings):
        return np.asarray(losses, dtype=np.float64).copy()
    return ewa_smooth(losses, settings.beta, settings.debias, arithmetic=settings.arithmetic)


def suggest_on(
    lrs: np.ndarray,
    smoothed: np.ndarray,
    settings: Settings,
    planned_points: int,
    method: str | None = None,
    schedule: str | None = None,
    *,
    checked: bool = False,
) -> Suggestion:
    """``method``'s reading of a smoothed curve, as the LR to use under ``schedule``
    (defaults: the settings' ``method`` and ``for_schedule``). ``checked``: the curve
    is one :func:`~lrfind_core.arguments.check_curve` returned (not checked again)."""
    method = settings.method if method is None else check_method(method)
    schedule = settings.for_schedule if schedule is None else schedule
    check_choice("for_schedule", schedule, FOR_SCHEDULES)
    independent = is_independent(settings)
    skip_start = 0 if independent else settings.skip_start
    skip_end = 0 if independent else settings.skip_end
    if checked:
        skip_start = planned_points // 10 if skip_start is None else skip_start
        read = read_curve(lrs, smoothed, method, skip_start, skip_end, settings.arithmetic)
    else:
        read = suggest(lrs, smoothed, method, skip_start=skip_start, skip_end=skip_end,
                       planned_steps=planned_points, arithmetic=settings.arithmetic)
    return for_schedule(read, schedule, curve_kind(settings.mode, settings.num_sweeps), lrs)


def judge_curve(
    lrs: Any,
    losses: Any,
    settings: Settings,
    *,
    end_reason: str | None = None,
    planned_points: int | None = None,
) -> Judgement:
    """Smooth one recorded curve, cut it where the stop rule fires, and suggest.

    Args:
      lrs: LR of each recorded point (> 0, increasing).
      losses: raw loss of each point. Points after the stop rule fires are dropped.
      settings: how to smooth, stop and suggest.
      end_reason: why a curve shorter than planned ended, if the stop rule did
        not fire (default "ended before the planned steps").
      planned_points: curve points planned (default ``settings.num_steps``).
    """
    lrs, losses = check_curve(lrs, losses)
    if len(lrs) < 1:
        raise ValueError("a curve needs at least one recorded point")
    for method in settings.methods:
        check_method(method)
    planned = (settings.num_steps if planned_points is None
               else check_int("planned_points", planned_points, minimum=1))
    smoothed = smooth(losses, settings)
    stop_step, code = find_stop(losses, smoothed, diverge_factor=settings.diverge_factor)
    if stop_step is not None:
        keep = stop_step + 1
        lrs, losses, smoothed = lrs[:keep], losses[:keep], smoothed[:keep]
        stop_reason = STOP_REASONS[code]
    elif len(lrs) >= planned:
        stop_reason = COMPLETED
    else:
        stop_reason = end_reason or ENDED_EARLY
    suggestions = {
        method: suggest_on(lrs, smoothed, settings, planned, method, checked=True)
        for method in settings.methods
    }
    return Judgement(lrs, losses, smoothed, stop_step, stop_reason, suggestions, planned)


def judge_sweeps(
    lrs: Any,
    curves: list[Any],
    settings: Settings,
    *,
    end_reason: str | None = None,
    planned_points: int | None = None,
    runs: IndependentRuns | None = None,
) -> Judgement:
    """Judge K recorded curves of the same LRs, and their median curve.

    Each curve (raw losses of the first ``len(curve)`` LRs of ``lrs``; empty
    curves are left out) is judged on its own, as one sweep; the judgement's
    curve is their median (:func:`~lrfind_core.aggregation.median_curve`), judged
    like a single curve, and ``ensemble`` keeps the curves, their band and their
    suggestions. With one curve, that curve's judgement.

    With several curves the judgement's ``losses`` is that median, an aggregate: a
    point where a curve's loss is non-finite counts it as +inf, so a NaN raw loss
    can show there as ``inf``. ``ensemble.sweep_losses`` keeps each curve's raw
    losses as given (NaN as NaN), padded with NaN after its end.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    curves = [curve for curve in curves if len(curve)]
    if not curves:
        raise ValueError("judging needs at least one curve with a recorded point")
    one_sweep = settings
    if len(curves) > 1 and not is_independent(settings):
        # Each curve alone is one sweep: its suggestions take the one-sweep factors.
        one_sweep = dataclasses.replace(settings, num_sweeps=1)
    singles = [
        judge_curve(lrs[: len(curve)], curve, one_sweep, planned_points=planned_points)
        for curve in curves
    ]
    if len(singles) == 1:
        single = singles[0]
        ended_early = single.stop_step is None and single.stop_reason != COMPLETED
        if end_reason is not None and ended_early:
            single = single._replace(stop_reason=end_reason)
        return single._replace(runs=runs)
    reasons = [single.stop_reason for single in singles]
    common = max(reasons, key=reasons.count)  # ties: the first curve's reason
    aggregate = median_curve([single.losses for single in singles])
    judged = judge_curve(
        lrs[: len(aggregate)],
        aggregate,
        settings,
        end_reason=end_reason
        or f"{MAJORITY_ENDED} ({reasons.count(common)} of {len(reasons)}: {common})",
        planned_points=planned_points,
    )
    return judged._replace(ensemble=_ensemble(singles, judged, len(lrs)), runs=runs)


def _ensemble(singles: list[Judgement], judged: Judgement, length: int) -> SweepEnsemble:
    points = len(judged.lrs)
    smoothed = pad_curves([single.smoothed_losses for single in singles], points)
    reached = np.any(~np.isnan(smoothed), axis=0)
    band = np.full((2, points), np.nan)
    if np.any(reached):
        band[:, reached] = np.nanpercentile(smoothed[:, reached], [25, 75], axis=0)
    return SweepEnsemble(
        sweep_losses=pad_curves([single.losses for single in singles], length),
        sweep_smoothed=pad_curves([single.smoothed_losses for single in singles], length),
        band_low=band[0],
        band_high=band[1],
        sweep_suggestions={
            method: [single.suggestions[method].lr for single in singles]
            for method in judged.suggestions
        },
        stop_steps=[single.stop_step for single in singles],
    )


def judge_runs(
    lrs: Any, run_losses: Any, settings: Settings, *, made: list[int] | None = None
) -> Judgement:
    """Judge independent runs: ``run_losses[k, m, i]`` is the raw loss of step i of
    the run at ``lrs[m]`` in curve k.

    ``made[k]`` is how many runs of curve k were made, in increasing LR order
    (default: all). Each run is scored by :func:`~lrfind_core.aggregation.end_losses`;
    a curve of scores ends where the stop rule fires on it, and the runs above
    are kept as NaN in ``runs`` (a backend that made them anyway gives the same
    judgement as one that stopped). Curves are aggregated as by :func:`judge_sweeps`.

    ``runs.run_losses`` keeps the raw losses as given (NaN as NaN). The curve's
    ``losses`` (and, with several curves, ``ensemble.sweep_losses``) are scores, not
    raw losses: a run with any non-finite loss scores +inf, never NaN.
    """
    runs = np.array(run_losses, dtype=np.float64)
    if runs.ndim != 3 or runs.shape[1] != len(lrs):
        raise ValueError(
            f"run_losses must have shape (curves, {len(lrs)} LRs, steps), got {runs.shape}"
        )
    made = [runs.shape[1]] * runs.shape[0] if made is None else [int(m) for m in made]
    if len(made) != runs.shape[0] or not all(0 <= m <= runs.shape[1] for m in made):
        raise ValueError(f"made must give 0..{runs.shape[1]} runs per curve, got {made}")
    curves, kept = [], []
    for curve, count in zip(runs, made, strict=True):
        scores = end_losses(curve[:count], settings.average_last)
        stop = score_stop(scores, settings.diverge_factor)
        keep = count if stop is None else stop + 1
        curve[keep:] = np.nan
        curves.append(scores[:keep])
        kept.append(keep)
    record = IndependentRuns(run_losses=runs, average_last=settings.average_last, made=kept)
    return judge_sweeps(lrs, curves, settings, planned_points=len(lrs), runs=record)


def search_suggestion(lrs: np.ndarray, search: SearchRecord) -> Suggestion:
    """The search's choice as a suggestion (indexed at the nearest point of the sweep)."""
    if search.lr is None:
        return Suggestion("search", None, None, search.reason, None, search.schedule)
    index = int(np.argmin(np.abs(np.log(lrs) - np.log(search.lr))))
    return Suggestion("search", search.lr, index, search.reason, None, search.schedule)


__all__ = [
    "COMPLETED",
    "ENDED_EARLY",
    "MAJORITY_ENDED",
    "Judgement",
    "judge_curve",
    "judge_runs",
    "judge_sweeps",
    "search_suggestion",
    "smooth",
    "suggest_on",
]
