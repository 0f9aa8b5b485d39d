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
    in ``methods`` (default: every method in the result). A search's candidates are
    drawn on a second y-axis (their validation losses, one marker shape per rung),
    with its chosen LR as a vertical line and the near-best range shaded. With
    ``path`` the figure is also saved there. ``show()`` is never called.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4.5))
    lrs = result.lrs
    if result.ensemble is not None:
        _draw_ensemble(ax, result)
    smoothing = result.settings.beta > 0 and result.runs is None
    if show_raw and result.ensemble is None and smoothing:
        ax.plot(lrs, result.losses, color="C0", alpha=0.3, linewidth=1, label="raw loss")
    ax.plot(
        lrs,
        result.smoothed_losses,
        color="C0",
        linewidth=2,
        marker="." if result.runs is not None else None,
        label=_curve_label(result, smoothing),
    )
    names = [name for name in (result.suggestions if methods is None else methods)
             if name != "search"]
    _draw_suggestions(ax, result, names)
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
    title = "LR range test" if result.search is None else "LR search"
    if result.stop_step is not None:
        title += f" (sweep stopped at step {result.stop_step}: {result.stop_reason})"
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if result.search is not None:
        more = _draw_search(ax, result.search)
        handles, labels = handles + more[0], labels + more[1]
    schedule = result.settings.for_schedule
    legend_title = {"one_cycle": "LRs for a one-cycle peak", "constant": "LRs for a constant LR"}
    ax.legend(handles, labels, loc="best", fontsize="small",
              title=legend_title.get(schedule), title_fontsize="small")
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax


def _draw_ensemble(ax: Any, result: Any) -> None:
    """Every sweep faint, and the interquartile band of the smoothed curves."""
    ensemble = result.ensemble
    for row in ensemble.sweep_smoothed[:, : len(result.lrs)]:
        ax.plot(result.lrs, row, color="C0", alpha=0.25, linewidth=0.8)
    ax.fill_between(result.lrs, ensemble.band_low, ensemble.band_high, color="C0", alpha=0.2,
                    label=f"interquartile band of {ensemble.num_sweeps} sweeps")


def _draw_suggestions(ax: Any, result: Any, names: list[str]) -> None:
    """One marker per method's suggestion, on the smoothed curve."""
    ensemble = result.ensemble
    for number, name in enumerate(names):
        detail = result.suggest(name)
        if detail.lr is None or detail.index is None:
            continue
        spread = None if ensemble is None else ensemble.spread_decades(name)
        default = " (default)" if name == result.settings.method and result.search is None else ""
        ax.plot(
            detail.lr,
            np.interp(np.log(detail.lr), np.log(result.lrs), result.smoothed_losses),
            marker=MARKERS[number % len(MARKERS)],
            markersize=8,
            linestyle="none",
            color=f"C{number + 1}",
            label=f"{name}{default}: {detail.lr:.2e}"
            + ("" if spread is None else f" (sweeps spread {spread:.2f} decades)"),
        )


def _draw_search(ax: Any, search: Any) -> tuple[list[Any], list[str]]:
    """The candidates' validation losses on a second y-axis, the chosen LR and the
    near-best range; returns the legend handles and labels it adds."""
    scores_ax = ax.twinx()
    scores_ax.set_ylabel("validation loss after a candidate's run")
    for rung in sorted(set(search.rungs.tolist())):
        lrs, scores = search.rung(rung)
        horizon = int(search.horizons[search.rungs == rung][0])
        finite = np.isfinite(scores)
        scores_ax.plot(lrs[finite], scores[finite], marker="os^"[rung % 3], linestyle=":",
                       color=f"C{6 + rung}", label=f"candidates, {horizon}-step runs")
    added = []
    if search.near_best is not None:
        added.append(ax.axvspan(*search.near_best, color="C2", alpha=0.12,
                                label=f"within {search.tolerance:.0%} of the best"))
    if search.lr is not None:
        added.append(ax.axvline(search.lr, color="C3", linewidth=1.5,
                                label=f"search: {search.lr:.2e} ({search.schedule}, "
                                f"{search.training_steps} steps)"))
    handles, labels = scores_ax.get_legend_handles_labels()
    return added + handles, [artist.get_label() for artist in added] + labels
