"""What a backend runs: a plan of runs from the same start, and the record it returns.

Every mode of ``lr_find`` is R *runs*, each from the same initial state (model,
optimizer, model state and RNG as the user left them):

* a classic sweep is one run of ``num_steps`` steps at the sweep's LRs;
* K repeated sweeps are K such runs, run k on the next block of batches with a
  seed of its own (curve k);
* independent mode is K x M runs of ``steps_per_lr`` steps, run ``k * M + m`` at
  the constant LR ``grid[m]``, every run of curve k on the same block.

A backend is handed a :class:`RunPlan`, runs it however suits its framework (one
after the other with a restore in between, or all at once under ``vmap``), and
returns a :class:`RunRecord` of raw losses. The core plans and judges; the
backend only runs steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrfind_core.aggregation import end_losses, score_stop
from lrfind_core.monitor import MonitorSettings
from lrfind_core.settings import Settings

SWEEP_VAL_BATCHES = 8
"""Validation batches averaged for a sweep's point, unless ``val_batches`` is set."""


@dataclass(frozen=True)
class RunPlan:
    """R runs to make, each from the same initial state.

    Attributes:
      lrs: (R, n) float64: the reference param group's LR at every step of every
        run (other groups keep their ratio to it).
      curves: (R,) int: the curve of each run. It picks the run's data, micro-batches
        ``curves[r] * block_batches`` onwards, and its randomness: curve 0 uses the
        user's RNG state as it is, curve c > 0 a seed (key) of its own.
      block_batches: micro-batches between the starts of two curves' data.
      accumulation_steps: micro-batches per optimizer step.
      stop: the stop rule applied to each run's points as they are recorded; a
        ``diverge_factor`` of inf stops a run on a non-finite loss only.
      val_every: None when a run's points are its training losses, one per step;
        else a point is the validation loss after every ``val_every``-th step.
      val_batches: validation batches averaged for a point (the first of the data).
      skip_after_stop: runs of a curve go up in LR; once the scores of the runs
        made so far fire the stop rule (:func:`curve_finished`), a backend that
        makes runs one after another may skip the rest of that curve.
      average_last: steps whose mean loss scores a run, for ``skip_after_stop``.
      target: None when ``lrs`` are the LRs to apply; else the schedule each run
        trains under, built with the framework's own implementation over the run's
        ``num_steps``: ``"one_cycle"`` (torch's ``OneCycleLR``, optax's
        ``cosine_onecycle_schedule``, each with its defaults) peaking at the run's
        LR in ``lrs[r, 0]``, or ``"constant"`` (``lrs`` as they are).
      data_start: micro-batch position where curve 0's data begins.
      val_from_train: the first ``val_from_train`` micro-batches of the training data
        are held out (never trained on: the runs read from ``data_start`` on, after
        them); with ``val_every`` they are the validation batches.
      keep_data: later plans of the same call read the same batches again, so a
        backend that draws batches from an iterator keeps them.
    """

    lrs: np.ndarray
    curves: np.ndarray
    block_batches: int
    accumulation_steps: int
    stop: MonitorSettings
    val_every: int | None = None
    val_batches: int = 0
    skip_after_stop: bool = False
    average_last: int = 1
    target: str | None = None
    data_start: int = 0
    val_from_train: int = 0
    keep_data: bool = False

    @property
    def num_runs(self) -> int:
        """R."""
        return int(self.lrs.shape[0])

    @property
    def num_steps(self) -> int:
        """n, the optimizer steps each run plans."""
        return int(self.lrs.shape[1])

    @property
    def num_points(self) -> int:
        """Curve points each run plans: n, or one per ``val_every`` steps."""
        return self.num_steps if self.val_every is None else self.num_steps // self.val_every

    @property
    def num_curves(self) -> int:
        """How many curves (data blocks and seeds) the runs use."""
        return int(self.curves.max()) + 1

    @property
    def replays_data(self) -> bool:
        """Whether a backend that draws batches from an iterator must keep them:
        several runs read the same block, or later plans read them again."""
        return self.keep_data or len(np.unique(self.curves)) < self.num_runs

    def block_start(self, run: int) -> int:
        """The micro-batch position where run ``run``'s data begins."""
        return self.data_start + int(self.curves[run]) * self.block_batches

    @property
    def batches_read(self) -> int:
        """Micro-batch positions the plan reads: held-out validation and every block."""
        return self.data_start + self.num_curves * self.block_batches

    def is_point(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) adds a point to its run's curve."""
        return self.val_every is None or (step + 1) % self.val_every == 0

    def point_lrs(self, run: int) -> np.ndarray:
        """The LR of each planned point of run ``run``."""
        if self.val_every is None:
            return self.lrs[run]
        return self.lrs[run, self.val_every - 1 :: self.val_every][: self.num_points]


