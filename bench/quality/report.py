"""The markdown section "## Suggestion quality" of bench/RESULTS.md, from the results JSON."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

HEADING = "## Suggestion quality"


def _lr(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _signed(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _unsigned(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _factor(value: float) -> str:
    return f"{value:.3g} (10^{np.log10(value):+.2f})"


def budgets(settings: dict[str, Any]) -> dict[str, int]:
    """Each task's steps per run (results before per-task budgets had one ``budget``)."""
    if "budgets" in settings:
        return settings["budgets"]
    return dict.fromkeys(settings["tasks"], settings["budget"])


def oracle_table(results: dict[str, Any]) -> list[str]:
    """The markdown table of each task's optima (needs ``oracle`` and ``settings``)."""
    oracle, steps = results["oracle"], budgets(results["settings"])
    lines = [
        "| task | steps | one_cycle best LR | its val loss | constant best LR | its val loss | "
        "one_cycle / constant (decades) | untrained val loss | optima inside grid |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in results["settings"]["tasks"]:
        cycle, constant = oracle["one_cycle"][task], oracle["constant"][task]
        apart = np.log10(cycle["mean_best_lr"] / constant["mean_best_lr"])
        inside = "yes" if cycle["inside_grid"] and constant["inside_grid"] else "**no**"
        lines.append(
            f"| {task} | {steps[task]} | {_lr(cycle['mean_best_lr'])} | "
            f"{cycle['mean_best_loss']:.4f} | "
            f"{_lr(constant['mean_best_lr'])} | {constant['mean_best_loss']:.4f} | "
            f"{apart:+.2f} | {np.mean(cycle['caps']):.3f} | {inside} |"
        )
    return lines


def _evaluation_table(results: dict[str, Any], protocol: str) -> list[str]:
    evaluation = results["evaluation"][protocol]
    lines = [
        "| method | mode | raw: median regret | raw: ≤10% | raw: median offset (dec) | "
        "factor (all tasks) | LOTO: median regret | LOTO: ≤10% | LOTO: mean regret | "
        "LOTO: median offset (dec) | offset IQR (dec) | no suggestion |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    candidates = set(results["settings"].get("candidates", ()))
    for mode, methods in evaluation.items():
        for method, entry in methods.items():
            raw, loto = entry["raw"], entry["calibrated_loto"]
            name = f"{method} (candidate)" if method in candidates else method
            lines.append(
                f"| {name} | {mode} | {raw['median_regret']:.3f} | "
                f"{raw['within_10pct']}/{raw['cases']} | {_signed(raw['median_log10_offset'])} | "
                f"{_factor(entry['factor_all_tasks'])} | {loto['median_regret']:.3f} | "
                f"{loto['within_10pct']}/{loto['cases']} | {loto['mean_regret']:.3f} | "
                f"{_signed(loto['median_log10_offset'])} | "
                f"{_unsigned(raw['iqr_log10_offset'])} | {raw['missing']} |"
            )
    baselines = results["baselines"][protocol]
    best, fixed = baselines["task_best"], baselines["fixed_loto"]
    lines.append(
        f"| *each task's best grid LR (mean over seeds)* | - | - | - | - | - | "
        f"{best['median_regret']:.3f} | {best['within_10pct']}/{best['cases']} | "
        f"{best['mean_regret']:.3f} | - | - | - |"
    )
    lines.append(
        f"| *one fixed LR for all tasks, no finder (LOTO; all tasks: "
        f"{_lr(baselines['fixed_all_tasks_lr'])})* | - | - | - | - | - | "
        f"{fixed['median_regret']:.3f} | {fixed['within_10pct']}/{fixed['cases']} | "
        f"{fixed['mean_regret']:.3f} | - | - | - |"
    )
    return lines


def _factor_table(results: dict[str, Any]) -> list[str]:
    protocols = results["settings"]["protocols"]
    lines = [
        "| method | mode | " + " | ".join(protocols) + " |",
        "|---|---|" + "---|" * len(protocols),
    ]
    first = results["evaluation"][protocols[0]]
    for mode, methods in first.items():
        for method in methods:
            factors = [
                _factor(results["evaluation"][protocol][mode][method]["factor_all_tasks"])
                for protocol in protocols
            ]
            lines.append(f"| {method} | {mode} | " + " | ".join(factors) + " |")
    return lines


def _best_lines(results: dict[str, Any]) -> list[str]:
    cycle, constant = results["oracle"]["one_cycle"], results["oracle"]["constant"]
    apart = [
        np.log10(cycle[task]["mean_best_lr"] / constant[task]["mean_best_lr"])
        for task in results["settings"]["tasks"]
    ]
    lines = [
        f"- The one_cycle optimum lies {np.median(apart):+.2f} decades above the constant one "
        f"(median over tasks; from {min(apart):+.2f} to {max(apart):+.2f})."
    ]
    for protocol, modes in results["evaluation"].items():
        entries = [
            (mode, method, entry)
            for mode, methods in modes.items()
            for method, entry in methods.items()
        ]
        for kind, label in (("raw", "raw"), ("calibrated_loto", "calibrated (LOTO)")):
            mode, method, entry = min(
                entries,
                key=lambda item, kind=kind: (
                    item[2][kind]["median_regret"], -item[2][kind]["within_10pct"]
                ),
            )
            stats = entry[kind]
            lines.append(
                f"- {protocol}, {label}: lowest median regret **{method} / {mode}** "
                f"({stats['median_regret']:.3f}, {stats['within_10pct']}/{stats['cases']} "
                f"within 10%)."
            )
    return lines


def markdown_section(results: dict[str, Any]) -> str:
    """The whole "## Suggestion quality" section (heading included), ending in a newline."""
    settings, timings, machine = results["settings"], results["timings"], results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in results["versions"].items())
    grid = settings["grid"]
    decades = np.log10(grid[-1] / grid[0])
    per_decade = (len(grid) - 1) / decades
    modes = "; ".join(
        f"`{mode}` ({description})"
        for mode, description in settings["finder_mode_descriptions"].items()
    )
    steps = budgets(settings)
    tasks = "\n".join(
        f"  - `{task}` ({steps[task]} steps): {description}"
        for task, description in results["task_descriptions"].items()
    )
    budget_text = (
        f"{next(iter(steps.values()))} optimizer steps" if len(set(steps.values())) == 1
        else "the task's budget of optimizer steps (listed with the tasks)"
    )
    lines = [
        HEADING,
        "",
        f"Generated by `python bench/suggestion_quality.py` on {results['date']} "
        f"({timings['wall_s'] / 60:.1f} min wall with {settings['workers']} workers, "
        f"{timings['runs_trained']} runs trained this time, the rest from the cache; "
        f"{timings['train_cpu_s_all_runs_used'] / 60:.1f} CPU-min of training in all the "
        "runs used). "
        f"Machine: {machine['cpu']}, {machine['cpu_count']} CPUs, {machine['platform']}, "
        f"Python {machine['python']}. Versions: {versions}.",
        "",
        "**What is measured.** For each task, seed and protocol a fresh model is trained "
        f"for {budget_text} (batch {settings['batch_size']}) at each of "
        f"{len(grid)} LRs from {grid[0]:.3g} to {grid[-1]:.3g} ({per_decade:.3g} per decade); "
        "the lowest final validation loss over that grid is the oracle's best for the case "
        "(task x seed; the seed sets the initial weights and the data order). Protocols: "
        "`one_cycle` = `OneCycleLR(max_lr=lr, total_steps=budget)` with torch's defaults, "
        "stepped per batch; `constant` = the LR throughout. A run that goes non-finite or "
        "ends above the untrained model's validation loss scores that untrained loss (the "
        f"cap). `lr_find` (progress off) runs on a fresh model of each case in three modes: "
        f"{modes}. Each method's suggestion (`result.suggest(method).lr`) is then trained "
        "under each protocol with the case's seed. Tasks "
        f"({len(settings['tasks'])}, seeds {settings['seeds']}, "
        f"{len(settings['tasks']) * len(settings['seeds'])} cases):",
        tasks,
        "",
        "**How to read.** Regret = val loss at the suggestion / oracle best - 1 (0.10: a "
        "10% higher loss than the best grid LR for that case; slightly negative when the "
        "suggestion beats every grid point; a missing suggestion scores the cap). "
        "Offset = log10(suggested LR / the case's oracle-best LR), in decades, signed "
        "(-1: ten times too small). *Raw* trains the suggestion as it is. *Factor* = "
        "10^median(log10(oracle-best / suggested)) over all cases, rounded to a quarter "
        "decade: the multiplier the library would ship for that method, mode and "
        "protocol. *LOTO* trains suggestion x the factor fit on the other tasks only "
        "(leave one task out), so no case is scored with a factor fit on itself. "
        "Mean regret shows the tail (a diverged run costs the whole cap). Offset IQR "
        "(raw) is the spread of the offsets across cases: the part no factor can remove. "
        "Rows marked *(candidate)* are rules defined in bench/quality/rules.py, not in "
        "the library. The two rows in italics need no finder: each task at its own best "
        "grid LR (the floor; seed noise keeps it above 0), and one LR for every task "
        "chosen on the other tasks (what a fixed default gets).",
        "",
        "### Oracle optima (mean curve over seeds)",
        "",
        *oracle_table(results),
        "",
    ]
    for protocol in settings["protocols"]:
        lines += [f"### Suggestions under `{protocol}`", "", *_evaluation_table(results, protocol),
                  ""]
    lines += [
        "### Factors fit on all tasks (what the library would ship)",
        "",
        *_factor_table(results),
        "",
        "### Summary",
        "",
        *_best_lines(results),
        "- With this many tasks and seeds, gaps of a few hundredths in median regret or of "
        "one to three cases within 10% are within seed noise: even each task's own best "
        "grid LR misses 10% on some cases (row in italics above).",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Put ``section`` into the markdown file at ``path``, replacing an earlier one.

    The old section runs from its heading to the next level-2 heading (or the end).
    A missing file is created with a title.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
