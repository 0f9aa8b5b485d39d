"""The result of an LR range test: the curve, where it stopped, and the suggestions."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lrfind_core._checks import check_choice, check_curve, check_int
from lrfind_core.config import FinderConfig, make_config
from lrfind_core.ensemble import (
    IndependentRuns,
    SweepEnsemble,
    end_losses,
    median_curve,
    pad_curves,
    score_stop,
)
from lrfind_core.schedule_aware import FOR_SCHEDULES, curve_kind, for_schedule
from lrfind_core.serialization import (
    decode_floats,
    decode_optional_float,
    encode_floats,
    encode_optional_float,
)
from lrfind_core.smoothing import ewa_smooth
from lrfind_core.stopping import STOP_REASONS, find_stop
from lrfind_core.suggestion import Suggestion, suggest

FORMAT_NAME = "lrfind-result"
FORMAT_VERSION = 2
"""Version 2 adds schedule-aware suggestions (``for_schedule``, ``curve_lr``).
Version 1 files still load: their suggestions were read off the curve, so they
load with ``for_schedule="curve"``."""
READABLE_VERSIONS = (1, 2)

COMPLETED = "completed"
ENDED_EARLY = "ended before the planned steps"
MAJORITY_ENDED = "ended where most curves had ended"


def _judge(
    lrs: np.ndarray, smoothed: np.ndarray, config: FinderConfig, planned_points: int
) -> dict[str, Suggestion]:
    methods = config.methods
    if config.default_method not in methods:
        # A hand-built FinderConfig may leave it out; result.suggestion still needs it.
        methods = (config.default_method, *methods)
    return {
        method: _suggest(lrs, smoothed, config, planned_points, method, config.for_schedule)
        for method in methods
    }


def _suggest(
    lrs: np.ndarray,
    smoothed: np.ndarray,
    config: FinderConfig,
    planned_points: int,
    method: str,
    schedule: str,
) -> Suggestion:
    """``method``'s reading of the curve, as the LR to use under ``schedule``."""
    read = suggest(
        lrs,
        smoothed,
        method,
        skip_start=config.skip_start,
        skip_end=config.skip_end,
        planned_steps=planned_points,
    )
    check_choice("for_schedule", schedule, FOR_SCHEDULES)
    kind = curve_kind(config.mode, config.num_sweeps)
    return for_schedule(read, schedule, kind, lrs)


