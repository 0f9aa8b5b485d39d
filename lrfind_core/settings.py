"""Settings of a range test, and the named presets that bundle them.

A :class:`Settings` holds everything, apart from the framework objects, that
decides what a call of ``lr_find`` runs and how its curve is judged. It is plain,
frozen data, the same in both backends and in
:meth:`~lrfind_core.result.LRFindResult.from_curve`, and it is saved with every
result. The backends' common options (``mode``, ``for_schedule``, ``start_lr``,
``end_lr``, ``num_steps``, ``training_steps``, ``budget_steps``) are keywords that
override the fields of the same name; every other field is reached through
``settings=Settings(...)`` or a preset name.

Presets (:data:`PRESETS`):

* ``"lrfind"`` (default): 1e-7 to 10 over 100 steps, exponential with both
  endpoints, EWA beta=0.98 debiased, stop at 4x best; the suggestion is the
  ``minimum`` rule scaled for a one-cycle schedule (see
  :mod:`lrfind_core.schedule_aware`), the best rule on lrfind's benchmark.
* ``"fastai"``: as fastai's ``lr_find``: the exponential sweep stops one step short
  of ``end_lr`` (``lr_i = s (e/s)^(i/N)``), beta=0.98 debiased, stop at 4x, valley
  as read off the curve, and the curve smoothed and read in fastai 2.8's own float32
  arithmetic (``arithmetic="fastai"``), so that a curve gives fastai's smoothed
  losses and suggestions exactly.
* ``"torch-lr-finder"``: as torch-lr-finder 0.2.2's ``range_test``: exponential
  with both endpoints, smoothing ``smooth_f=0.05`` (beta=0.95, first value raw,
  no debias), stop at 5x, suggestion ``steep`` with its fixed trimming
  (skip the first 10 and the last 5 points). torch-lr-finder starts at the
  optimizer's LR by default; this preset starts at 1e-7 unless told otherwise.

Where a tool has a flaw, a preset keeps lrfind's safe behaviour: every preset
stops on a NaN or infinite loss (fastai and torch-lr-finder never do, because
``nan > k * best`` is false), and the ratio rule is extended to losses <= 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrfind_core.arguments import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_positive_float,
)
from lrfind_core.schedules import SCHEDULES, make_schedule
from lrfind_core.smoothing import ARITHMETICS

DEFAULT_METHODS = ("valley", "steep", "minimum", "slide")
MODES = ("sweep", "independent", "search")
FOR_SCHEDULES = ("one_cycle", "constant", "curve")
"""What a suggested LR is for: a one-cycle peak, a constant LR, or the LR as read
off the curve (``"curve"``, fastai's and torch-lr-finder's meaning)."""


@dataclass(frozen=True)
class Settings:
    """Everything that fixes what a range test runs and how its curve is judged.

    The sweep:
      start_lr, end_lr: first and last LR of the sweep (optimizer units).
      num_steps: optimizer steps of a classic sweep (one LR each).
      schedule: ``"exponential"`` or ``"linear"``.
      include_end: whether the last step uses exactly ``end_lr``.

    Smoothing and the stop rule:
      beta: EWA weight of the past, in [0, 1); 0 disables smoothing.
      debias: bias-corrected EWA (True) or first-value-initialised EWA (False).
      diverge_factor: the stop rule's k (> 1), see :mod:`lrfind_core.stopping`.

    Suggestions:
      methods: suggestion methods computed for the result (``method`` is always added).
      method: the method behind ``result.suggestion``. Names are checked against
        the registry (:func:`lrfind_core.suggestion.available_methods`) when a
        curve is judged, so settings naming a method registered later still load.
      for_schedule: what the suggestion is for, one of :data:`FOR_SCHEDULES`.
      skip_start: points trimmed at the start before suggesting (None: planned // 10).
      skip_end: points trimmed at the end before suggesting.
      arithmetic: how a recorded curve is smoothed and read, one of
        :data:`~lrfind_core.smoothing.ARITHMETICS`: ``"lrfind"`` (float64) or
        ``"fastai"`` (fastai 2.8's float32 EWA and its float32 suggestion functions,
        ``steep`` on forward differences; see :mod:`lrfind_core.smoothing` and
        :mod:`lrfind_core.suggestion_methods`). Methods registered by name are
        unaffected. The stop rule judges the smoothed curve either way (while a
        backend sweeps, its online check is float64).

    Modes:
      mode: ``"sweep"`` (the classic range test: the LR rises every step),
        ``"independent"`` (one short run per LR of a grid, each from the same
        start on the same batches) or ``"search"`` (candidate runs under the target
        schedule, judged on validation loss, within ``budget_steps``; see
        :mod:`lrfind_core.search`).
      num_sweeps: curves to record, each from the same start on the next batches
        with its own seed; K > 1 adds a band and the spread of the suggestions,
        and the suggestion comes from the median curve.
      independent_lrs: LRs in the grid of independent mode (from ``start_lr`` to
        ``end_lr`` by ``schedule``).
      steps_per_lr: optimizer steps of each independent run.
      average_last: final steps whose mean loss scores an independent run.
        Independent scores are judged unsmoothed and untrimmed (each point is a
        run of its own); ``beta`` and the trimming apply to sweeps only.

    Training details:
      accumulation_steps: micro-batches per optimizer step (the LR advances once
        per optimizer step; the recorded loss is the micro-batch mean).
      val_every: with validation data, a curve point every ``val_every`` steps.
      val_batches: validation batches averaged for each point (None: 8 for a
        sweep's points, 32 for a search candidate's score).

    The planned training (search mode):
      training_steps: optimizer steps of the training the LR is for.
      budget_steps: the most optimizer steps the search may train, all runs together.

      preset: the preset these settings started from (informational).
    """

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 100
    schedule: str = "exponential"
    include_end: bool = True
    beta: float = 0.98
    debias: bool = True
    diverge_factor: float = 4.0
    methods: tuple[str, ...] = DEFAULT_METHODS
    method: str = "minimum"
    for_schedule: str = "one_cycle"
    skip_start: int | None = None
    skip_end: int = 5
    arithmetic: str = "lrfind"
    mode: str = "sweep"
    num_sweeps: int = 1
    independent_lrs: int = 24
    steps_per_lr: int = 20
    average_last: int = 5
    accumulation_steps: int = 1
    val_every: int = 1
    val_batches: int | None = None
    training_steps: int | None = None
    budget_steps: int | None = None
    preset: str = "lrfind"

    def __post_init__(self) -> None:
        for each in dataclasses.fields(self):  # numpy scalars as Python ones (JSON-ready)
            value = getattr(self, each.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, each.name, value.item())
        check_positive_float("start_lr", self.start_lr)
        check_positive_float("end_lr", self.end_lr)
        if self.start_lr >= self.end_lr:
            raise ValueError(
                f"start_lr must be < end_lr, got start_lr={self.start_lr!r}, end_lr={self.end_lr!r}"
            )
        check_int("num_steps", self.num_steps, minimum=2)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_bool("include_end", self.include_end)
        check_fraction("beta", self.beta)
        check_bool("debias", self.debias)
        if check_positive_float("diverge_factor", self.diverge_factor) <= 1.0:
            raise ValueError(f"diverge_factor must be > 1, got {self.diverge_factor!r}")
        if isinstance(self.methods, str) or not all(isinstance(m, str) for m in self.methods):
            raise TypeError(f"methods must be a sequence of method names, got {self.methods!r}")
        if not isinstance(self.method, str) or not self.method:
            raise TypeError(f"method must be a method name, got {self.method!r}")
        if self.method not in self.methods:
            object.__setattr__(self, "methods", (self.method, *self.methods))
        object.__setattr__(self, "methods", tuple(self.methods))
        check_choice("for_schedule", self.for_schedule, FOR_SCHEDULES)
        if self.skip_start is not None:
            check_int("skip_start", self.skip_start, minimum=0)
        check_int("skip_end", self.skip_end, minimum=0)
        check_choice("arithmetic", self.arithmetic, ARITHMETICS)
        check_choice("mode", self.mode, MODES)
        check_int("num_sweeps", self.num_sweeps, minimum=1)
        check_int("independent_lrs", self.independent_lrs, minimum=2)
        check_int("steps_per_lr", self.steps_per_lr, minimum=1)
        check_int("average_last", self.average_last, minimum=1)
        if self.average_last > self.steps_per_lr:
            raise ValueError(
                f"average_last must be <= steps_per_lr, got {self.average_last} > "
                f"{self.steps_per_lr}"
            )
        check_int("accumulation_steps", self.accumulation_steps, minimum=1)
        check_int("val_every", self.val_every, minimum=1)
        if self.val_batches is not None:
            check_int("val_batches", self.val_batches, minimum=1)
        for name in ("training_steps", "budget_steps"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        if self.mode == "search":
            if self.training_steps is None:
                raise ValueError(
                    "mode='search' needs training_steps: the length of the training the LR "
                    "is for (a one-cycle needs its length; a constant LR its horizon)"
                )
            if self.num_sweeps != 1:
                raise ValueError(
                    f"mode='search' runs one bracketing sweep and measures candidates on "
                    f"validation loss; num_sweeps={self.num_sweeps} applies to mode='sweep' "
                    "and mode='independent'"
                )
            if self.for_schedule not in ("one_cycle", "constant"):
                raise ValueError(
                    f"mode='search' trains its candidates under for_schedule: 'one_cycle' or "
                    f"'constant', got {self.for_schedule!r}"
                )
        if not isinstance(self.preset, str):
            raise TypeError(f"preset must be a string, got {self.preset!r}")

    @classmethod
    def preset_named(cls, name: str, **changes: Any) -> Settings:
        """The preset ``name`` (one of :data:`PRESETS`) with ``changes`` applied."""
        check_choice("preset", name, tuple(PRESETS))
        return dataclasses.replace(PRESETS[name], **changes)

    def learning_rates(self) -> Any:
        """The LRs of a classic sweep, float64, one per optimizer step."""
        return make_schedule(
            self.schedule, self.start_lr, self.end_lr, self.num_steps, include_end=self.include_end
        )

    def independent_grid(self) -> Any:
        """The LRs of independent mode's grid, float64, increasing."""
        return make_schedule(
            self.schedule, self.start_lr, self.end_lr, self.independent_lrs,
            include_end=self.include_end,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        data = dataclasses.asdict(self)
        data["methods"] = list(self.methods)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["methods"] = tuple(data["methods"])
        return cls(**data)


PRESETS: dict[str, Settings] = {
    "lrfind": Settings(),
    "fastai": Settings(
        include_end=False,
        method="valley",
        for_schedule="curve",
        arithmetic="fastai",
        preset="fastai",
    ),
    "torch-lr-finder": Settings(
        beta=0.95,
        debias=False,
        diverge_factor=5.0,
        method="steep",
        for_schedule="curve",
        skip_start=10,
        skip_end=5,
        preset="torch-lr-finder",
    ),
}


def resolve_settings(settings: Settings | str | None = None, **overrides: Any) -> Settings:
    """The settings of a call: ``settings`` (a :class:`Settings`, a preset name, or None
    for ``"lrfind"``) with every override that is not None applied.

    Overrides are :class:`Settings` fields; an unknown name is a ``TypeError``.
    """
    if settings is None:
        base = PRESETS["lrfind"]
    elif isinstance(settings, str):
        base = PRESETS[check_choice("preset", settings, tuple(PRESETS))]
    elif isinstance(settings, Settings):
        base = settings
    else:
        raise TypeError(
            "settings must be an lrfind Settings, a preset name "
            f"({', '.join(sorted(PRESETS))}) or None, got {type(settings).__name__}"
        )
    fields = {field.name for field in dataclasses.fields(Settings)}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    if isinstance(changes.get("methods"), str):
        changes["methods"] = (changes["methods"],)
    return dataclasses.replace(base, **changes) if changes else base


__all__ = [
    "DEFAULT_METHODS",
    "FOR_SCHEDULES",
    "MODES",
    "PRESETS",
    "Settings",
    "resolve_settings",
]
