"""The built-in suggestion methods: rules that read an LR off a smoothed curve.

Each method takes ``(lrs, losses)``: float64 arrays of the same length >= 3, the
swept LRs (increasing) and the smoothed losses, already trimmed and finite (see
:func:`lrfind_core.suggestion.suggest`). It returns a :class:`MethodOutput`. The
``index`` it returns, when set, is into these trimmed arrays.

:data:`FASTAI_METHODS` holds the same four rules in fastai 2.8's own arithmetic,
which :func:`~lrfind_core.suggestion.suggest` uses with ``arithmetic="fastai"``
(the fastai preset). fastai judges float32 tensors: the LRs and the losses are
rounded to float32, its ``slide`` takes the gradient of float32 losses, its
``steep`` takes forward differences ``(loss[i+1] - loss[i]) / (log lr[i+1] - log lr[i])``
in float32 and answers the left point ``lr[i]``, and every suggested LR is a float32
LR (``minimum`` divides it by 10 afterwards, in float64). On fastai's own curves
they give its suggestions exactly (``tests/presets/test_fastai_preset.py``). Two
limits: ``log`` here is float64 rounded to float32, and torch's float32 ``log``
(which fastai's ``steep`` uses) is off from that by one unit in the last place for
about one LR in a hundred, so two ``steep`` slopes within about 1e-7 of each other
could be ordered differently; and where fastai has a flaw, lrfind's safe behaviour
stays (``valley`` clamps a negative index to the first point where fastai wraps to
the last; ``slide`` declines a point up a rise; ``suggest`` clips to the swept range
and declines curves that only rise).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import NamedTuple

import numpy as np


class MethodOutput(NamedTuple):
    """What a method chose: an LR (or None), the curve index it sits at, and why."""

    lr: float | None
    reason: str
    index: int | None = None


def longest_decreasing_run_lengths(losses: np.ndarray) -> np.ndarray:
    """For each point, the length of the longest strictly decreasing subsequence ending there.

    O(n log n) patience sorting on the negated losses (strictly increasing).
    """
    tails: list[float] = []
    lengths = np.empty(len(losses), dtype=np.int64)
    for index, value in enumerate((-losses).tolist()):
        position = bisect_left(tails, value)
        if position == len(tails):
            tails.append(value)
        else:
            tails[position] = value
        lengths[index] = position + 1
    return lengths


def valley(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """fastai's valley rule.

    Let ``L_i`` be the length of the longest strictly decreasing subsequence of the
    loss that ends at point ``i``. Take the first point ``e`` where ``L`` is largest;
    the valley spans ``[s, e]`` with ``s = e - L_e``. With ``k = L_e / 3`` the
    suggestion is point ``s + int(k) + int(k / 2)``, about halfway down the valley.
    """
    lengths = longest_decreasing_run_lengths(losses)
    end = int(np.argmax(lengths))
    length = int(lengths[end])
    start = end - length
    third = length / 3
    index = min(max(start + int(third) + int(third / 2), 0), len(lrs) - 1)
    return MethodOutput(
        float(lrs[index]),
        f"halfway along a valley of {length} falling points",
        index,
    )


def as_float32(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to float32 (held as float64, so comparisons stay exact)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def float32_lr(lrs: np.ndarray, index: int) -> float:
    """The LR at ``index`` as fastai reports it: rounded to float32."""
    return float(np.float32(lrs[index]))


def fastai_valley(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """fastai's valley on float32 losses; the LR as a float32 value."""
    output = valley(lrs, as_float32(losses))
    return output._replace(lr=float32_lr(lrs, output.index))


