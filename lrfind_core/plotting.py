"""Plot an LR range-test result with matplotlib (headless-safe, never shows)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np

from lrfind_core.arguments import check_choice, check_int

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
    hide_start: int = 0,
    hide_end: int = 0,
    frame: str = "informative",
) -> Any:
    """Draw ``result`` (an LRFindResult) on ``ax`` (a new figure if None); return the Axes.

    Log-x; the raw losses faint, the smoothed loss bold, one marker per suggestion
    in ``methods`` (default: every method in the result), with its LR written out
    and the schedule it is for in the legend's title. K sweeps add every sweep
    faint and their interquartile band; a search adds its candidates' validation
    losses on a second y-axis (a marker per rung), its chosen LR and the near-best
    range. ``hide_start``/``hide_end`` leave that many points out of the drawing
    (the suggestions keep their own trimming). ``frame="informative"`` (default)
    frames the loss from its lowest point to a little above where it started,
    and notes how high the clipped tail goes; ``"all"`` shows every loss. With
    ``path`` the figure is also saved there. ``show()`` is never called.
    """
    check_int("hide_start", hide_start, minimum=0)
    check_int("hide_end", hide_end, minimum=0)
    check_choice("frame", frame, FRAMES)
    if path is not None:
        check_plot_file(path, "path")
    if isinstance(methods, str):
        raise TypeError(f"methods must be a sequence of method names, e.g. [{methods!r}], "
                        f"got the string {methods!r}")
    if hide_start + hide_end >= len(result.lrs):
        raise ValueError(
            f"hide_start={hide_start} and hide_end={hide_end} leave none of the "
            f"{len(result.lrs)} points to draw"
        )
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4.5))
    shown = slice(hide_start, len(result.lrs) - hide_end)
    lrs = result.lrs[shown]
    if result.ensemble is not None:
        _draw_ensemble(ax, result, shown)
    smoothing = result.settings.beta > 0 and result.runs is None
    if show_raw and result.ensemble is None and smoothing:
        ax.plot(lrs, result.losses[shown], color="C0", alpha=0.3, linewidth=1,
                label="raw loss")
    ax.plot(lrs, result.smoothed_losses[shown], color="C0", linewidth=2,
            marker="." if result.runs is not None else None,
            label=_curve_label(result, smoothing))
    names = [name for name in (result.suggestions if methods is None else methods)
             if name != "search"]
    _draw_suggestions(ax, result, names)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(
        "loss" if result.runs is None else f"mean loss of last {result.runs.average_last} steps"
    )
    drawn = [result.smoothed_losses[shown]]
    if show_raw and result.ensemble is None and smoothing:
        drawn.append(result.losses[shown])
    _frame(ax, np.concatenate(drawn), result.smoothed_losses[shown], frame)
    title = "LR range test" if result.search is None else "LR search"
    if result.stop_step is not None:
        title += f" (sweep stopped at step {result.stop_step}: {result.stop_reason})"
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if result.search is not None:
        more = _draw_search(ax, result.search)
        handles, labels = handles + more[0], labels + more[1]
    _keep_lr_axis_drawable(ax, lrs)
    schedule = result.settings.for_schedule
    legend_title = {"one_cycle": "LRs for a one-cycle peak", "constant": "LRs for a constant LR"}
    ax.legend(handles, labels, loc="best", fontsize="small",
              title=legend_title.get(schedule), title_fontsize="small")
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax


FRAMES = ("informative", "all")
HEADROOM = 0.3
"""The informative frame reaches this share of the loss's fall above its start."""


