"""Candidate suggestion rules, registered for the benchmark only (not part of the library).

``basin``: the geometric middle of the basin around the curve's minimum. With
``m`` the lowest (smoothed) loss and ``L0`` the first loss of the judged window,
the basin is the contiguous run of points around the minimum whose loss is at
most ``m + 0.05 (L0 - m)`` (within 5% of the total drop); the suggestion is
``sqrt(lr_left * lr_right)`` of its two ends. Meant to be less jumpy than the
argmin on a flat-bottomed curve, and scale-free (unlike slide's fixed gradient
threshold or valley's count of falling points, which a noiseless curve from
independent runs fills with its flat start).
"""

from __future__ import annotations

import numpy as np

from lrfind_core.suggestion import available_methods, register_method
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


CANDIDATES: tuple[str, ...] = ("basin",)
"""Bench-only methods, evaluated next to the library's by default."""

if "basin" not in available_methods():
    register_method("basin", basin)
