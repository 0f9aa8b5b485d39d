"""Suggestions that know the schedule they will be used with.

The best LR depends on how it is used. On the suggestion-quality benchmark
(``bench/suggestion_quality.py``, results in ``bench/RESULTS.md``: 8 small tasks,
3 seeds, a 25-point grid search per task as the oracle), the best peak LR of a
one-cycle schedule was a median 0.5 decades (0 to 1.5) above the best constant
LR. A rule read off the curve cannot serve both, so each (curve kind, method) has
a factor per schedule: the LR to use is ``factor * (LR the method read off the
curve)``. Factors are ``10 ** median(log10(oracle best / method's LR))`` over all
cases, rounded to a quarter decade; scored leave-one-task-out, the default
(``minimum``) lands within 10% of the oracle's validation loss in 20 of 24 cases
under one-cycle and 15 of 24 under a constant LR.

Curve kinds: ``"sweep"`` (one classic sweep), ``"sweeps"`` (the median of several),
``"independent"`` (independent-mode scores). ``valley`` and ``slide`` have no
factor on independent curves: those curves fall strictly by tiny amounts across
the flat low-LR start, which both rules mistake for the valley (offsets of -3 and
-5.5 decades on the benchmark); their LR is returned unscaled with a warning in
the reason.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lrfind_core.settings import FOR_SCHEDULES
from lrfind_core.suggestion import Suggestion


def _decades(one_cycle: float, constant: float) -> dict[str, float]:
    return {"one_cycle": 10.0**one_cycle, "constant": 10.0**constant}


SCHEDULE_FACTORS: dict[str, dict[str, dict[str, float]]] = {
    "sweep": {
        "valley": _decades(0.75, 0.25),
        "steep": _decades(0.0, -0.5),
        "minimum": _decades(0.0, -0.5),
        "slide": _decades(0.5, 0.0),
    },
    "sweeps": {
        "valley": _decades(1.0, 0.5),
        "steep": _decades(0.25, -0.5),
        "minimum": _decades(0.0, -0.5),
        "slide": _decades(0.5, -0.25),
    },
    "independent": {
        "steep": _decades(0.75, 0.5),
        "minimum": _decades(1.0, 0.5),
    },
}
"""Per curve kind, method and schedule, the factor from the curve's LR to the LR to use."""


def curve_kind(mode: str, num_sweeps: int) -> str:
    """The calibration key of a result: ``"sweep"``, ``"sweeps"`` or ``"independent"``."""
    if mode == "independent":
        return "independent"
    return "sweeps" if num_sweeps > 1 else "sweep"


def for_schedule(suggestion: Suggestion, schedule: str, kind: str, lrs: np.ndarray) -> Suggestion:
    """``suggestion`` turned into the LR to use under ``schedule``.

    The LR is clipped to the swept range ``[lrs[0], lrs[-1]]``; the reason says
    which factor was applied. ``curve_lr`` keeps the LR the method read off.
    """
    if schedule == "curve" or suggestion.curve_lr is None:
        return replace(suggestion, for_schedule=schedule)
    factor = SCHEDULE_FACTORS.get(kind, {}).get(suggestion.method, {}).get(schedule)
    if factor is None:
        note = f"; no {schedule} factor for {suggestion.method} on {kind} curves: unscaled"
        return replace(suggestion, for_schedule=schedule, reason=suggestion.reason + note)
    lr = suggestion.curve_lr * factor
    note = f"; x{factor:.3g} for {schedule}"
    if lr < lrs[0] or lr > lrs[-1]:
        lr = float(np.clip(lr, lrs[0], lrs[-1]))
        note += f", clipped to the swept range [{lrs[0]:.3g}, {lrs[-1]:.3g}]"
    index = int(np.argmin(np.abs(np.log(lrs) - np.log(lr))))
    return replace(
        suggestion, lr=lr, index=index, for_schedule=schedule, reason=suggestion.reason + note
    )


__all__ = ["FOR_SCHEDULES", "SCHEDULE_FACTORS", "curve_kind", "for_schedule"]
