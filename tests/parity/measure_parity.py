"""Measure the parity tolerances per case: the numbers of docs/parity.md.

    .venv/bin/python tests/parity/measure_parity.py --seeds 10            # the suite's cases
    .venv/bin/python tests/parity/measure_parity.py --seeds 10 --float64  # + torch float64
    .venv/bin/python tests/parity/measure_parity.py --seeds 10 --limits   # left out

For every case kind (the case id without its seed) it prints one markdown row: the
largest relative difference of the raw losses over all seeds, before the last 5
steps, over the last 5 but the stop step, and at the stop step; and in how many
seeds the stop step and every suggestion index were the same. ``--float64`` adds
the same three numbers for torch float32 against torch float64 (how far float32
rounding alone moves torch's own curve). ``--num-steps`` changes the sweep's length.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import torch
from parity_cases import SWEEP, Case, cases, run_jax, run_torch
from parity_checks import agreement


def limit_cases(seeds: tuple[int, ...]) -> dict[str, list[Case]]:
    """Conditioning problems left out of the suite."""
    return {
        "limits": [
            Case(model, optimizer, s)
            for model, optimizer in (
                ("mlp_tanh", "adam"), ("mlp_tanh", "adamw"),
                ("cnn_bn_relu", "sgd"), ("cnn_bn_relu", "sgd_momentum"),
                ("cnn_bn_conv_bias", "adam"), ("cnn_bn_conv_bias", "adamw"),
                ("transformer_final_ln", "adam"), ("transformer_final_ln", "adamw"),
            )
            for s in seeds
        ],
    }


def _curves(torch_result, other) -> tuple[float, float, float, bool]:
    """Before the last 5 steps, the last 5 but the stop step, the stop step; same stop."""
    length = min(len(torch_result.losses), len(other.losses))
    fit = agreement(torch_result.losses[:length], other.losses[:length], torch_result.stop_step)
    return fit.head, fit.tail, fit.stop, torch_result.stop_step == other.stop_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--limits", action="store_true")
    parser.add_argument("--num-steps", type=int, default=SWEEP["num_steps"])
    parser.add_argument("--group", action="append", help="only these groups")
    parser.add_argument("--model", action="append", help="only these models")
    args = parser.parse_args()
    torch.set_num_threads(1)
    SWEEP["num_steps"] = args.num_steps
    seeds = tuple(range(args.seeds))
    groups = limit_cases(seeds) if args.limits else cases(seeds)
    rows: dict[str, list[tuple]] = defaultdict(list)
    for name, group in groups.items():
        if args.group and name not in args.group:
            continue
        for case in group:
            if args.model and case.model not in args.model:
                continue
            torch_result, jax_result = run_torch(case), run_jax(case)
            head, tail, at_stop, same_stop = _curves(torch_result, jax_result)
            same_suggestions = same_stop and all(
                torch_result.suggestions[m].index == jax_result.suggestions[m].index
                for m in torch_result.suggestions
            )
            reference: tuple[float, ...] = (np.nan, np.nan, np.nan)
            if args.float64:
                exact = run_torch(case, torch.float64)
                reference = _curves(exact, torch_result)[:3]
            rows[case.kind].append(
                (head, tail, at_stop, same_stop, same_suggestions, *reference)
            )
            print(f"{case.id}: {head:.1e} {tail:.1e} {at_stop:.1e} stop "
                  f"{torch_result.stop_step}/{jax_result.stop_step} f64 {reference}",
                  file=sys.stderr, flush=True)
    header = ("| case | before the last 5 | last 5 but the stop | stop step | same stop "
              "| same suggestions |")
    if args.float64:
        header += " torch f32 vs f64: before | last 5 but the stop | stop step |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for kind, values in rows.items():
        table = np.array(values, dtype=np.float64)
        count = len(values)
        worst = [f"{np.nanmax(table[:, column]):.1e}" for column in (0, 1, 2)]
        line = (f"| {kind} | {' | '.join(worst)} | {int(table[:, 3].sum())}/{count} | "
                f"{int(table[:, 4].sum())}/{count} |")
        if args.float64:
            exact = [f"{np.nanmax(table[:, column]):.1e}" for column in (5, 6, 7)]
            line += f" {' | '.join(exact)} |"
        print(line)


if __name__ == "__main__":
    main()
