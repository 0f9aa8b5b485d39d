"""The search mode: short runs at candidate LRs, under the target schedule, judged on
validation loss, within a budget of optimizer steps.

1. **The bracketing sweep**: a classic sweep on the training loss, of a share of
   the budget (at most 100 steps, at least :data:`MIN_SWEEP_STEPS`).
2. **The bracket** (:func:`bracket`): the sweep read with no lag (a two-sided
   average in log-LR), from its lowest point down to where its loss starts to
   fall, at least :data:`BRACKET_DECADES` wide.
3. **Rung 0** (:func:`first_rung`): candidates about :data:`SPACING_DECADES` apart
   over the bracket. Every candidate trains from the same initial state, on the
   same batches, under the schedule the user will train with, compressed to the
   rung's horizon (``OneCycleLR``/``cosine_onecycle_schedule`` over that many
   steps, or a constant LR), and is scored by its validation loss at the end.
   While the best candidate sits on an edge, one more is added beyond it, budget
   permitting.
4. **Rung 1**: the best of rung 0 and its neighbours train longer, with what the
   budget has left (:func:`second_horizon`), moved to where the horizon
   correction (step 6) says the best LR lies at rung 1's horizon; widened at an
   edge the same way.
5. **The choice** (:func:`choose`): the vertex of a parabola in log-LR through the
   best candidate of the last rung and its neighbours (never outside them), and
   the range of LRs whose score is within :data:`TOLERANCE` of the best.
6. **The horizon** (:mod:`lrfind_core.horizon`): when the last rung's runs were
   shorter than the planned training, the choice and the range are scaled by
   ``(horizon / training_steps) ** HORIZON_EXPONENT``, since short runs favour
   higher LRs; the measured vertex is kept as ``measured_lr``.

Everything here is planning and judging; the backends only run the plans.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrfind_core.horizon import HORIZON_EXPONENT, horizon_factor
from lrfind_core.judging import smooth
from lrfind_core.monitor import MonitorSettings
from lrfind_core.plan import RunPlan, RunRecord, plan_sweeps
from lrfind_core.records import SearchRecord
from lrfind_core.settings import Settings
from lrfind_core.smoothing import centered_smooth
from lrfind_core.stopping import find_stop

SEARCH_SCHEDULES = ("one_cycle", "constant")
MIN_SWEEP_STEPS = 20
"""The shortest bracketing sweep; a budget that cannot pay for it is refused."""
MAX_SWEEP_STEPS = 100
SWEEP_SHARE = 0.2
"""At most this share of the budget goes to the bracketing sweep."""
MIN_HORIZON = 4
"""The shortest candidate run, in optimizer steps."""
SPACING_DECADES = 0.3
"""Rung 0's candidates are about this far apart, in decades of LR."""
FIRST_CANDIDATES = (6, 12)
"""The fewest and the most candidates of rung 0."""
FIRST_SHARE = 0.35
"""Rung 0 takes this share of what the sweep leaves (widening may add to it)."""
SECOND_CANDIDATES = 3
WIDEN_RESERVE = 1
"""Rung 1's horizon keeps room for this many more runs beyond an edge."""
BRACKET_DECADES = 2.5
"""Rung 0 reaches at least this far below its top (further down to where the sweep's
loss starts to fall, at most :data:`MAX_BRACKET_DECADES` in all)."""
MAX_BRACKET_DECADES = 4.0
TOP_BELOW_MINIMUM = {"one_cycle": 0.0, "constant": 0.5}
"""Decades below the LR of the sweep's lowest loss where rung 0 tops out, per schedule
(the best constant LR lies about half a decade below the best one-cycle peak)."""
TOP_BELOW_END = 1.5
"""Rung 0's top is at least this many decades below the last LR the sweep reached."""
READ_WIDTH_DECADES = 0.25
"""The width of the lag-free reading of the bracketing sweep (decades of LR)."""
FALL_FRACTION = 0.05
"""The loss has started to fall once it is this share of its fall below its start."""
TOLERANCE = 0.02
"""Scores within this relative gap of the best count as as good (the near-best range)."""
DEFAULT_BUDGET_FACTOR = 1.0
"""``budget_steps`` defaults to this many times ``training_steps``."""
SEARCH_VAL_BATCHES = 32
"""Validation batches averaged for a candidate's score, unless ``val_batches`` is set."""
HELD_OUT_SHARE = 0.1
HELD_OUT_BATCHES = (2, 16)
"""Without ``val_data``: the share of the training batches held out, and its bounds."""


