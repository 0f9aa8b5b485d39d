"""A backend made of formulas, to test the search's planning and judging without a model.

:class:`FormulaBackend` answers every :class:`~lrfind_core.plan.RunPlan` the search
makes: a classic sweep gets a training-loss curve that falls, bottoms out at
``sweep_minimum`` and blows up; a candidate run of ``h`` steps at LR ``lr`` gets the
validation loss ``1 + curvature * (log10(lr) - optimum(h))**2`` (plus optional
deterministic noise), with ``optimum(h) = best + drift * log10(h / training)`` (by
default the drift the search's horizon correction assumes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from lrfind_core.horizon import HORIZON_EXPONENT
from lrfind_core.plan import RunPlan, RunRecord


class FormulaBackend:
    """A backend whose losses are formulas (see the module)."""

    name = "formula"
    is_main_process = True

    def __init__(
        self,
        *,
        best: float = -2.0,
        training: int = 300,
        drift: float = -HORIZON_EXPONENT,
        curvature: float = 0.2,
        sweep_minimum: float = -1.0,
        noise: float = 0.0,
        diverge_above: float = 0.5,
    ) -> None:
        self.best, self.training, self.drift = best, training, drift
        self.curvature, self.sweep_minimum, self.noise = curvature, sweep_minimum, noise
        self.diverge_above = diverge_above
        self.plans: list[RunPlan] = []
        self.sessions = 0

    def versions(self) -> dict[str, str]:
        return {}

    def devices(self) -> list[str]:
        return ["formula"]

    @contextlib.contextmanager
    def session(self, notices: list[str]) -> Iterator[None]:
        self.sessions += 1
        yield

    def facts(self) -> dict[str, Any]:
        return {}

    def common_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        return meta

    def num_batches(self) -> int | None:
        return 50

    def optimum(self, horizon: int) -> float:
        """log10 of the best LR for runs of ``horizon`` steps."""
        return self.best + self.drift * np.log10(horizon / self.training)

    def score(self, lr: float, horizon: int) -> float:
        """The validation loss of a candidate run."""
        x = np.log10(lr)
        if x > self.diverge_above:
            return float("nan")
        wobble = self.noise * np.sin(37.0 * x + horizon)
        return float(1.0 + self.curvature * (x - self.optimum(horizon)) ** 2 + wobble)

    def sweep_loss(self, lrs: np.ndarray) -> np.ndarray:
        """A classic sweep's training loss: falls, bottoms out at ``sweep_minimum``, blows up."""
        x = np.log10(lrs)
        fall = 2.0 / (1.0 + np.exp(2.5 * (x - self.sweep_minimum + 1.5)))
        rise = np.where(x > self.sweep_minimum, 30.0 * (x - self.sweep_minimum) ** 2, 0.0)
        return 1.0 + fall + rise

    def run(self, plan: RunPlan, notices: list[str]) -> RunRecord:
        self.plans.append(plan)
        record = RunRecord.empty(plan)
        for run in range(plan.num_runs):
            if plan.val_every is None:
                record.losses[run] = self.sweep_loss(plan.lrs[run])
                record.made[run] = plan.num_steps
            else:
                record.losses[run] = 1.0
                record.points[run, 0] = self.score(plan.lrs[run, 0], plan.num_steps)
                record.made[run] = 1
            record.steps[run] = plan.num_steps
        return record
