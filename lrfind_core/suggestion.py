"""One entry point for LR suggestions, and the registry of methods by name.

``suggest(lrs, losses, method)`` judges a *smoothed* curve. Before a method sees
it, the curve is cut at its first non-finite point, then trimmed: the first
``skip_start`` points (default ``planned_steps // 10``) and the last ``skip_end``
(default 5) are dropped. A curve with fewer than 3 points left, a flat one, or one
that only rises (lowest at its first judged point) gets ``None`` with a reason. A
suggested LR always lies inside the swept range ``[lrs[0], lrs[-1]]``: one outside
is clipped, and the reason says so.

With ``arithmetic="fastai"`` (the fastai preset) the built-in methods run in fastai
2.8's own float32 arithmetic (:data:`~lrfind_core.suggestion_methods.FASTAI_METHODS`);
a method registered by name (or registered over a built-in) runs as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrfind_core import suggestion_methods
from lrfind_core.arguments import check_choice, check_curve, check_int
from lrfind_core.smoothing import ARITHMETICS
from lrfind_core.suggestion_methods import FASTAI_METHODS, MethodOutput

SuggestionMethod = Callable[[np.ndarray, np.ndarray], MethodOutput]

MIN_POINTS = 3
DEFAULT_SKIP_END = 5

_METHODS: dict[str, SuggestionMethod] = {
    "valley": suggestion_methods.valley,
    "steep": suggestion_methods.steep,
    "minimum": suggestion_methods.minimum,
    "slide": suggestion_methods.slide,
}
_BUILT_IN = dict(_METHODS)


@dataclass(frozen=True)
class Suggestion:
    """A suggested LR (None if the curve can't be judged), where it sits, and why.

    ``index`` points into the full curve (``result.lrs``): the point whose LR is
    nearest (in log space) to the suggested one. ``curve_lr`` is the LR the method
    read off the curve; ``lr`` is the LR to use under ``for_schedule``
    (:mod:`lrfind_core.schedule_aware`), equal to ``curve_lr`` when that is None.
    """

    method: str
    lr: float | None
    index: int | None
    reason: str
    curve_lr: float | None = None
    for_schedule: str | None = None


def register_method(name: str, method: SuggestionMethod, *, overwrite: bool = False) -> None:
    """Make ``method`` available to :func:`suggest` as ``name``.

    ``method(lrs, losses) -> MethodOutput`` receives the trimmed, finite, smoothed
    curve (at least 3 points) and returns the LR it chose (or None) with a reason.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"method name must be a non-empty string, got {name!r}")
    if not callable(method):
        raise TypeError(f"method must be callable, got {type(method).__name__}")
    if name in _METHODS and not overwrite:
        raise ValueError(f"suggestion method {name!r} exists; pass overwrite=True to replace it")
    _METHODS[name] = method


def available_methods() -> tuple[str, ...]:
    """Names of all registered suggestion methods."""
    return tuple(_METHODS)


def check_method(name: object) -> str:
    """Raise a clear error if ``name`` is not a registered method."""
    return check_choice("suggestion method", name, tuple(_METHODS))


def nearest_index(lrs: np.ndarray, lr: float) -> int:
    """Index of the point of ``lrs`` nearest to ``lr`` in log space."""
    return int(np.argmin(np.abs(np.log(lrs) - np.log(lr))))


def trim_curve(
    num_points: int, finite_points: int, *, skip_start: int, skip_end: int
) -> tuple[int, int]:
    """The ``[begin, end)`` window a method judges, out of ``num_points``.

    ``finite_points`` is the length of the finite prefix of the curve.
    """
    begin = min(skip_start, finite_points)
    end = max(begin, finite_points - skip_end)
    return begin, end


def suggest(
    lrs: object,
    losses: object,
    method: str = "valley",
    *,
    skip_start: int | None = None,
    skip_end: int = DEFAULT_SKIP_END,
    planned_steps: int | None = None,
    arithmetic: str = "lrfind",
) -> Suggestion:
    """Suggest an LR from a smoothed curve with the registered ``method``.

    Args:
      lrs: swept learning rates, strictly increasing, > 0.
      losses: smoothed losses at those LRs.
      method: a name from :func:`available_methods`.
      skip_start: points to drop at the start; default ``planned_steps // 10``.
      skip_end: points to drop at the end of the finite part (default 5).
      planned_steps: steps the sweep was planned for (default ``len(lrs)``).
      arithmetic: ``"lrfind"`` or ``"fastai"`` (the built-in methods as fastai
        computes them, see :mod:`lrfind_core.suggestion_methods`).
    """
    check_method(method)
    check_choice("arithmetic", arithmetic, ARITHMETICS)
    lrs, losses = check_curve(lrs, losses)
    planned = (
        len(lrs) if planned_steps is None else check_int("planned_steps", planned_steps, minimum=1)
    )
    skip_start = (
        planned // 10 if skip_start is None else check_int("skip_start", skip_start, minimum=0)
    )
    skip_end = check_int("skip_end", skip_end, minimum=0)
    return read_curve(lrs, losses, method, skip_start, skip_end, arithmetic)


def read_curve(
    lrs: np.ndarray,
    losses: np.ndarray,
    method: str,
    skip_start: int,
    skip_end: int,
    arithmetic: str = "lrfind",
) -> Suggestion:
    """:func:`suggest` on a curve and arguments already checked (float64 ``lrs`` and
    ``losses`` as :func:`~lrfind_core.arguments.check_curve` returns them, a
    registered ``method``, counts >= 0): judging checks a curve once, not once per
    method."""
    non_finite = np.flatnonzero(~np.isfinite(losses))
    finite_points = int(non_finite[0]) if len(non_finite) else len(losses)
    begin, end = trim_curve(len(losses), finite_points, skip_start=skip_start, skip_end=skip_end)
    if end - begin < MIN_POINTS:
        return Suggestion(
            method,
            None,
            None,
            f"too short to judge: {end - begin} points left after trimming "
            f"(skip_start={skip_start}, skip_end={skip_end}, finite points={finite_points})",
        )
    window_lrs, window_losses = lrs[begin:end], losses[begin:end]
    if np.ptp(window_losses) <= 1e-12 * np.max(np.abs(window_losses)):
        return Suggestion(method, None, None, "flat curve: the loss does not change with the LR")
    if np.argmin(window_losses) == 0:
        return Suggestion(
            method, None, None,
            f"the loss only rises over the judged range (lowest at its first point, "
            f"{window_lrs[0]:.3g}): no LR in it trains better than the smallest; lower start_lr",
        )

    rule = _METHODS[method]
    if arithmetic == "fastai" and rule is _BUILT_IN.get(method):
        rule = FASTAI_METHODS[method]
    output = rule(window_lrs, window_losses)
    if output.lr is None:
        return Suggestion(method, None, None, output.reason)
    lr, reason = float(output.lr), output.reason
    if not np.isfinite(lr) or lr <= 0:
        return Suggestion(method, None, None, f"method returned an invalid LR {lr!r}: {reason}")
    low, high = lrs[0], lrs[-1]
    if arithmetic == "fastai":  # a float32 LR at an end of the range may round past it
        low, high = min(low, float(np.float32(low))), max(high, float(np.float32(high)))
    if lr < low or lr > high:
        lr = float(np.clip(lr, lrs[0], lrs[-1]))
        reason += f"; clipped to the swept range [{lrs[0]:.3g}, {lrs[-1]:.3g}]"
    if output.index is not None and lr == window_lrs[output.index]:
        index = begin + int(output.index)
    else:
        index = nearest_index(lrs, lr)
    return Suggestion(method, lr, index, reason, curve_lr=lr)
