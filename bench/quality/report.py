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


def _cost(entry: dict[str, Any]) -> str:
    return (f"{entry['median_cost']:.2f} ({entry['min_cost']:.2f}-{entry['max_cost']:.2f})")


def at_cost_table(results: dict[str, Any]) -> list[str]:
    """Every method at its cost, both protocols: regret statistics and steps / T."""
    lines = [
        "| protocol | method | median regret | ≤10% | mean regret | worst regret (case) | "
        "cost: steps / T, median (range) |",
        "|---|---|---|---|---|---|---|",
    ]
    for protocol, methods in results["at_cost"].items():
        for name, entry in methods.items():
            lines.append(
                f"| {protocol} | {name} | {entry['median_regret']:.3f} | "
                f"{entry['within_10pct']}/{entry['cases']} | {entry['mean_regret']:.3f} | "
                f"{entry['worst_regret']:.3f} ({entry['worst_case']}) | {_cost(entry)} |"
            )
        baselines = results["baselines"][protocol]
        for label, stats in (("*each task's best grid LR*", baselines["task_best"]),
                             ("*one fixed LR for all tasks (LOTO)*", baselines["fixed_loto"])):
            lines.append(
                f"| {protocol} | {label} | {stats['median_regret']:.3f} | "
                f"{stats['within_10pct']}/{stats['cases']} | {stats['mean_regret']:.3f} | - | "
                "0 (no finder) |"
            )
    return lines


def group_table(results: dict[str, Any]) -> list[str]:
    """Per task group and method, median regret and cases within 10% under each protocol."""
    protocols = list(results["at_cost"])
    groups = results["settings"].get("task_groups", {})
    header = "| group | method | " + " | ".join(
        f"{protocol}: median regret | {protocol}: ≤10%" for protocol in protocols) + " |"
    lines = [header, "|---|---|" + "---|---|" * len(protocols)]
    first = results["at_cost"][protocols[0]]
    for group, members in groups.items():
        if not members:
            continue
        for name in first:
            cells = []
            for protocol in protocols:
                stats = results["at_cost"][protocol][name]["groups"].get(group)
                cells.append("- | -" if stats is None else
                             f"{stats['median_regret']:.3f} | "
                             f"{stats['within_10pct']}/{stats['cases']}")
            lines.append(f"| {group} | {name} | " + " | ".join(cells) + " |")
    return lines


