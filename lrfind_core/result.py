"""The result of a range test: a record of the curve, its stop, and the suggestions.

:class:`LRFindResult` holds data. Its methods delegate: judging to
:mod:`lrfind_core.judging`, files to :mod:`lrfind_core.result_file`, plots to
:mod:`lrfind_core.plotting`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrfind_core import judging, result_file
from lrfind_core.records import IndependentRuns, SearchRecord, SweepEnsemble
from lrfind_core.settings import Settings, resolve_settings
from lrfind_core.suggestion import Suggestion


@dataclass(eq=False)
class LRFindResult:
    """A recorded LR range test and what lrfind reads off it.

    Attributes:
      lrs: float64 LR of every recorded point (the reference param group's LR).
      losses: raw loss of every recorded point, as recorded (float64); with several
        sweeps the median curve's (a non-finite loss counts as inf there), in
        independent mode each run's score.
      smoothed_losses: the EWA of ``losses`` (float64), see :mod:`lrfind_core.smoothing`.
      stop_step: index of the point that triggered the stop rule (it is the last one
        kept), or None when the curve did not diverge.
      stop_reason: ``"diverged"``, ``"non-finite loss"``, ``"completed"``, or why the
        curve ended early (for example the data ran out).
      suggestions: per method, its :class:`~lrfind_core.suggestion.Suggestion`: the LR
        to use under ``settings.for_schedule`` (or None), the curve index, the reason.
      settings: the :class:`~lrfind_core.settings.Settings` used.
      planned_points: curve points the run planned: ``settings.num_steps``, or fewer
        when a point is recorded every few steps (a validation curve).
      meta: backend, versions, device, timings (seconds) and other run facts.
      ensemble: with ``num_sweeps > 1``, every curve, their band and the spread of
        their suggestions; the fields above then describe the median curve.
      runs: in independent mode, every short run's losses.
      search: in search mode, every candidate, its score and the choice; the curve
        fields then describe the bracketing sweep, and ``suggestion`` is the
        search's LR.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    stop_step: int | None
    stop_reason: str
    suggestions: dict[str, Suggestion]
    settings: Settings
    planned_points: int
    meta: dict[str, Any] = field(default_factory=dict)
    ensemble: SweepEnsemble | None = None
    runs: IndependentRuns | None = None
    search: SearchRecord | None = None

    @classmethod
    def from_judgement(
        cls,
        judgement: judging.Judgement,
        settings: Settings,
        meta: dict[str, Any] | None = None,
        search: SearchRecord | None = None,
    ) -> LRFindResult:
        """A result from a :class:`~lrfind_core.judging.Judgement`, the run facts and,
        in search mode, the search's record (its LR becomes ``suggestions["search"]``)."""
        suggestions = judgement.suggestions
        if search is not None:
            suggestions = {"search": judging.search_suggestion(judgement.lrs, search),
                           **suggestions}
        return cls(
            lrs=judgement.lrs,
            losses=judgement.losses,
            smoothed_losses=judgement.smoothed_losses,
            stop_step=judgement.stop_step,
            stop_reason=judgement.stop_reason,
            suggestions=suggestions,
            settings=settings,
            planned_points=judgement.planned_points,
            meta=dict(meta or {}),
            ensemble=judgement.ensemble,
            runs=judgement.runs,
            search=search,
        )

    @classmethod
    def from_curve(
        cls,
        lrs: Any,
        losses: Any,
        settings: Settings | str | None = None,
        *,
        end_reason: str | None = None,
        planned_points: int | None = None,
        meta: dict[str, Any] | None = None,
        **changes: Any,
    ) -> LRFindResult:
        """Judge a curve recorded by any tool: smoothing, stop and suggestions.

        ``settings`` is a :class:`~lrfind_core.settings.Settings`, a preset name
        (``"fastai"``...) or None; ``changes`` are Settings fields to change. When
        ``settings`` is not a Settings object, ``start_lr``, ``end_lr`` and
        ``num_steps`` default to the curve's own. See
        :func:`~lrfind_core.judging.judge_curve` for the other arguments.
        """
        if not isinstance(settings, Settings):
            points = len(np.atleast_1d(lrs))
            defaults: dict[str, Any] = {"num_steps": max(points, 2)}
            if points >= 2:
                first, last = np.asarray(lrs, dtype=np.float64)[[0, -1]]
                if np.isfinite(first) and np.isfinite(last) and 0 < first < last:
                    defaults.update(start_lr=float(first), end_lr=float(last))
            changes = {**defaults, **changes}
        chosen = resolve_settings(settings, **changes)
        judgement = judging.judge_curve(
            lrs, losses, chosen, end_reason=end_reason, planned_points=planned_points
        )
        return cls.from_judgement(judgement, chosen, meta)

    @property
    def suggestion(self) -> float | None:
        """The LR to use: the search's in search mode, else ``settings.method``'s
        suggestion for ``settings.for_schedule``."""
        return self.suggest().lr

    def suggest(self, method: str | None = None, for_schedule: str | None = None) -> Suggestion:
        """The suggestion of ``method`` for ``for_schedule``.

        Defaults: the settings' ``method`` and ``for_schedule``. Schedules:
        ``"one_cycle"`` (a one-cycle peak LR), ``"constant"``, ``"curve"`` (as read
        off the curve); see :mod:`lrfind_core.schedule_aware`.
        """
        schedule = self.settings.for_schedule if for_schedule is None else for_schedule
        if self.search is not None and method in (None, "search"):
            if schedule == self.search.schedule:
                return self.suggestions["search"]
            if method == "search":
                raise ValueError(
                    f"the search measured {self.search.schedule!r} runs; for {schedule!r} "
                    "run the search again with that for_schedule"
                )
        method = self.settings.method if method is None else method
        if method in self.suggestions and schedule == self.settings.for_schedule:
            return self.suggestions[method]
        return judging.suggest_on(
            self.lrs, self.smoothed_losses, self.settings, self.planned_points, method, schedule
        )

    def resmooth(self, beta: float, debias: bool | None = None) -> LRFindResult:
        """A new result from the same raw losses with another smoothing.

        The stop rule and suggestions are re-judged; a curve can only get shorter.
        With K sweeps, each sweep and their median are re-judged; in search mode,
        the bracketing sweep is (the search's candidates and its LR are kept).
        Independent runs are not smoothed: a ValueError.
        """
        if self.runs is not None:
            raise ValueError("resmooth applies to sweeps; independent runs are scored "
                             "unsmoothed (settings.average_last sets their score)")
        changes: dict[str, Any] = {"beta": beta}
        if debias is not None:
            changes["debias"] = debias
        settings = dataclasses.replace(self.settings, **changes)
        end_reason = None if self.stop_step is not None else self.stop_reason
        if self.ensemble is None:
            judgement = judging.judge_curve(
                self.lrs, self.losses, settings, end_reason=end_reason,
                planned_points=self.planned_points,
            )
        else:
            judgement = judging.judge_sweeps(
                self._sweep_lrs(), self.ensemble.kept_curves(), settings,
                end_reason=end_reason, planned_points=self.planned_points,
            )
        return LRFindResult.from_judgement(judgement, settings, self.meta, self.search)

    def _sweep_lrs(self) -> np.ndarray:
        """The LR of every planned point of the K sweeps (their curves may reach past
        the median curve's ``lrs``), rebuilt from the settings and checked against
        ``lrs``."""
        lrs = self.settings.learning_rates()
        val_every = self.meta.get("val_every")
        if val_every:
            lrs = lrs[val_every - 1 :: val_every]
        lrs = lrs[: self.ensemble.sweep_losses.shape[1]]
        if len(lrs) < self.ensemble.sweep_losses.shape[1] or not np.allclose(
                lrs[: len(self.lrs)], self.lrs, rtol=1e-12, atol=0):
            raise ValueError("resmooth cannot rebuild the sweeps' LRs from the settings and "
                             "meta of this result (were they edited?)")
        return lrs

    def plot(
        self,
        ax: Any = None,
        path: str | os.PathLike[str] | None = None,
        methods: Sequence[str] | None = None,
        show_raw: bool = True,
        hide_start: int = 0,
        hide_end: int = 0,
        frame: str = "informative",
    ) -> Any:
        """Plot the curve and suggestions; return the matplotlib Axes (never shows).

        See :func:`lrfind_core.plotting.plot_result` (``hide_start``/``hide_end``
        leave points out of the drawing; ``frame="all"`` shows the diverged tail).
        """
        from lrfind_core.plotting import plot_result

        return plot_result(self, ax=ax, path=path, methods=methods, show_raw=show_raw,
                           hide_start=hide_start, hide_end=hide_end, frame=frame)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (non-finite floats as strings)."""
        return result_file.encode_result(self)

    @classmethod
    def from_dict(cls, data: Any) -> LRFindResult:
        """Inverse of :meth:`to_dict`; a ``ValueError`` for anything else."""
        return cls(**result_file.decode_result(data))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the result as JSON to ``path``, atomically (an existing file is
        replaced only once the new one is complete)."""
        result_file.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LRFindResult:
        """Read a result written by :meth:`save`."""
        return cls(**result_file.decode_result(result_file.read_json(path), source=str(path)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LRFindResult):
            return NotImplemented
        arrays_equal = all(
            np.array_equal(getattr(self, name), getattr(other, name), equal_nan=True)
            for name in ("lrs", "losses", "smoothed_losses")
        )
        return arrays_equal and all(
            getattr(self, name) == getattr(other, name)
            for name in (
                "stop_step",
                "stop_reason",
                "suggestions",
                "settings",
                "planned_points",
                "meta",
                "ensemble",
                "runs",
                "search",
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        detail = self.suggest()
        lr = "None" if detail.lr is None else f"{detail.lr:.3g}"
        return (
            f"LRFindResult(points={len(self.lrs)}, stop_reason={self.stop_reason!r}, "
            f"suggestion={lr} ({detail.method}, for {detail.for_schedule}))"
        )
