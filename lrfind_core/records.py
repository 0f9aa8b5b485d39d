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
from lrfind_core.serialization import (
    LR,
    MAX_VALUES,
    FieldError,
    decode_float_rows,
    decode_floats,
    decode_ints,
    encode_floats,
    encode_optional_float,
    expected,
    field_path,
    read_choice,
    read_int,
    read_number,
    read_object,
    read_optional_int,
    read_optional_lr,
    read_str,
)


@dataclass(eq=False)
class SweepEnsemble:
    """K curves of one range test and their spread.

    Attributes:
      sweep_losses: (K, N) raw losses (in independent mode, run scores); NaN after
        the end of each sweep's curve.
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

    def kept_curves(self) -> list[np.ndarray]:
        """Each sweep's raw losses as judged: up to its stop step, else every point
        before the padding."""
        curves = []
        for row, stop in zip(self.sweep_losses, self.stop_steps, strict=True):
            length = stop + 1 if stop is not None else int(np.sum(~np.isnan(row)))
            curves.append(row[:length])
        return curves

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
            "sweep_suggestions": {
                method: [encode_optional_float(lr) for lr in lrs]
                for method, lrs in self.sweep_suggestions.items()
            },
            "stop_steps": [None if step is None else int(step) for step in self.stop_steps],
        }

    @classmethod
    def from_dict(cls, data: Any, field: str = "ensemble") -> SweepEnsemble:
        """Inverse of :meth:`to_dict`, checked: K >= 1 sweeps of L points each, a band
        of at most L points, K suggestions per method (None or an LR), K stop steps
        (None or a point of the L). A :class:`~lrfind_core.serialization.FieldError`
        names the first field (under ``field``) that is not so."""
        fields = read_object(data, field, ("sweep_losses", "sweep_smoothed", "band_low",
                                           "band_high", "sweep_suggestions", "stop_steps"))
        losses = decode_float_rows(fields["sweep_losses"], f"{field}.sweep_losses", min_rows=1)
        sweeps, points = losses.shape
        smoothed = decode_float_rows(fields["sweep_smoothed"], f"{field}.sweep_smoothed",
                                     rows=sweeps)
        if smoothed.shape != losses.shape:
            raise FieldError(f"{field}.sweep_smoothed",
                             f"expected {sweeps} lists of {points} values (as sweep_losses), "
                             f"got {smoothed.shape[0]} of {smoothed.shape[1]}")
        band_low = decode_floats(fields["band_low"], f"{field}.band_low")
        if len(band_low) > points:
            raise FieldError(f"{field}.band_low",
                             f"expected at most {points} values (the sweeps' length), "
                             f"got {len(band_low)}")
        band_high = decode_floats(fields["band_high"], f"{field}.band_high", length=len(band_low),
                                  length_of="band_low")
        suggestions = fields["sweep_suggestions"]
        if not isinstance(suggestions, dict):
            raise expected(f"{field}.sweep_suggestions",
                           "an object: per method, each sweep's LR", suggestions)
        sweep_suggestions: dict[str, list[float | None]] = {}
        for method, lrs in suggestions.items():
            if not isinstance(method, str):
                raise FieldError(f"{field}.sweep_suggestions",
                                 f"expected method names as keys, got {method!r}")
            where = field_path(f"{field}.sweep_suggestions", method)
            if not isinstance(lrs, list) or len(lrs) != sweeps:
                raise expected(where, f"a list of {sweeps} LRs (one per sweep)", lrs)
            sweep_suggestions[method] = [
                read_optional_lr(lr, field_path(where, number)) for number, lr in enumerate(lrs)
            ]
        steps = fields["stop_steps"]
        if not isinstance(steps, list) or len(steps) != sweeps:
            raise expected(f"{field}.stop_steps", f"a list of {sweeps} stop steps", steps)
        stop_steps = [
            read_optional_int(step, f"{field}.stop_steps[{number}]", minimum=0,
                              maximum=points - 1)
            for number, step in enumerate(steps)
        ]
        return cls(sweep_losses=losses, sweep_smoothed=smoothed, band_low=band_low,
                   band_high=band_high, sweep_suggestions=sweep_suggestions,
                   stop_steps=stop_steps)

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
            "average_last": int(self.average_last),
            "made": [int(count) for count in self.made],
        }

    @classmethod
    def from_dict(cls, data: Any, field: str = "runs") -> IndependentRuns:
        """Inverse of :meth:`to_dict`, checked: K >= 1 curves of M >= 1 runs of n >= 1
        steps each, ``average_last >= 1`` and, per curve, ``0 <= made <= M``. A
        :class:`~lrfind_core.serialization.FieldError` names the first field (under
        ``field``) that is not so."""
        fields = read_object(data, field, ("run_losses", "average_last"), ("made",))
        curves = fields["run_losses"]
        where = f"{field}.run_losses"
        if not isinstance(curves, list) or not curves:
            raise expected(where, "a non-empty list of curves (lists of runs)", curves)
        decoded: list[np.ndarray] = []
        for number, curve in enumerate(curves):
            shape = decoded[0].shape if decoded else None
            if shape is not None and len(curves) * shape[0] * shape[1] > MAX_VALUES:
                raise FieldError(where, f"expected at most {MAX_VALUES} values in all, got "
                                 f"{len(curves)} x {shape[0]} x {shape[1]}: too large to read")
            runs = decode_float_rows(curve, field_path(where, number), min_rows=1,
                                     rows=None if shape is None else shape[0])
            if runs.shape[1] < 1 or (shape is not None and runs.shape != shape):
                raise FieldError(field_path(where, number),
                                 f"expected {shape[0] if shape else 'M >= 1'} runs of "
                                 f"{shape[1] if shape else 'n >= 1'} steps each, got "
                                 f"{runs.shape[0]} of {runs.shape[1]}")
            decoded.append(runs)
        losses = np.array(decoded, dtype=np.float64)
        average_last = read_int(fields["average_last"], f"{field}.average_last", minimum=1)
        made = fields.get("made")
        if made is None:  # saved before ``made`` was kept: the runs up to the last recorded
            made = [_runs_recorded(curve) for curve in losses]
        elif not isinstance(made, list) or len(made) != len(losses):
            raise expected(f"{field}.made", f"a list of {len(losses)} run counts (one per curve)",
                           made)
        else:
            made = [read_int(count, f"{field}.made[{number}]", minimum=0,
                             maximum=losses.shape[1]) for number, count in enumerate(made)]
        return cls(run_losses=losses, average_last=average_last, made=made)

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
      lr: the chosen LR, for ``schedule`` over ``training_steps``: ``measured_lr``
        times ``(h / training_steps) ** horizon_exponent``, ``h`` the last rung's
        horizon (:mod:`lrfind_core.horizon`; times 1 when ``h >= training_steps``).
      near_best: the LRs ``(low, high)`` of the final rung whose score is within
        ``tolerance`` of its best, widened to the measured LR, scaled like ``lr``.
      tolerance: the relative score gap that counts as "as good" (0.02: 2%).
      reason: how the LR was chosen.
      sweep_steps: optimizer steps planned for the bracketing sweep (it stops sooner
        when its loss blows up; ``meta["steps_trained"]`` counts every step run).
      held_out_batches: training micro-batches held out as validation data (0
        when ``val_data`` was given).
      measured_lr: the best LR of the last rung's runs, as measured (the vertex);
        None when every candidate diverged. Equal to ``lr`` in files written before
        the horizon correction (format 3 without ``measured_lr``).
      horizon_exponent: the exponent of the horizon correction (0: none, and in
        those older files).
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
    measured_lr: float | None = None
    horizon_exponent: float = 0.0

    @property
    def measured_horizon(self) -> int:
        """The horizon of the last rung's runs, in optimizer steps."""
        return int(self.horizons[self.rungs == self.rungs.max()][0])

    @property
    def steps_trained(self) -> int:
        """Optimizer steps planned for the candidates, their horizons summed (the sweep
        not included; ``meta["steps_trained"]`` counts the steps actually run)."""
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
            "training_steps": int(self.training_steps),
            "budget_steps": int(self.budget_steps),
            "lrs": encode_floats(self.lrs),
            "horizons": [int(h) for h in self.horizons],
            "rungs": [int(r) for r in self.rungs],
            "scores": encode_floats(self.scores),
            "lr": encode_optional_float(self.lr),
            "near_best": None if self.near_best is None else encode_floats(self.near_best),
            "tolerance": float(self.tolerance),
            "reason": self.reason,
            "sweep_steps": int(self.sweep_steps),
            "held_out_batches": int(self.held_out_batches),
            "measured_lr": encode_optional_float(self.measured_lr),
            "horizon_exponent": float(self.horizon_exponent),
        }

    @classmethod
    def from_dict(cls, data: Any, field: str = "search") -> SearchRecord:
        """Inverse of :meth:`to_dict`, checked: one LR (finite, > 0), horizon (>= 1),
        rung (>= 0) and score per candidate; the chosen LR None or an LR; near_best
        None or two LRs, low <= high; steps >= 1 (>= 0 for the sweep and the held-out
        batches); tolerance finite >= 0. A
        :class:`~lrfind_core.serialization.FieldError` names the first field (under
        ``field``) that is not so."""
        required = ("schedule", "training_steps", "budget_steps", "lrs", "horizons", "rungs",
                    "scores", "lr", "near_best", "tolerance", "reason", "sweep_steps")
        fields = read_object(data, field, required,
                             ("held_out_batches", "measured_lr", "horizon_exponent"))
        lrs = decode_floats(fields["lrs"], f"{field}.lrs", finite=True, positive=True)
        candidates = len(lrs)
        if candidates == 0:  # every search runs candidates
            raise expected(f"{field}.lrs", f"at least one candidate LR ({LR})", fields["lrs"])
        near = fields["near_best"]
        if near is not None:
            near_field = f"{field}.near_best"
            if not isinstance(near, list) or len(near) != 2:
                raise expected(near_field, f"null or a list of two LRs [low, high] ({LR})", near)
            low, high = decode_floats(near, near_field, finite=True, positive=True).tolist()
            if low > high:
                raise expected(f"{near_field}[1]", f"an LR >= the low end ({low!r})", near[1])
            near = (low, high)
        return cls(
            schedule=read_choice(fields["schedule"], f"{field}.schedule",
                                 ("one_cycle", "constant")),
            training_steps=read_int(fields["training_steps"], f"{field}.training_steps",
                                    minimum=1),
            budget_steps=read_int(fields["budget_steps"], f"{field}.budget_steps", minimum=1),
            lrs=lrs,
            horizons=decode_ints(fields["horizons"], f"{field}.horizons", length=candidates,
                                 minimum=1),
            rungs=decode_ints(fields["rungs"], f"{field}.rungs", length=candidates, minimum=0),
            scores=decode_floats(fields["scores"], f"{field}.scores", length=candidates,
                                 length_of="lrs"),
            lr=read_optional_lr(fields["lr"], f"{field}.lr"),
            near_best=near,
            tolerance=read_number(fields["tolerance"], f"{field}.tolerance", minimum=0.0),
            reason=read_str(fields["reason"], f"{field}.reason"),
            sweep_steps=read_int(fields["sweep_steps"], f"{field}.sweep_steps", minimum=0),
            held_out_batches=read_int(fields.get("held_out_batches", 0),
                                      f"{field}.held_out_batches", minimum=0),
            measured_lr=read_optional_lr(fields.get("measured_lr", fields["lr"]),
                                         f"{field}.measured_lr"),
            horizon_exponent=read_number(fields.get("horizon_exponent", 0.0),
                                         f"{field}.horizon_exponent", minimum=0.0),
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