def minimum_budget() -> int:
    """The smallest budget a search accepts, in optimizer steps."""
    return MIN_SWEEP_STEPS + (FIRST_CANDIDATES[0] + SECOND_CANDIDATES) * MIN_HORIZON


def budget_of(settings: Settings) -> int:
    """``settings.budget_steps``, or its default: :data:`DEFAULT_BUDGET_FACTOR` times
    the training (never below :func:`minimum_budget`)."""
    if settings.budget_steps is not None:
        return settings.budget_steps
    return max(minimum_budget(), round(DEFAULT_BUDGET_FACTOR * settings.training_steps))


def sweep_steps_for(budget_steps: int) -> int:
    """The bracketing sweep's length for a budget; a budget below :func:`minimum_budget`
    is a ``ValueError`` that says what is needed."""
    if budget_steps < minimum_budget():
        raise ValueError(
            f"budget_steps={budget_steps} cannot pay for a search: it needs at least "
            f"{minimum_budget()} optimizer steps ({MIN_SWEEP_STEPS} for the bracketing sweep "
            f"and {FIRST_CANDIDATES[0] + SECOND_CANDIDATES} candidate runs of {MIN_HORIZON} "
            "steps)"
        )
    return int(min(MAX_SWEEP_STEPS, max(MIN_SWEEP_STEPS, SWEEP_SHARE * budget_steps)))


def held_out_batches(num_batches: int | None) -> int:
    """Training micro-batches held out as validation data when there is no ``val_data``."""
    low, high = HELD_OUT_BATCHES
    if num_batches is None:
        return high // 2
    return int(min(high, max(low, round(HELD_OUT_SHARE * num_batches))))


def sweep_plan(settings: Settings, steps: int, held_out: int) -> RunPlan:
    """The bracketing sweep: a classic sweep of ``steps`` steps on the training loss,
    reading the data after the held-out batches."""
    plan = plan_sweeps(dataclasses.replace(settings, num_steps=steps, num_sweeps=1))
    return dataclasses.replace(plan, data_start=held_out, val_from_train=held_out,
                               keep_data=True)


def candidate_plan(
    settings: Settings, lrs: np.ndarray, horizon: int, val_batches: int, held_out: int
) -> RunPlan:
    """One run per candidate LR, ``horizon`` steps under the target schedule, from the
    same start on the same batches, scored by one validation point at its end."""
    count = len(lrs)
    return RunPlan(
        lrs=np.repeat(np.asarray(lrs, dtype=np.float64)[:, None], horizon, axis=1),
        curves=np.zeros(count, dtype=np.int64),
        block_batches=horizon * settings.accumulation_steps,
        accumulation_steps=settings.accumulation_steps,
        stop=MonitorSettings(settings.beta, settings.debias, math.inf),
        val_every=horizon,
        val_batches=val_batches,
        target=settings.for_schedule,
        data_start=held_out,
        val_from_train=held_out,
        keep_data=True,
    )


def scores_of(record: RunRecord) -> np.ndarray:
    """Each run's validation loss at its end; +inf where it diverged or has none."""
    scores = np.full(len(record.made), np.inf)
    for run, made in enumerate(record.made):
        if made >= 1 and np.isfinite(record.points[run, made - 1]):
            scores[run] = float(record.points[run, made - 1])
    return scores