def monitor_of(settings: Settings, diverge_factor: float | None = None) -> MonitorSettings:
    """The online stop rule of ``settings`` (optionally with another factor)."""
    factor = settings.diverge_factor if diverge_factor is None else diverge_factor
    return MonitorSettings(settings.beta, settings.debias, factor)


def plan_sweeps(settings: Settings, validation: bool = False) -> RunPlan:
    """``settings.num_sweeps`` classic sweeps; sweep k reads the k-th block of
    ``num_steps * accumulation_steps`` micro-batches. With ``validation`` the
    curve's points are validation losses every ``settings.val_every`` steps."""
    schedule = settings.learning_rates()
    sweeps = settings.num_sweeps
    return RunPlan(
        lrs=np.broadcast_to(schedule, (sweeps, len(schedule))).copy(),
        curves=np.arange(sweeps),
        block_batches=settings.num_steps * settings.accumulation_steps,
        accumulation_steps=settings.accumulation_steps,
        stop=monitor_of(settings),
        val_every=settings.val_every if validation else None,
        val_batches=(settings.val_batches or SWEEP_VAL_BATCHES) if validation else 0,
    )


def plan_independent(settings: Settings) -> RunPlan:
    """K x M independent runs: run ``k * M + m`` trains ``steps_per_lr`` steps at
    ``grid[m]`` on curve k's block. Only a non-finite loss ends a run early; the
    ratio rule judges the runs' scores (:func:`~lrfind_core.judging.judge_runs`)."""
    grid = settings.independent_grid()
    curves = np.repeat(np.arange(settings.num_sweeps), len(grid))
    steps = settings.steps_per_lr
    return RunPlan(
        lrs=np.repeat(np.tile(grid, settings.num_sweeps)[:, None], steps, axis=1),
        curves=curves,
        block_batches=steps * settings.accumulation_steps,
        accumulation_steps=settings.accumulation_steps,
        stop=monitor_of(settings, math.inf),
        skip_after_stop=True,
        average_last=settings.average_last,
    )


def curve_finished(plan: RunPlan, run_losses: np.ndarray) -> bool:
    """Whether the runs of one curve made so far (their losses, (m, n), in LR order)
    fire the stop rule on their scores, so that the curve's later runs need not run."""
    scores = end_losses(run_losses, plan.average_last)
    return score_stop(scores, plan.stop.diverge_factor) is not None


@dataclass
class RunRecord:
    """What a backend recorded of a :class:`RunPlan`'s runs.

    Attributes:
      losses: (R, n) raw training loss of every step (the micro-batch mean), NaN
        where a step was not run.
      points: (R, P) the curve points: ``losses`` itself, or validation losses.
      made: (R,) points kept per run: a backend stops a run at the point that fires
        the plan's stop rule (kept), or where it could not go on.
      steps: (R,) optimizer steps each run trained.
      end_reasons: per run, why it ended before its planned steps other than by
        the stop rule (the data ran out; a GradScaler skipped every update), or None.
      skipped: updates a GradScaler skipped: ``{"run", "step", "lr", "loss"}``.
    """

    losses: np.ndarray
    points: np.ndarray
    made: np.ndarray
    steps: np.ndarray
    end_reasons: list[str | None]
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def empty(cls, plan: RunPlan) -> RunRecord:
        """A record of nothing run yet, shaped for ``plan``."""
        losses = np.full((plan.num_runs, plan.num_steps), np.nan)
        points = losses if plan.val_every is None else np.full(
            (plan.num_runs, plan.num_points), np.nan
        )
        return cls(
            losses=losses,
            points=points,
            made=np.zeros(plan.num_runs, np.int64),
            steps=np.zeros(plan.num_runs, np.int64),
            end_reasons=[None] * plan.num_runs,
        )

    def curve(self, run: int) -> np.ndarray:
        """Run ``run``'s recorded points, float64."""
        return np.asarray(self.points[run, : self.made[run]], dtype=np.float64)


__all__ = [
    "RunPlan",
    "RunRecord",
    "curve_finished",
    "monitor_of",
    "plan_independent",
    "plan_sweeps",
]
