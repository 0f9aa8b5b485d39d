"""The records a result keeps beside its curve: every sweep of K, every independent run.

* **Repeated sweeps** (``num_sweeps=K``): K classic sweeps, each from the same
  initial state with another data order and seed. :class:`SweepEnsemble` keeps
  every sweep's raw and smoothed curve, the interquartile band of the smoothed
  curves, and each sweep's suggestions, so their spread can be read in decades.
* **Independent runs** (``mode="independent"``): for each LR of a grid, a short
  run of its own from the same initial state on the same batches, scored by the
  mean loss of its last steps. :class:`IndependentRuns` keeps every run's losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lrfind_core.aggregation import spread_in_decades
from lrfind_core.serialization import decode_floats, encode_floats


@dataclass(eq=False)
class SweepEnsemble:
    """K curves of one range test and their spread.

    Attributes:
      sweep_losses: (K, N) raw losses; NaN after the end of each sweep's curve.
      sweep_smoothed: (K, N) smoothed losses, padded the same way.
      band_low, band_high: (N,) 25th and 75th percentiles of the smoothed curves
        over the sweeps that reached each point (NaN where none did).
      sweep_suggestions: per method, each sweep's suggested LR (None if none).
      stop_steps: each sweep's stop step (None if it did not stop).
    """

    sweep_losses: np.ndarray
    sweep_smoothed: np.ndarray
    band_low: np.ndarray
    band_high: np.ndarray
    sweep_suggestions: dict[str, list[float | None]]
    stop_steps: list[int | None]

    @property
    def num_sweeps(self) -> int:
        """K, the number of curves."""
        return int(self.sweep_losses.shape[0])

    def spread_decades(self, method: str) -> float | None:
        """How far apart the sweeps' suggestions of ``method`` are, in decades of LR."""
        return spread_in_decades(self.sweep_suggestions[method])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data."""
        return {
            "sweep_losses": [encode_floats(row) for row in self.sweep_losses],
            "sweep_smoothed": [encode_floats(row) for row in self.sweep_smoothed],
            "band_low": encode_floats(self.band_low),
            "band_high": encode_floats(self.band_high),
            "sweep_suggestions": self.sweep_suggestions,
            "stop_steps": self.stop_steps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepEnsemble:
        """Inverse of :meth:`to_dict`."""
        return cls(
            sweep_losses=np.array([decode_floats(row) for row in data["sweep_losses"]]),
            sweep_smoothed=np.array([decode_floats(row) for row in data["sweep_smoothed"]]),
            band_low=decode_floats(data["band_low"]),
            band_high=decode_floats(data["band_high"]),
            sweep_suggestions={k: list(v) for k, v in data["sweep_suggestions"].items()},
            stop_steps=list(data["stop_steps"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SweepEnsemble):
            return NotImplemented
        arrays = ("sweep_losses", "sweep_smoothed", "band_low", "band_high")
        return all(
            np.array_equal(getattr(self, name), getattr(other, name), equal_nan=True)
            for name in arrays
        ) and (self.sweep_suggestions, self.stop_steps) == (
            other.sweep_suggestions,
            other.stop_steps,
        )

    __hash__ = None  # type: ignore[assignment]


def _runs_recorded(curve: np.ndarray) -> int:
    """How many of a curve's (M, n) runs come before its all-NaN tail."""
    recorded = np.flatnonzero(~np.all(np.isnan(curve), axis=1))
    return int(recorded[-1]) + 1 if recorded.size else 0