def bracket(lrs: np.ndarray, losses: np.ndarray, schedule: str) -> tuple[float, float, str]:
    """Rung 0's LR range from the bracketing sweep's raw losses: ``(low, high, how)``.

    The curve (up to its first non-finite loss) is read with no lag
    (:func:`~lrfind_core.smoothing.centered_smooth`, :data:`READ_WIDTH_DECADES`
    wide, or 2.5 sweep steps if wider). Its top is the LR of its lowest point, but
    at least :data:`TOP_BELOW_END` decades below the last LR the sweep reached (a
    noisy short curve can bottom out early); ``high`` is :data:`TOP_BELOW_MINIMUM`
    decades below the top. ``low`` is :data:`BRACKET_DECADES` below ``high``, or
    lower, down to where the loss starts to fall (past the last point above its
    start less :data:`FALL_FRACTION` of the fall), but never more than
    :data:`MAX_BRACKET_DECADES` below ``high`` nor below the sweep.
    """
    finite = np.isfinite(losses)
    end = int(np.argmin(finite)) if not np.all(finite) else len(losses)
    if end < 3:
        raise ValueError(
            f"the bracketing sweep diverged after {end} finite point(s); the search has "
            "nothing to bracket: lower start_lr"
        )
    lrs, losses = lrs[:end], losses[:end]
    step = float(np.log10(lrs[-1] / lrs[0])) / max(end - 1, 1)
    read = centered_smooth(lrs, losses, max(READ_WIDTH_DECADES, 2.5 * step))
    at_minimum = int(np.argmin(read))
    start = float(read[0])
    threshold = start - FALL_FRACTION * (start - float(read[at_minimum]))
    above = np.flatnonzero(read[:at_minimum] > threshold)
    at_fall = int(above[-1]) + 1 if len(above) else 0
    top = max(float(lrs[at_minimum]), float(lrs[-1]) * 10.0**-TOP_BELOW_END)
    high = top * 10.0 ** -TOP_BELOW_MINIMUM[schedule]
    low = min(float(lrs[at_fall]), high * 10.0**-BRACKET_DECADES)
    low = max(low, high * 10.0**-MAX_BRACKET_DECADES, float(lrs[0]))
    how = (f"the sweep's loss starts to fall at {lrs[at_fall]:.3g} and is lowest at "
           f"{lrs[at_minimum]:.3g} (read with no lag)")
    return low, high, how


def cut_at_stop(curve: np.ndarray, settings: Settings) -> np.ndarray:
    """The raw curve up to and including the point where the stop rule fires."""
    stop, _ = find_stop(curve, smooth(curve, settings), diverge_factor=settings.diverge_factor)
    return curve if stop is None else curve[: stop + 1]


