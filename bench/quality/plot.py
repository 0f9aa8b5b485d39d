"""The regret-versus-cost plot of the at-cost comparison (bench/quality_regret_cost.png).

One column per protocol. Top row: median regret against the median cost (optimizer
steps ``lr_find`` trained / the task's training steps T, log scale); bottom row:
the share of cases within 10% of the oracle against the same cost. The search's
three budgets are joined by a line; the finder-free references (each task's best
grid LR, one fixed LR for every task) are horizontal lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import ticker

STYLES: dict[str, dict[str, Any]] = {
    "classic": {"color": "tab:blue", "marker": "o"},
    "classic, shipped factor": {"color": "tab:cyan", "marker": "o", "fillstyle": "none"},
    "k_sweeps": {"color": "tab:green", "marker": "s"},
    "independent": {"color": "tab:purple", "marker": "D"},
    "search_1, shipped": {"color": "tab:red", "marker": "^", "fillstyle": "none"},
}
SEARCH_STYLE: dict[str, Any] = {"color": "tab:red", "marker": "^"}


def _points(entries: dict[str, Any], key: str) -> dict[str, tuple[float, float]]:
    """Per method, ``(median cost, value)`` with value the median regret or the share within."""
    out = {}
    for name, entry in entries.items():
        value = (entry["median_regret"] if key == "median_regret"
                 else entry["within_10pct"] / entry["cases"])
        out[name] = (entry["median_cost"], value)
    return out


def _panel(ax: Any, entries: dict[str, Any], key: str, references: list[tuple[str, float, str]],
           show_labels: bool) -> None:
    points = _points(entries, key)
    searches = [name for name, entry in entries.items() if entry["use"] == "search_loto"]
    for name, (cost, value) in points.items():
        if name in searches:
            continue
        ax.plot([cost], [value], linestyle="none", markersize=9, label=name,
                **STYLES.get(name, {"marker": "x"}))
    if searches:
        xs = [points[name][0] for name in searches]
        ys = [points[name][1] for name in searches]
        ax.plot(xs, ys, linewidth=1.8, markersize=9,
                label="search (0.3 T, 1 T, 3 T; LOTO exponent)", **SEARCH_STYLE)
        for name, x, y in zip(searches, xs, ys, strict=True):
            ax.annotate(name.removeprefix("search_") + " T", (x, y), textcoords="offset points",
                        xytext=(6, 6), fontsize=9, color=SEARCH_STYLE["color"])
    for label, value, style in references:
        ax.axhline(value, color="0.45", linestyle=style, linewidth=1.2, label=label)
    ax.set_xscale("log")
    ax.margins(x=0.12)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10.0, subs=(1.0, 3.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    if show_labels:
        ax.legend(fontsize=8.5, loc="best", framealpha=0.9)


def plot_regret_cost(results: dict[str, Any], path: Path) -> None:
    """Draw the comparison of ``results["at_cost"]`` (see the module) and save it to ``path``."""
    protocols = [p for p in results["settings"]["protocols"] if p in results["at_cost"]]
    figure, axes = plt.subplots(2, len(protocols), figsize=(6.2 * len(protocols), 8.4),
                                sharex=True, squeeze=False)
    cases = next(iter(results["at_cost"][protocols[0]].values()))["cases"]
    for column, protocol in enumerate(protocols):
        entries = results["at_cost"][protocol]
        baselines = results["baselines"][protocol]
        best, fixed = baselines["task_best"], baselines["fixed_loto"]
        top, bottom = axes[0, column], axes[1, column]
        _panel(top, entries, "median_regret", [
            ("each task's best grid LR (no finder)", best["median_regret"], "--"),
            ("one fixed LR for all tasks (no finder, LOTO)", fixed["median_regret"], ":"),
        ], show_labels=column == 0)
        _panel(bottom, entries, "within", [
            ("each task's best grid LR", best["within_10pct"] / best["cases"], "--"),
            ("one fixed LR for all tasks", fixed["within_10pct"] / fixed["cases"], ":"),
        ], show_labels=False)
        top.set_title(f"{protocol}: {cases} cases ({len(results['settings']['tasks'])} tasks "
                      f"x {len(results['settings']['seeds'])} seeds)")
        top.set_ylabel("median regret (val loss / oracle best - 1)")
        top.set_ylim(bottom=min(0.0, top.get_ylim()[0]))
        bottom.set_ylabel("share of cases within 10% of the oracle")
        bottom.set_ylim(0.0, 1.02)
        bottom.set_xlabel("cost: optimizer steps lr_find trained / training steps T "
                          "(median over cases)")
    figure.suptitle(f"LR suggestions: regret against cost (lrfind {results['versions']['lrfind']}"
                    f", search policy {results['versions'].get('search policy', '-')})",
                    fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
