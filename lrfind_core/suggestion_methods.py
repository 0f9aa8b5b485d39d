"""The built-in suggestion methods: rules that read an LR off a smoothed curve.

Each method takes ``(lrs, losses)``: float64 arrays of the same length >= 3, the
swept LRs (increasing) and the smoothed losses, already trimmed and finite (see
:func:`lrfind_core.suggestion.suggest`). It returns a :class:`MethodOutput`. The
``index`` it returns, when set, is into these trimmed arrays.
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


def minimum(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """The LR at the lowest smoothed loss, divided by 10 (first minimum on ties)."""
    index = int(np.argmin(losses))
    return MethodOutput(
        float(lrs[index]) / 10.0, f"minimum loss at lr {lrs[index]:.3g}, divided by 10"
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
    if len(losses) <= SLIDE_SPAN:
        return MethodOutput(None, f"slide needs more than {SLIDE_SPAN} points, got {len(losses)}")
    gradient = np.gradient(losses)
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