def first_rung(low: float, high: float, left: int, training_steps: int) -> tuple[np.ndarray, int]:
    """Rung 0: LRs about :data:`SPACING_DECADES` apart from ``low`` to ``high``, and a
    horizon that spends :data:`FIRST_SHARE` of the ``left`` steps (fewer candidates
    when even :data:`MIN_HORIZON` steps each would cost more)."""
    width = float(np.log10(high / low))
    fewest, most = FIRST_CANDIDATES
    count = int(np.clip(round(width / SPACING_DECADES) + 1, fewest, most))
    share = int(FIRST_SHARE * left)
    count = max(fewest, min(count, share // MIN_HORIZON))
    horizon = int(min(training_steps, max(MIN_HORIZON, share // count)))
    return np.geomspace(low, high, count), horizon


def second_horizon(left: int, training_steps: int) -> int:
    """Rung 1's horizon: what is left, over its candidates and the widening reserve."""
    per_run = left // (SECOND_CANDIDATES + WIDEN_RESERVE)
    return int(min(training_steps, max(MIN_HORIZON, per_run)))


def beyond_edge(lrs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The LR to add when the best score sits on an edge: one step further out, at
    the spacing of the two candidates at that edge; none when it does not (nor at
    the top edge when a candidate there diverged)."""
    order = np.argsort(lrs)
    lrs, scores = lrs[order], scores[order]
    if len(lrs) < 2 or not np.any(np.isfinite(scores)):
        return np.empty(0)
    best = int(np.argmin(scores))
    if best == 0:
        return np.array([lrs[0] * lrs[0] / lrs[1]])
    if best == len(lrs) - 1 and np.all(np.isfinite(scores)):
        return np.array([lrs[-1] * lrs[-1] / lrs[-2]])
    return np.empty(0)


def neighbours(lrs: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """The best LR and the ones next to it in LR order, ``count`` in all."""
    order = np.argsort(lrs)
    lrs, scores = lrs[order], scores[order]
    best = int(np.argmin(scores))
    first = int(np.clip(best - count // 2, 0, max(len(lrs) - count, 0)))
    return lrs[first : first + count]


def choose(lrs: np.ndarray, scores: np.ndarray) -> tuple[float | None, str]:
    """The LR at the vertex of a parabola in log-LR through the best score and its
    neighbours, kept between the neighbours; the best LR itself at an edge, when
    the parabola does not open upwards, or with fewer than 3 points."""
    order = np.argsort(lrs)
    lrs, scores = lrs[order], scores[order]
    finite = np.isfinite(scores)
    if not np.any(finite):
        return None, "every candidate diverged"
    best = int(np.argmin(np.where(finite, scores, np.inf)))
    if best == 0 or best == len(lrs) - 1 or not np.all(finite[best - 1 : best + 2]):
        return float(lrs[best]), f"the best candidate, {lrs[best]:.3g}, at an edge of those run"
    x = np.log10(lrs[best - 1 : best + 2])
    a, b, _ = np.polyfit(x, scores[best - 1 : best + 2], 2)
    if a <= 0:
        return float(lrs[best]), f"the best candidate, {lrs[best]:.3g}"
    vertex = float(np.clip(-b / (2 * a), x[0], x[2]))
    return 10.0**vertex, (f"vertex of a parabola in log-LR through the best candidate "
                          f"{lrs[best]:.3g} and its neighbours")


def near_best(lrs: np.ndarray, scores: np.ndarray, chosen: float) -> tuple[float, float] | None:
    """The LRs whose score is within :data:`TOLERANCE` of the best, and ``chosen``."""
    finite = np.isfinite(scores)
    if not np.any(finite):
        return None
    best = float(np.min(scores[finite]))
    good = lrs[finite & (scores <= best + TOLERANCE * abs(best))]
    return float(min(good.min(), chosen)), float(max(good.max(), chosen))


@dataclass
class Rung:
    """The candidates a rung ran: LRs, horizon (steps) and scores, in the order run."""

    number: int
    horizon: int
    lrs: np.ndarray
    scores: np.ndarray


def record_of(
    settings: Settings, budget: int, sweep_steps: int, rungs: list[Rung], held_out: int
) -> SearchRecord:
    """The search record: every candidate, the choice and the near-best range, both
    scaled from the last rung's horizon to the planned training's."""
    last = rungs[-1]
    training = int(settings.training_steps or 0)
    measured, reason = choose(last.lrs, last.scores)
    near = None if measured is None else near_best(last.lrs, last.scores, measured)
    lr = measured
    if measured is not None:
        reason += f", after {last.horizon} of {training} steps"
        factor = horizon_factor(last.horizon, training)
        if factor != 1.0:
            lr = measured * factor
            near = (near[0] * factor, near[1] * factor) if near is not None else None
            reason += (f", x {factor:.3g} = ({last.horizon}/{training})^{HORIZON_EXPONENT:g} "
                       "for the steps not run")
            if lr < settings.start_lr:
                lr = float(settings.start_lr)
                reason += f", raised to start_lr {lr:.3g}"
    return SearchRecord(
        schedule=settings.for_schedule,
        training_steps=training,
        budget_steps=budget,
        lrs=np.concatenate([rung.lrs for rung in rungs]),
        horizons=np.concatenate([np.full(len(rung.lrs), rung.horizon) for rung in rungs]),
        rungs=np.concatenate([np.full(len(rung.lrs), rung.number) for rung in rungs]),
        scores=np.concatenate([rung.scores for rung in rungs]),
        lr=lr,
        near_best=near,
        tolerance=TOLERANCE,
        reason=reason,
        sweep_steps=sweep_steps,
        held_out_batches=held_out,
        measured_lr=measured,
        horizon_exponent=HORIZON_EXPONENT,
    )


def spent(records: list[RunRecord]) -> int:
    """Optimizer steps the recorded runs trained."""
    return int(sum(int(record.steps.sum()) for record in records))


@dataclass
class SearchOutcome:
    """Everything a search ran: the sweep's plan and record, every record, the choice."""

    sweep: RunPlan
    sweep_record: RunRecord
    records: list[RunRecord]
    search: SearchRecord


def run_search(
    run: Callable[[RunPlan], RunRecord],
    settings: Settings,
    has_validation: bool,
    num_batches: int | None,
    notices: list[str],
) -> SearchOutcome:
    """The whole search (see the module); ``run`` makes a plan's runs from the start."""
    budget = budget_of(settings)
    training = int(settings.training_steps)
    held_out = 0 if has_validation else held_out_batches(num_batches)
    if held_out:
        notices.append(
            f"no val_data: the search holds out the first {held_out} training batches as "
            "validation data (never trained on; the runs cycle through the rest). Pass "
            "val_data to score the candidates on data of your own"
        )
    val_batches = held_out or settings.val_batches or SEARCH_VAL_BATCHES
    sweep = sweep_plan(settings, sweep_steps_for(budget), held_out)
    records = [run(sweep)]
    curve = records[0].curve(0)
    ended = records[0].end_reasons[0]
    if len(curve) < 3 and ended is not None:
        raise ValueError(
            f"the bracketing sweep recorded {len(curve)} point(s) ({ended}): the search has "
            "nothing to bracket. Give it more training data"
        )
    low, high, how = bracket(sweep.point_lrs(0)[: len(curve)], cut_at_stop(curve, settings),
                             settings.for_schedule)

    def measure(number: int, lrs: np.ndarray, horizon: int) -> Rung:
        record = run(candidate_plan(settings, lrs, horizon, val_batches, held_out))
        records.append(record)
        return Rung(number, horizon, np.asarray(lrs, dtype=np.float64), scores_of(record))

    def widen(rung: Rung, keep: int) -> None:
        """Add runs beyond the edge the best sits on while ``keep`` steps stay free."""
        while len(extra := beyond_edge(rung.lrs, rung.scores)):
            if spent(records) + len(extra) * rung.horizon + keep > budget:
                return
            more = measure(rung.number, extra, rung.horizon)
            rung.lrs = np.concatenate([rung.lrs, more.lrs])
            rung.scores = np.concatenate([rung.scores, more.scores])

    lrs, horizon = first_rung(low, high, budget - spent(records), training)
    first = measure(0, lrs, horizon)
    widen(first, keep=(budget - spent(records)) // 2)
    rungs = [first]
    left = budget - spent(records)
    if np.any(np.isfinite(first.scores)) and left >= SECOND_CANDIDATES * MIN_HORIZON:
        horizon = second_horizon(left, training)
        candidates = neighbours(first.lrs, first.scores, SECOND_CANDIDATES)
        second = measure(1, candidates * horizon_factor(first.horizon, horizon), horizon)
        widen(second, keep=0)
        rungs.append(second)
    search = record_of(settings, budget, sweep.num_steps, rungs, held_out)
    search.reason = f"{search.reason}; {how}"
    return SearchOutcome(sweep, records[0], records, search)


__all__ = [
    "DEFAULT_BUDGET_FACTOR",
    "MIN_SWEEP_STEPS",
    "SEARCH_SCHEDULES",
    "Rung",
    "SearchOutcome",
    "beyond_edge",
    "bracket",
    "budget_of",
    "candidate_plan",
    "choose",
    "first_rung",
    "held_out_batches",
    "minimum_budget",
    "near_best",
    "neighbours",
    "record_of",
    "run_search",
    "scores_of",
    "second_horizon",
    "sweep_plan",
    "sweep_steps_for",
]
