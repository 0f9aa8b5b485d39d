"""Plot an LR range-test result with matplotlib (headless-safe, never shows)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _curve_label(result: Any, smoothing: bool) -> str:
    if result.runs is not None:
        label = f"score of a {result.settings.steps_per_lr}-step run from the start"
    else:
        label = "loss"
    if result.ensemble is not None:
        label = f"median {label}"
    return f"smoothed {label}" if smoothing else label


def plot_result(
    result: Any,
    ax: Any = None,
    path: str | PathLike[str] | None = None,
    methods: Sequence[str] | None = None,
    show_raw: bool = True,
) -> Any:
    """Draw ``result`` (an LRFindResult) on ``ax`` (a new figure if None); return the Axes.

    Log-x; the raw losses faint, the smoothed loss bold, one marker per suggestion
    in ``methods`` (default: every method in the result). With ``path`` the figure
    is also saved there. ``show()`` is never called.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4.5))
    lrs = result.lrs
    ensemble = result.ensemble
    if ensemble is not None:
        points = len(lrs)
        for row in ensemble.sweep_smoothed[:, :points]:
            ax.plot(lrs, row, color="C0", alpha=0.25, linewidth=0.8)
        ax.fill_between(
            lrs,
            ensemble.band_low,
            ensemble.band_high,
            color="C0",
            alpha=0.2,
            label=f"interquartile band of {ensemble.num_sweeps} sweeps",
        )
    smoothing = result.settings.beta > 0 and result.runs is None
    if show_raw and ensemble is None and smoothing:
        ax.plot(lrs, result.losses, color="C0", alpha=0.3, linewidth=1, label="raw loss")
    ax.plot(
        lrs,
        result.smoothed_losses,
        color="C0",
        linewidth=2,
        marker="." if result.runs is not None else None,
        label=_curve_label(result, smoothing),
    )
    names = list(result.suggestions) if methods is None else list(methods)
    for number, name in enumerate(names):
        detail = result.suggest(name)
        if detail.lr is None or detail.index is None:
            continue
        ax.plot(
            detail.lr,
            np.interp(np.log(detail.lr), np.log(lrs), result.smoothed_losses),
            marker=MARKERS[number % len(MARKERS)],
            markersize=8,
            linestyle="none",
            color=f"C{number + 1}",
            label=f"{name}{' (default)' if name == result.settings.method else ''}: "
            f"{detail.lr:.2e}"
            + (
                f" (sweeps spread {spread:.2f} decades)"
                if ensemble is not None and (spread := ensemble.spread_decades(name)) is not None
                else ""
            ),
        )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(
        "loss" if result.runs is None else f"mean loss of last {result.runs.average_last} steps"
    )
    finite = result.smoothed_losses[np.isfinite(result.smoothed_losses)]
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        margin = 0.05 * (high - low) or 0.05 * max(abs(high), 1.0)
        ax.set_ylim(low - margin, high + margin)
    title = "LR range test"
    if result.stop_step is not None:
        title += f" (stopped at step {result.stop_step}: {result.stop_reason})"
    ax.set_title(title)
    schedule = result.settings.for_schedule
    legend_title = {"one_cycle": "LRs for a one-cycle peak", "constant": "LRs for a constant LR"}
    ax.legend(
        loc="best", fontsize="small", title=legend_title.get(schedule), title_fontsize="small"
    )
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax
