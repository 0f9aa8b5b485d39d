"""Sweep settings and the named presets that bundle them.

A :class:`FinderConfig` holds everything that decides the LRs swept and how the
curve is judged; it is plain, frozen data and serialises to JSON. Build one with
:func:`make_config`, which starts from a preset and applies explicit overrides.

Presets:

* ``"lrfind"`` (default): 1e-7 to 10 over 100 steps, exponential with both
  endpoints, EWA beta=0.98 debiased, stop at 4x best; the suggestion is the
  ``minimum`` rule scaled for a one-cycle schedule (see
  :mod:`lrfind_core.schedule_aware`), the best rule on lrfind's benchmark.
* ``"fastai"``: as fastai's ``lr_find``: the exponential sweep stops one step short
  of ``end_lr`` (``lr_i = s (e/s)^(i/N)``), beta=0.98 debiased, stop at 4x, valley
  as read off the curve.
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

from lrfind_core._checks import check_choice, check_fraction, check_int, check_positive_float
from lrfind_core.schedule_aware import FOR_SCHEDULES
from lrfind_core.schedules import SCHEDULES, make_schedule
from lrfind_core.suggestion import available_methods, check_method

DEFAULT_METHODS = ("valley", "steep", "minimum", "slide")
MODES = ("sweep", "independent")

INDEPENDENT_DEFAULTS: dict[str, Any] = {
    "num_steps": 24,
    "beta": 0.0,
    "skip_start": 0,
    "skip_end": 0,
    "default_method": "minimum",
}
"""Defaults for ``mode="independent"`` (a grid of 24 LRs, each curve point its own run,
so no smoothing across LRs and no trimming; ``valley`` and ``slide`` misread these
curves), below explicit settings, above presets."""


@dataclass(frozen=True)
class FinderConfig:
    """Everything that fixes a sweep's LRs and how its curve is judged.

    Attributes:
      start_lr, end_lr: first and last LR of the sweep (optimizer units).
      num_steps: planned optimizer steps (LR values).
      schedule: ``"exponential"`` or ``"linear"``.
      include_end: whether the last step uses exactly ``end_lr``.
      beta: EWA weight of the past, in [0, 1); 0 disables smoothing.
      debias: bias-corrected EWA (True) or first-value-initialised EWA (False).
      diverge_factor: the stop rule's k (> 1), see :mod:`lrfind_core.stopping`.
      methods: suggestion methods computed for the result.
      default_method: the method behind ``result.suggestion``.
      for_schedule: the schedule suggestions are for: ``"one_cycle"`` (the LR is a
        one-cycle peak), ``"constant"``, or ``"curve"`` (the LR as read off the
        curve, fastai's and torch-lr-finder's meaning).
      skip_start: points trimmed at the start before suggesting (None: steps // 10).
      skip_end: points trimmed at the end before suggesting.
      preset: the preset this config started from.
      mode: ``"sweep"`` (the classic range test: one run, the LR rising every
        step) or ``"independent"`` (one short run per LR of a grid of
        ``num_steps`` LRs, each from the same start on the same batches).
      num_sweeps: curves to record, each from the same start with another data
        order and seed; K > 1 adds a band and the suggestions' spread, and the
        suggestion comes from the median curve.
      steps_per_lr: optimizer steps of each independent run.
      average_last: final steps whose mean loss scores an independent run.
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
    default_method: str = "minimum"
    for_schedule: str = "one_cycle"
    skip_start: int | None = None
    skip_end: int = 5
    preset: str = "lrfind"
    mode: str = "sweep"
    num_sweeps: int = 1
    steps_per_lr: int = 20
    average_last: int = 5

    def __post_init__(self) -> None:
        check_positive_float("start_lr", self.start_lr)
        check_positive_float("end_lr", self.end_lr)
        check_int("num_steps", self.num_steps, minimum=2)
        if self.start_lr >= self.end_lr:
            raise ValueError(
                f"start_lr must be < end_lr, got start_lr={self.start_lr!r}, end_lr={self.end_lr!r}"
            )
        check_choice("schedule", self.schedule, SCHEDULES)
        check_fraction("beta", self.beta)
        factor = check_positive_float("diverge_factor", self.diverge_factor)
        if factor <= 1.0:
            raise ValueError(f"diverge_factor must be > 1, got {factor!r}")
        if isinstance(self.methods, str) or not all(isinstance(m, str) for m in self.methods):
            raise TypeError(f"methods must be a sequence of method names, got {self.methods!r}")
        for method in self.methods:
            check_method(method)
        check_method(self.default_method)
        check_choice("for_schedule", self.for_schedule, FOR_SCHEDULES)
        if self.skip_start is not None:
            check_int("skip_start", self.skip_start, minimum=0)
        check_int("skip_end", self.skip_end, minimum=0)
        check_choice("mode", self.mode, MODES)
        check_int("num_sweeps", self.num_sweeps, minimum=1)
        check_int("steps_per_lr", self.steps_per_lr, minimum=1)
        check_int("average_last", self.average_last, minimum=1)
        if self.average_last > self.steps_per_lr:
            raise ValueError(
                f"average_last must be <= steps_per_lr, got {self.average_last} > "
                f"{self.steps_per_lr}"
            )
        for name in ("include_end", "debias"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def learning_rates(self) -> Any:
        """The planned LRs, float64, one per optimizer step."""
        return make_schedule(
            self.schedule, self.start_lr, self.end_lr, self.num_steps, include_end=self.include_end
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        data = dataclasses.asdict(self)
        data["methods"] = list(self.methods)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinderConfig:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["methods"] = tuple(data["methods"])
        return cls(**data)


PRESETS: dict[str, dict[str, Any]] = {
    "lrfind": {},
    "fastai": {
        "include_end": False,
        "beta": 0.98,
        "debias": True,
        "diverge_factor": 4.0,
        "default_method": "valley",
        "for_schedule": "curve",
    },
    "torch-lr-finder": {
        "include_end": True,
        "beta": 0.95,
        "debias": False,
        "diverge_factor": 5.0,
        "default_method": "steep",
        "for_schedule": "curve",
        "skip_start": 10,
        "skip_end": 5,
    },
}


def make_config(preset: str | None = None, **overrides: Any) -> FinderConfig:
    """A validated config: the ``preset`` (default ``"lrfind"``) with ``overrides``.

    Overrides whose value is None are ignored, so a backend can pass its keyword
    arguments straight through. ``methods`` always includes ``default_method``.
    """
    name = "lrfind" if preset is None else check_choice("preset", preset, tuple(PRESETS))
    fields = {f.name for f in dataclasses.fields(FinderConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    settings: dict[str, Any] = {**PRESETS[name], "preset": name}
    if overrides.get("mode") == "independent":
        settings.update(INDEPENDENT_DEFAULTS)
    settings.update({key: value for key, value in overrides.items() if value is not None})
    methods = settings.get("methods", DEFAULT_METHODS)
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(methods)
    user_methods = overrides.get("methods") is not None
    default = settings.get(
        "default_method", methods[0] if user_methods and methods else FinderConfig.default_method
    )
    if default not in methods:
        methods = (default, *methods)
    settings["methods"] = methods
    settings["default_method"] = default
    return FinderConfig(**settings)


__all__ = [
    "DEFAULT_METHODS",
    "INDEPENDENT_DEFAULTS",
    "MODES",
    "PRESETS",
    "FinderConfig",
    "available_methods",
    "make_config",
]