def informative_limits(drawn: np.ndarray, curve: np.ndarray) -> tuple[float, float] | None:
    """``(bottom, top)`` of the informative frame: from the lowest finite value
    ``drawn`` to :data:`HEADROOM` of the fall of ``curve`` (the smoothed loss) above
    where it started (or the highest drawn value, when that is lower), with a 5%
    margin; None without two finite values."""
    finite = drawn[np.isfinite(drawn)]
    along = curve[np.isfinite(curve)]
    if len(finite) < 2 or len(along) < 1:
        return None
    low, high = float(finite.min()), float(finite.max())
    start = float(np.median(along[: max(1, len(along) // 10)]))
    lowest = float(along.min())
    top = min(high, start + HEADROOM * (start - lowest)) if start > lowest else high
    top = max(top, start)
    margin = 0.05 * (top - low) or 0.05 * max(abs(top), 1.0)
    return low - margin, top + margin


def _frame(ax: Any, drawn: np.ndarray, curve: np.ndarray, frame: str) -> None:
    """Set the y-limits; note how high a clipped tail of the curve goes."""
    limits = informative_limits(drawn, curve)
    if limits is None:
        return
    if frame == "all":
        finite = drawn[np.isfinite(drawn)]
        low, high = float(finite.min()), float(finite.max())
        margin = 0.05 * (high - low) or 0.05 * max(abs(high), 1.0)
        ax.set_ylim(low - margin, high + margin)
        return
    ax.set_ylim(*limits)
    finite = curve[np.isfinite(curve)]
    peak = float(finite.max()) if len(finite) else limits[1]
    if peak > limits[1]:
        ax.annotate(f"clipped: the smoothed loss rises to {peak:.3g}", xy=(0.99, 0.98),
                    xycoords="axes fraction", ha="right", va="top", fontsize="small",
                    color="0.35")


def check_plot_file(path: Any, name: str = "path") -> None:
    """``path`` names a file (not a folder) in a folder that exists, with a suffix
    matplotlib writes (``.png``, ``.pdf``, ``.svg``...): without one, matplotlib
    would silently save ``path + ".png"`` instead."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a file path, got {type(path).__name__}")
    shown = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{name} {shown!r} is a folder; give a file path in it, e.g. its "
                         "'lr_find.png'")
    folder = os.path.dirname(os.path.abspath(shown))
    if not os.path.isdir(folder):
        raise ValueError(f"{name} {shown!r}: its folder {folder!r} does not exist")
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = os.path.splitext(shown)[1].lower().lstrip(".")
    supported = sorted(FigureCanvasBase.get_supported_filetypes())
    if suffix not in supported:
        got = f"'.{suffix}'" if suffix else "none"
        raise ValueError(f"{name} {shown!r} needs a file suffix matplotlib writes (one of "
                         f"{', '.join(supported)}), got {got}")


def _keep_lr_axis_drawable(ax: Any, lrs: np.ndarray) -> None:
    """With no finite point drawn (every loss non-finite), frame the x-axis on the
    LRs: matplotlib's fallback limits can be at or below zero (an all-NaN band does
    that), which a log axis cannot draw or save."""
    if np.all(np.isfinite(ax.dataLim.intervalx)):
        return
    low, high = float(np.min(lrs)), float(np.max(lrs))
    if low == high:  # one point: a decade around it
        low, high = low / 10**0.5, high * 10**0.5
    ax.set_xlim(low, high)


def _draw_ensemble(ax: Any, result: Any, shown: slice) -> None:
    """Every sweep faint, and the interquartile band of the smoothed curves."""
    ensemble = result.ensemble
    lrs = result.lrs[shown]
    for row in ensemble.sweep_smoothed[:, : len(result.lrs)]:
        ax.plot(lrs, row[shown], color="C0", alpha=0.25, linewidth=0.8)
    ax.fill_between(lrs, ensemble.band_low[shown], ensemble.band_high[shown], color="C0",
                    alpha=0.2, label=f"interquartile band of {ensemble.num_sweeps} sweeps")


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
    if search.measured_lr is not None and search.measured_lr != search.lr:
        added.append(ax.axvline(search.measured_lr, color="C3", linewidth=1, linestyle="--",
                                label=f"best of the {search.measured_horizon}-step runs: "
                                f"{search.measured_lr:.2e}"))
    if search.lr is not None:
        added.append(ax.axvline(search.lr, color="C3", linewidth=1.5,
                                label=f"search: {search.lr:.2e} ({search.schedule}, "
                                f"{search.training_steps} steps)"))
    handles, labels = scores_ax.get_legend_handles_labels()
    return added + handles, [artist.get_label() for artist in added] + labels