def search_choice_table(results: dict[str, Any]) -> list[str]:
    """Where the searches' LRs lie: offsets from the oracle, and choices at an edge."""
    lines = [
        "| protocol | method | median offset (dec) | offset IQR (dec) | abs(offset) > 0.5 dec | "
        "at an edge of its last rung | at the lowest / highest of all its candidates | "
        "budget raised to the minimum | over budget |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for protocol, methods in results["at_cost"].items():
        for name, entry in methods.items():
            if not entry["use"].startswith("search"):
                continue
            rows = entry["rows"]
            offsets = np.array([row["log10_offset"] for row in rows
                                if row["log10_offset"] is not None])
            far = int(np.sum(np.abs(offsets) > 0.5))
            raised = sum(row["budget_steps"] > row["budget_asked"] for row in rows)
            quartiles = np.percentile(offsets, [25, 75]) if len(offsets) else [np.nan] * 2

            def count(field: str, rows: list[dict[str, Any]] = rows) -> int:
                return sum(bool(row[field]) for row in rows)

            lines.append(
                f"| {protocol} | {name} | {_signed(entry['median_log10_offset'])} | "
                f"{quartiles[1] - quartiles[0]:.2f} | {far}/{len(rows)} | "
                f"{count('at_edge_of_last_rung')}/{len(rows)} | "
                f"{count('at_bottom_of_all')} / {count('at_top_of_all')} | "
                f"{raised}/{len(rows)} | {count('over_budget')}/{len(rows)} |"
            )
    return lines


def _at_cost_section(results: dict[str, Any]) -> list[str]:
    settings = results["settings"]
    search = settings.get("search", {})
    methods = results["at_cost"][next(iter(results["at_cost"]))]
    described = "; ".join(f"*{name}*: {entry['description']}" for name, entry in methods.items())
    groups = "; ".join(f"*{name}*: {', '.join(members)}"
                       for name, members in settings.get("task_groups", {}).items() if members)
    lines = [
        "### Every method at its cost",
        "",
        f"Each way of getting an LR, with the optimizer steps `lr_find` trained to get it "
        "(`result.meta[\"steps_trained\"]`: every sweep, run and candidate; validation "
        "forward passes are not counted) as a multiple of the task's training steps T. "
        f"Curve modes use the `{settings.get('at_cost_rule', 'minimum')}` rule (the library's "
        "default); their LOTO rows are the same cases as the per-rule tables below. "
        "The search runs once per case and protocol with `for_schedule=protocol`, "
        "`training_steps=T`, `budget_steps=round(f T)` (raised to the library's minimum "
        f"budget, {search.get('minimum_budget', '-')} steps, when below it) and the task's "
        "validation set as `val_data` (batches of 64; the search averages the first 32). "
        "Its LR is the best LR of its last rung's runs (h steps, at most T), scaled to T by "
        "`(h / T) ** c` (lrfind_core/horizon.py). The search rows use `c` fit on the other "
        "tasks by the mean of log(1 + regret) read off the oracle grids (LOTO; "
        "bench/quality/horizon_fit.py; per held-out task: "
        f"{_exponents(search.get('horizon_exponents_loto', {}))}; on every task: "
        f"{search.get('horizon_exponent_fit_all_tasks', '-')}). *search_1, shipped* trains "
        "the LR lrfind returns, with the shipped "
        f"`c = {search.get('horizon_exponent_shipped', '-')}`, which was chosen on these same "
        "tasks (by median regret and share within 10%, on a first run of the search before "
        "rung 1 was moved by the correction): in-sample. "
        "Methods: " + described + ".",
        "",
    ]
    if results.get("plot"):
        lines += [f"![median regret and share within 10% against cost]({results['plot']})", ""]
    lines += [*at_cost_table(results), ""]
    if groups:
        lines += [f"By task group ({groups}):", "", *group_table(results), ""]
    if any(entry["use"].startswith("search") for entry in methods.values()):
        lines += [
            "Where the searches' LRs lie (offset = log10(search LR / the case's oracle-best LR); "
            "an edge choice: the measured LR, before the horizon scaling, is the best candidate "
            "itself, at the end of the LRs it ran):",
            "",
            *search_choice_table(results),
            "",
        ]
    return lines


def _spread(values: list[float], signed: bool = False) -> str:
    """Median, interquartile range and extremes of ``values`` (decades)."""
    array = np.asarray(values, dtype=np.float64)
    low, high = np.percentile(array, [25, 75])
    form = "{:+.2f}" if signed else "{:.2f}"
    return (f"median {form.format(np.median(array))} (IQR {form.format(low)} to "
            f"{form.format(high)}; {form.format(array.min())} to {form.format(array.max())})")


def _questions_section(results: dict[str, Any]) -> list[str]:
    """The range test's three questions, answered from this run's finder results."""
    finder, rule = results["finder"], results["settings"].get("at_cost_rule", "minimum")
    entries = [seeds[seed] for seeds in finder.values() for seed in seeds]
    spreads = [entry["k_sweeps"]["spread_decades"][rule] for entry in entries
               if "k_sweeps" in entry and entry["k_sweeps"].get("spread_decades")
               and entry["k_sweeps"]["spread_decades"].get(rule) is not None]
    shifts = [np.log10(entry["independent"]["suggestions"][rule]
                       / entry["classic"]["suggestions"][rule])
              for entry in entries if "independent" in entry and "classic" in entry
              and entry["independent"]["suggestions"].get(rule)
              and entry["classic"]["suggestions"].get(rule)]
    if not spreads and not shifts:
        return []
    lines = ["### The range test's questions, measured", ""]
    if spreads:
        lines.append(
            f"- **LR or batch?** Five sweeps of a case from the same start on different "
            f"batches (`k_sweeps`) put their `{rule}` readings "
            f"{_spread(spreads)} decades apart (max - min of the five, over "
            f"{len(spreads)} cases): that much of one curve's reading is batch noise.")
    if shifts:
        lines.append(
            f"- **LR or learning progress?** Runs at each LR from the same start "
            f"(`independent`) put the `{rule}` reading {_spread(shifts, signed=True)} decades "
            f"from the classic sweep's (log10 independent / classic, {len(shifts)} cases): "
            "the classic curve's low point at a high LR also carries what was learned at "
            "the lower ones.")
    lines += [
        "- **Which point is best?** None of the curve's points by itself: the best LR moves "
        "with the schedule (the oracle table above), with the length of the training (the "
        "search's horizon correction) and with overfitting, which only a validation loss "
        "shows. The at-cost table shows what measuring them is worth.",
        "",
    ]
    return lines


def _exponents(by_task: dict[str, float]) -> str:
    """The LOTO exponents as "min to max (median)"."""
    if not by_task:
        return "-"
    values = np.array(list(by_task.values()))
    return f"{values.min():g} to {values.max():g} (median {np.median(values):g})"


def _at_cost_lines(results: dict[str, Any]) -> list[str]:
    """Per protocol, the method of the at-cost table with the lowest median regret."""
    lines = []
    for protocol, methods in results.get("at_cost", {}).items():
        name, entry = min(methods.items(), key=lambda item: (
            item[1]["median_regret"], -item[1]["within_10pct"], item[1]["median_cost"]))
        lines.append(
            f"- {protocol}, at its cost: lowest median regret **{name}** "
            f"({entry['median_regret']:.3f}, {entry['within_10pct']}/{entry['cases']} within "
            f"10%, worst {entry['worst_regret']:.3f}, cost {entry['median_cost']:.2f} T)."
        )
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
        f"cap). `lr_find` (progress off) runs on a fresh model of each case in "
        f"{len(settings['finder_mode_descriptions'])} modes: "
        f"{modes}. In a curve mode (classic, k_sweeps, independent) each method's suggestion "
        "as read off the curve (`result.suggest(method, for_schedule=\"curve\").lr`) is then "
        "trained under each protocol with the case's seed; a search's LR under the protocol "
        "it searched for. Tasks "
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
    if results.get("at_cost"):
        lines += _at_cost_section(results)
    lines += _questions_section(results)
    evaluated = [protocol for protocol in settings["protocols"]
                 if results["evaluation"].get(protocol)]
    for protocol in evaluated:
        lines += [f"### Suggestions under `{protocol}`", "", *_evaluation_table(results, protocol),
                  ""]
    if evaluated:
        lines += [
            "### Factors fit on all tasks (what the library would ship)",
            "",
            *_factor_table(results),
            "",
        ]
    lines += [
        "### Summary",
        "",
        *_at_cost_lines(results),
        *(_best_lines(results) if evaluated else []),
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
