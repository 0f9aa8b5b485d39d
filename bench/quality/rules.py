"""Candidate suggestion rules, registered for the benchmark only (not part of the library).

``basin``: the geometric middle of the basin around the curve's minimum. With
``m`` the lowest (smoothed) loss and ``L0`` the first loss of the judged window,
the basin is the contiguous run of points around the minimum whose loss is at
most ``m + 0.05 (L0 - m)`` (within 5% of the total drop); the suggestion is
``sqrt(lr_left * lr_right)`` of its two ends. Meant to be less jumpy than the
argmin on a flat-bottomed curve, and scale-free (unlike slide's fixed gradient
threshold or valley's count of falling points, which a noiseless curve from
independent runs fills with its flat start).

``minimum_lagfree``: ``minimum`` read with no lag. The library's rules read the
causal, bias-corrected EWA (beta 0.98: about 50 steps of memory, half a 100-step
sweep), which trails the raw loss. Once the sweep is over the whole curve is
known, so this rule reads the raw losses with a two-sided Gaussian average in
log-LR (:func:`lrfind_core.smoothing.centered_smooth`, 0.25 decades or 2.5 sweep
steps wide, the width the search's bracket uses) over the same judged window, and
takes the LR of its lowest point / 10. It needs the raw curve, so it is computed
from the result (:func:`lag_free_minimum`), not registered as a method.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrfind_core.smoothing import centered_smooth
from lrfind_core.suggestion import available_methods, register_method, trim_curve
from lrfind_core.suggestion_methods import MethodOutput

BASIN_FRACTION = 0.05


def basin(lrs: np.ndarray, losses: np.ndarray) -> MethodOutput:
    """The geometric middle of the points within 5% of the drop of the minimum (see module)."""
    index = int(np.argmin(losses))
    threshold = losses[index] + BASIN_FRACTION * (losses[0] - losses[index])
    inside = losses <= threshold
    left = right = index
    while left > 0 and inside[left - 1]:
        left -= 1
    while right < len(lrs) - 1 and inside[right + 1]:
        right += 1
    lr = float(np.sqrt(lrs[left] * lrs[right]))
    return MethodOutput(
        lr, f"middle of the basin {lrs[left]:.3g}..{lrs[right]:.3g} (within 5% of the drop)"
    )


LAG_FREE_WIDTH_DECADES = 0.25


def lag_free_minimum(result: Any) -> float | None:
    """``minimum_lagfree`` of an ``LRFindResult`` (see the module); None with fewer than
    3 finite points."""
    lrs, losses = np.asarray(result.lrs), np.asarray(result.losses, dtype=np.float64)
    finite = np.isfinite(losses)
    count = len(losses) if finite.all() else int(np.argmin(finite))
    if count < 3:
        return None
    step = float(np.log10(lrs[count - 1] / lrs[0])) / (count - 1)
    read = centered_smooth(lrs[:count], losses[:count], max(LAG_FREE_WIDTH_DECADES, 2.5 * step))
    settings = result.settings
    skip_start = (result.planned_points // 10 if settings.skip_start is None
                  else settings.skip_start)
    begin, end = trim_curve(len(lrs), count, skip_start=skip_start, skip_end=settings.skip_end)
    if end - begin < 1:
        return None
    return float(lrs[begin + int(np.argmin(read[begin:end]))] / 10.0)


CANDIDATES: tuple[str, ...] = ("basin",)
"""Bench-only methods, evaluated next to the library's by default."""

RESULT_CANDIDATES = {"minimum_lagfree": lag_free_minimum}
"""Bench-only rules computed from the whole result (they need its raw curve)."""

if "basin" not in available_methods():
    register_method("basin", basin)