def steep(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """The most negative slope of the loss against ``log(lr)``.

    Slopes are central differences ``(loss[i+1] - loss[i-1]) / (log lr[i+1] - log lr[i-1])``
    (one-sided at the ends). On an exponential schedule ``log(lr)`` is evenly spaced, so
    this picks the same point as torch-lr-finder's gradient over the step index.
    Returns None when no slope is negative.
    """
    # Ratio of two step-index gradients: a flat stretch gets a slope of exactly 0, which
    # numpy.gradient's uneven-spacing weights (rounded log(lr) gaps) do not guarantee.
    slopes = np.gradient(losses) / np.gradient(np.log(lrs))
    index = int(np.argmin(slopes))
    if not slopes[index] < 0:
        return MethodOutput(None, "the smoothed loss never falls")
    return MethodOutput(
        float(lrs[index]), f"steepest fall, slope {slopes[index]:.4g} per e-fold", index
    )


def fastai_steep(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """fastai's steep: the most negative forward difference of the float32 loss over
    float32 ``log(lr)``, answered at its left point, as a float32 LR (first on ties).
    Returns None when no slope is negative."""
    values = np.asarray(losses, dtype=np.float32)
    logs = np.log(np.asarray(lrs, dtype=np.float32).astype(np.float64)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        slopes = (values[1:] - values[:-1]) / (logs[1:] - logs[:-1])
    index = int(np.argmin(slopes))
    if not slopes[index] < 0:
        return MethodOutput(None, "the smoothed loss never falls")
    return MethodOutput(
        float32_lr(lrs, index),
        f"steepest fall from here to the next point, slope {slopes[index]:.4g} per e-fold",
        index,
    )


def minimum(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """The LR at the lowest smoothed loss, divided by 10 (first minimum on ties)."""
    index = int(np.argmin(losses))
    return MethodOutput(
        float(lrs[index]) / 10.0, f"minimum loss at lr {lrs[index]:.3g}, divided by 10"
    )


def fastai_minimum(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """fastai's minimum: the float32 LR at the lowest float32 loss, divided by 10."""
    index = int(np.argmin(as_float32(losses)))
    return MethodOutput(
        float32_lr(lrs, index) / 10.0, f"minimum loss at lr {lrs[index]:.3g}, divided by 10"
    )


SLIDE_SPAN = 15
SLIDE_THRESHOLD = 0.005


def slide(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """fastai's slide rule.

    Take ``g = numpy.gradient(losses)`` over the step index. Start with the right
    point ``r`` at the high-LR end and the left point ``l = r - 15``. While
    ``|g[r] - g[l]| > 0.005``, move both one point left. The suggestion is the last
    left point at which the gradients still differed by more than the threshold
    (the first left point if they never did, point 0 if the walk ran off the start).
    Needs more than 15 points. Unlike fastai, no suggestion (None) when that point
    lies above the first judged loss and the loss never fell below it on the way:
    on a rising curve the walk would otherwise point far up the rise.
    """
    return _slide(lrs, losses, np.float64)


def fastai_slide(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """fastai's slide on the gradient of the float32 losses; the LR as a float32 value.

    The gradients are float32; ``|g[r] - g[l]| > 0.005`` reads the same in float32 and
    in float64 (a float32 number exceeds 0.005 exactly when it exceeds float32(0.005)).
    """
    output = _slide(lrs, losses, np.float32)
    if output.index is None:
        return output
    return output._replace(lr=float32_lr(lrs, output.index))


def _slide(lrs: np.ndarray, losses: np.ndarray, dtype: type) -> MethodOutput:
    """The slide rule with the gradient taken in ``dtype``."""
    if len(losses) <= SLIDE_SPAN:
        return MethodOutput(None, f"slide needs more than {SLIDE_SPAN} points, got {len(losses)}")
    gradient = np.gradient(np.asarray(losses, dtype=dtype))
    right = len(losses) - 1
    left = right - SLIDE_SPAN
    chosen = left
    while left >= 0 and abs(gradient[right] - gradient[left]) > SLIDE_THRESHOLD:
        chosen = left
        right -= 1
        left -= 1
    if losses[chosen] > losses[0] and np.min(losses[: chosen + 1]) >= losses[0]:
        return MethodOutput(
            None, "the loss rises to the slide point and never falls below its first judged value"
        )
    return MethodOutput(
        float(lrs[chosen]),
        f"gradients {SLIDE_SPAN} points apart differ by > {SLIDE_THRESHOLD} down to here",
        chosen,
    )


FASTAI_METHODS = {
    "valley": fastai_valley,
    "steep": fastai_steep,
    "minimum": fastai_minimum,
    "slide": fastai_slide,
}
"""The built-in methods in fastai's arithmetic, by name (see the module docstring)."""