@dataclass(eq=False)
class IndependentRuns:
    """Every short run of an independent-mode range test.

    Attributes:
      run_losses: (K, M, n) raw losses: curve k (data order), grid LR m, step i.
        Runs above a curve's stop are NaN.
      average_last: how many final steps score a run.
      made: per curve, the runs kept (up to and including its stop).
    """

    run_losses: np.ndarray
    average_last: int
    made: list[int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data."""
        return {
            "run_losses": [[encode_floats(run) for run in curve] for curve in self.run_losses],
            "average_last": self.average_last,
            "made": self.made,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndependentRuns:
        """Inverse of :meth:`to_dict`."""
        runs = np.array([[decode_floats(run) for run in curve] for curve in data["run_losses"]])
        made = data.get("made")
        if made is None:  # saved before ``made`` was kept: the runs up to the last recorded
            made = [_runs_recorded(curve) for curve in runs]
        return cls(run_losses=runs, average_last=int(data["average_last"]), made=list(made))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IndependentRuns):
            return NotImplemented
        return (self.average_last, self.made) == (other.average_last, other.made) and (
            np.array_equal(self.run_losses, other.run_losses, equal_nan=True)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(eq=False)
class SearchRecord:
    """What a search measured and chose (``mode="search"``).

    Attributes:
      schedule: the schedule every candidate trained under (``"one_cycle"`` or
        ``"constant"``), compressed to the candidate's horizon.
      training_steps: the planned training's length, in optimizer steps.
      budget_steps: the most optimizer steps the search could train.
      lrs, horizons, rungs, scores: per candidate run, its LR (a one-cycle peak, or
        the constant LR), its length in optimizer steps, its rung (0 first) and its
        validation loss at the end (+inf when it diverged).
      lr: the chosen LR, for ``schedule`` over ``training_steps``.
      near_best: the LRs ``(low, high)`` of the final rung whose score is within
        ``tolerance`` of its best, widened to the chosen LR.
      tolerance: the relative score gap that counts as "as good" (0.02: 2%).
      reason: how the LR was chosen.
      sweep_steps: optimizer steps of the bracketing sweep.
      held_out_batches: training micro-batches held out as validation data (0
        when ``val_data`` was given).
    """

    schedule: str
    training_steps: int
    budget_steps: int
    lrs: np.ndarray
    horizons: np.ndarray
    rungs: np.ndarray
    scores: np.ndarray
    lr: float | None
    near_best: tuple[float, float] | None
    tolerance: float
    reason: str
    sweep_steps: int
    held_out_batches: int = 0

    @property
    def steps_trained(self) -> int:
        """Optimizer steps the candidates trained (the sweep not included)."""
        return int(np.sum(self.horizons))

    def rung(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """The LRs and scores of rung ``number``, in LR order."""
        chosen = self.rungs == number
        order = np.argsort(self.lrs[chosen])
        return self.lrs[chosen][order], self.scores[chosen][order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data."""
        return {
            "schedule": self.schedule,
            "training_steps": self.training_steps,
            "budget_steps": self.budget_steps,
            "lrs": encode_floats(self.lrs),
            "horizons": [int(h) for h in self.horizons],
            "rungs": [int(r) for r in self.rungs],
            "scores": encode_floats(self.scores),
            "lr": None if self.lr is None else encode_floats([self.lr])[0],
            "near_best": None if self.near_best is None else encode_floats(self.near_best),
            "tolerance": self.tolerance,
            "reason": self.reason,
            "sweep_steps": self.sweep_steps,
            "held_out_batches": self.held_out_batches,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchRecord:
        """Inverse of :meth:`to_dict`."""
        near = data["near_best"]
        return cls(
            schedule=data["schedule"],
            training_steps=int(data["training_steps"]),
            budget_steps=int(data["budget_steps"]),
            lrs=decode_floats(data["lrs"]),
            horizons=np.asarray(data["horizons"], dtype=np.int64),
            rungs=np.asarray(data["rungs"], dtype=np.int64),
            scores=decode_floats(data["scores"]),
            lr=None if data["lr"] is None else float(decode_floats([data["lr"]])[0]),
            near_best=None if near is None else tuple(decode_floats(near).tolist()),
            tolerance=float(data["tolerance"]),
            reason=data["reason"],
            sweep_steps=int(data["sweep_steps"]),
            held_out_batches=int(data.get("held_out_batches", 0)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchRecord):
            return NotImplemented
        arrays = ("lrs", "horizons", "rungs", "scores")
        plain = ("schedule", "training_steps", "budget_steps", "lr", "near_best", "tolerance",
                 "reason", "sweep_steps", "held_out_batches")
        return all(
            np.array_equal(getattr(self, name), getattr(other, name), equal_nan=True)
            for name in arrays
        ) and all(getattr(self, name) == getattr(other, name) for name in plain)

    __hash__ = None  # type: ignore[assignment]