@dataclass(eq=False)
class LRFindResult:
    """A recorded LR range test and what lrfind reads off it.

    Attributes:
      lrs: float64 LR of every recorded step (the reference param group's LR).
      losses: raw loss of every recorded step, as recorded (float64).
      smoothed_losses: the EWA of ``losses`` (float64), see :mod:`lrfind_core.smoothing`.
      stop_step: index of the step that triggered the stop rule (it is the last one
        kept), or None when the sweep did not diverge.
      stop_reason: ``"diverged"``, ``"non-finite loss"``, ``"completed"``, or why the
        sweep ended early (for example the data ran out).
      suggestions: suggested LR (or None) per method.
      suggestion: the default method's suggested LR.
      suggestion_details: per method, the :class:`~lrfind_core.suggestion.Suggestion`
        with the curve index and the reason.
      config: the :class:`~lrfind_core.config.FinderConfig` used.
      planned_points: curve points the sweep planned: ``config.num_steps``, or fewer
        when a point is recorded every few steps (a validation curve).
      meta: backend, versions, device, timings (seconds) and other run facts.
      ensemble: with ``num_sweeps > 1``, every curve, their band and the spread of
        their suggestions (:class:`~lrfind_core.ensemble.SweepEnsemble`); the
        fields above then describe the median curve.
      runs: in independent mode, every short run's losses
        (:class:`~lrfind_core.ensemble.IndependentRuns`).
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    stop_step: int | None
    stop_reason: str
    suggestions: dict[str, float | None]
    suggestion: float | None
    suggestion_details: dict[str, Suggestion]
    config: FinderConfig
    planned_points: int
    meta: dict[str, Any] = field(default_factory=dict)
    ensemble: SweepEnsemble | None = None
    runs: IndependentRuns | None = None

    @classmethod
    def from_curve(
        cls,
        lrs: Any,
        losses: Any,
        *,
        config: FinderConfig | None = None,
        preset: str | None = None,
        end_reason: str | None = None,
        planned_points: int | None = None,
        meta: dict[str, Any] | None = None,
        **settings: Any,
    ) -> LRFindResult:
        """Build a full result (smoothing, stop, suggestions) from any recorded curve.

        Args:
          lrs: LR of each recorded step (> 0, increasing).
          losses: raw loss of each step. Points after the stop rule fires are dropped.
          config: the sweep's config. Without one, it is made from ``preset`` and
            ``settings`` (any :class:`FinderConfig` field), with ``start_lr``,
            ``end_lr`` and ``num_steps`` taken from the curve unless given.
          end_reason: why a curve shorter than planned ended, if the stop rule did
            not fire (default "ended before the planned steps").
          planned_points: curve points planned (default ``config.num_steps``).
          meta: run facts to keep with the result.
        """
        lrs, losses = check_curve(lrs, losses)
        if len(lrs) < 1:
            raise ValueError("a curve needs at least one recorded step")
        if config is None:
            defaults: dict[str, Any] = {"num_steps": max(len(lrs), 2)}
            if len(lrs) >= 2:
                defaults.update(start_lr=float(lrs[0]), end_lr=float(lrs[-1]))
            config = make_config(preset, **{**defaults, **settings})
        elif settings or preset is not None:
            raise TypeError("pass either config or preset/settings, not both")
        planned = config.num_steps if planned_points is None else int(planned_points)
        smoothed = ewa_smooth(losses, config.beta, config.debias)
        stop_step, code = find_stop(losses, smoothed, diverge_factor=config.diverge_factor)
        if stop_step is not None:
            keep = stop_step + 1
            lrs, losses, smoothed = lrs[:keep], losses[:keep], smoothed[:keep]
            stop_reason = STOP_REASONS[code]
        elif len(lrs) >= planned:
            stop_reason = COMPLETED
        else:
            stop_reason = end_reason or ENDED_EARLY
        details = _judge(lrs, smoothed, config, planned)
        return cls(
            lrs=lrs,
            losses=losses,
            smoothed_losses=smoothed,
            stop_step=stop_step,
            stop_reason=stop_reason,
            suggestions={name: detail.lr for name, detail in details.items()},
            suggestion=details[config.default_method].lr,
            suggestion_details=details,
            config=config,
            planned_points=planned,
            meta=dict(meta or {}),
        )

    @classmethod
    def from_sweeps(
        cls,
        lrs: Any,
        sweeps: list[Any],
        *,
        config: FinderConfig,
        end_reason: str | None = None,
        planned_points: int | None = None,
        meta: dict[str, Any] | None = None,
        runs: IndependentRuns | None = None,
    ) -> LRFindResult:
        """Aggregate K recorded curves of the same LRs into one result.

        Each curve (raw losses of the first ``len(curve)`` LRs of ``lrs``; empty
        curves are left out) is judged on its own; the result's curve is their median
        (:func:`~lrfind_core.ensemble.median_curve`), judged like a single curve,
        and ``ensemble`` keeps the curves, their band and their suggestions.
        """
        lrs = np.asarray(lrs, dtype=np.float64)
        sweeps = [curve for curve in sweeps if len(curve)]  # a curve that recorded nothing
        if not sweeps:
            raise ValueError("from_sweeps needs at least one curve with a recorded step")
        # Each curve alone is one sweep: its suggestions take the one-sweep factors.
        one_sweep = config
        if len(sweeps) > 1 and config.mode != "independent":
            one_sweep = dataclasses.replace(config, num_sweeps=1)
        singles = [
            cls.from_curve(
                lrs[: len(curve)], curve, config=one_sweep, planned_points=planned_points
            )
            for curve in sweeps
        ]
        if len(singles) == 1:
            single = singles[0]
            single.meta, single.runs = dict(meta or {}), runs
            ended_early = single.stop_step is None and single.stop_reason != COMPLETED
            if end_reason is not None and ended_early:
                single.stop_reason = end_reason
            return single
        aggregate = median_curve([single.losses for single in singles])
        reasons = [single.stop_reason for single in singles]
        common = max(reasons, key=reasons.count)  # ties: the first curve's reason
        result = cls.from_curve(
            lrs[: len(aggregate)],
            aggregate,
            config=config,
            end_reason=end_reason
            or f"{MAJORITY_ENDED} ({reasons.count(common)} of {len(reasons)}: {common})",
            planned_points=planned_points,
            meta=meta,
        )
        points = len(result.lrs)
        smoothed = pad_curves([single.smoothed_losses for single in singles], points)
        reached = np.any(~np.isnan(smoothed), axis=0)
        band = np.full((2, points), np.nan)
        if np.any(reached):
            band[:, reached] = np.nanpercentile(smoothed[:, reached], [25, 75], axis=0)
        result.ensemble = SweepEnsemble(
            sweep_losses=pad_curves([single.losses for single in singles], len(lrs)),
            sweep_smoothed=pad_curves([single.smoothed_losses for single in singles], len(lrs)),
            band_low=band[0],
            band_high=band[1],
            sweep_suggestions={
                method: [single.suggestions[method] for single in singles]
                for method in result.suggestions
            },
            stop_steps=[single.stop_step for single in singles],
        )
        result.runs = runs
        return result

    @classmethod
    def from_runs(
        cls,
        lrs: Any,
        run_losses: Any,
        *,
        config: FinderConfig,
        made: list[int] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> LRFindResult:
        """A result from independent runs: ``run_losses[k, m, i]`` is the raw loss of
        step i of the run at ``lrs[m]`` in curve k.

        ``made[k]`` is how many runs of curve k were made, in increasing LR order
        (default: all). Each run is scored by :func:`~lrfind_core.ensemble.end_losses`;
        a curve of scores ends where the stop rule fires on it, and the runs above
        are kept as NaN in ``result.runs`` (a backend that made them anyway gives the
        same result as one that stopped). Curves are aggregated as in :meth:`from_sweeps`.
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
            scores = end_losses(curve[:count], config.average_last)
            stop = score_stop(scores, config)
            keep = count if stop is None else stop + 1
            curve[keep:] = np.nan
            curves.append(scores[:keep])
            kept.append(keep)
        return cls.from_sweeps(
            lrs,
            curves,
            config=config,
            meta=meta,
            runs=IndependentRuns(run_losses=runs, average_last=config.average_last, made=kept),
        )

    def suggest(self, method: str | None = None, for_schedule: str | None = None) -> Suggestion:
        """The suggestion of ``method`` for ``for_schedule``.

        Defaults: the config's ``default_method`` and ``for_schedule``. Schedules:
        ``"one_cycle"`` (a one-cycle peak LR), ``"constant"``, ``"curve"`` (as read
        off the curve); see :mod:`lrfind_core.schedule_aware`.
        """
        method = self.config.default_method if method is None else method
        schedule = self.config.for_schedule if for_schedule is None else for_schedule
        if method in self.suggestion_details and schedule == self.config.for_schedule:
            return self.suggestion_details[method]
        return _suggest(
            self.lrs, self.smoothed_losses, self.config, self.planned_points, method, schedule
        )

    def one_cycle(
        self, total_steps: int, *, framework: str = "torch", method: str | None = None
    ) -> dict[str, Any]:
        """Keyword arguments of a one-cycle schedule peaking at this result's one-cycle LR.

        The peak is ``self.suggest(method, for_schedule="one_cycle").lr``. For
        ``framework="torch"``: ``torch.optim.lr_scheduler.OneCycleLR(optimizer,
        **kwargs)``; for ``"optax"``: ``optax.cosine_onecycle_schedule(**kwargs)``.
        ``lrfind_torch.one_cycle_scheduler`` and ``lrfind_jax.one_cycle_schedule``
        build them directly.
        """
        check_int("total_steps", total_steps, minimum=1)
        check_choice("framework", framework, ("torch", "optax"))
        detail = self.suggest(method, for_schedule="one_cycle")
        if detail.lr is None:
            raise ValueError(f"no one-cycle LR to build a schedule from: {detail.reason}")
        if framework == "torch":
            return {"max_lr": detail.lr, "total_steps": total_steps}
        return {"transition_steps": total_steps, "peak_value": detail.lr}

    def resmooth(self, beta: float, debias: bool | None = None) -> LRFindResult:
        """A new result from the same raw losses with another smoothing.

        The stop rule and suggestions are re-judged; a curve can only get shorter.
        """
        settings: dict[str, Any] = {"beta": beta}
        if debias is not None:
            settings["debias"] = debias
        config = replace(self.config, **settings)
        end_reason = None if self.stop_step is not None else self.stop_reason
        return LRFindResult.from_curve(
            self.lrs,
            self.losses,
            config=config,
            end_reason=end_reason,
            planned_points=self.planned_points,
            meta=self.meta,
        )

    def plot(
        self,
        ax: Any = None,
        path: str | os.PathLike[str] | None = None,
        methods: Sequence[str] | None = None,
        show_raw: bool = True,
    ) -> Any:
        """Plot the curve and suggestions; return the matplotlib Axes (never shows).

        See :func:`lrfind_core.plotting.plot_result`.
        """
        from lrfind_core.plotting import plot_result

        return plot_result(self, ax=ax, path=path, methods=methods, show_raw=show_raw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (non-finite floats as strings)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "lrs": encode_floats(self.lrs),
            "losses": encode_floats(self.losses),
            "smoothed_losses": encode_floats(self.smoothed_losses),
            "stop_step": self.stop_step,
            "stop_reason": self.stop_reason,
            "suggestion_details": {
                name: {
                    "lr": encode_optional_float(d.lr),
                    "index": d.index,
                    "reason": d.reason,
                    "curve_lr": encode_optional_float(d.curve_lr),
                    "for_schedule": d.for_schedule,
                }
                for name, d in self.suggestion_details.items()
            },
            "config": self.config.to_dict(),
            "planned_points": self.planned_points,
            "meta": self.meta,
            "ensemble": None if self.ensemble is None else self.ensemble.to_dict(),
            "runs": None if self.runs is None else self.runs.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRFindResult:
        """Inverse of :meth:`to_dict`."""
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"not an lrfind result (format={data.get('format')!r})")
        version = data.get("version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"unsupported lrfind result version {version!r}; this lrfind reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        config_data = dict(data["config"])
        if version == 1:  # before schedule-aware suggestions: all read off the curve
            config_data.setdefault("for_schedule", "curve")
        config = FinderConfig.from_dict(config_data)
        details = {
            name: Suggestion(
                name,
                decode_optional_float(d["lr"]),
                d["index"],
                d["reason"],
                curve_lr=decode_optional_float(d.get("curve_lr", d["lr"])),
                for_schedule=d.get("for_schedule", "curve"),
            )
            for name, d in data["suggestion_details"].items()
        }
        return cls(
            lrs=decode_floats(data["lrs"]),
            losses=decode_floats(data["losses"]),
            smoothed_losses=decode_floats(data["smoothed_losses"]),
            stop_step=data["stop_step"],
            stop_reason=data["stop_reason"],
            suggestions={name: d.lr for name, d in details.items()},
            suggestion=details[config.default_method].lr
            if config.default_method in details
            else None,
            suggestion_details=details,
            config=config,
            planned_points=data["planned_points"],
            meta=data["meta"],
            ensemble=None
            if data.get("ensemble") is None
            else SweepEnsemble.from_dict(data["ensemble"]),
            runs=None if data.get("runs") is None else IndependentRuns.from_dict(data["runs"]),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the result as JSON to ``path``."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=1, allow_nan=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LRFindResult:
        """Read a result written by :meth:`save`."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

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
                "suggestion",
                "suggestion_details",
                "config",
                "planned_points",
                "meta",
                "ensemble",
                "runs",
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = self.suggestion
        lr = "None" if shown is None else f"{shown:.3g}"
        return (
            f"LRFindResult(steps={len(self.lrs)}, stop_reason={self.stop_reason!r}, "
            f"suggestion={lr} ({self.config.default_method}, for {self.config.for_schedule}))"
        )
