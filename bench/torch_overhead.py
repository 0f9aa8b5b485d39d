"""How much does ``lrfind_torch.lr_find`` cost over the bare training steps it runs?

Runs the same N steps of a 784-256-10 MLP (batch 64, Adam) as a hand-written loop
and as ``lr_find`` in one process, alternating, for several rounds, and reports the
median per-step times and their ratio, with the machine and versions. The stop
rule is disabled (a huge ``diverge_factor``) so both run all N steps.

    python bench/torch_overhead.py [--steps 300] [--rounds 7] [--device cpu] [--threads N]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_facts

from lrfind_core.schedules import exponential_schedule
from lrfind_torch import Settings, TorchOptions, lr_find


def make_setup(
    steps: int, device: torch.device
) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
    """A 784-256-10 MLP, Adam, and a shuffling loader with exactly ``steps`` batches of 64."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = torch.randn(steps * 64, 784)
    targets = torch.randint(0, 10, (steps * 64,))
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=64, shuffle=True)
    return model, optimizer, loader


START_LR, END_LR = 1e-6, 1e-3


def bare_loop(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, device: torch.device
) -> float:
    """The hand-written loop over the same LRs: seconds for one pass over ``loader``."""
    lrs = exponential_schedule(START_LR, END_LR, len(loader)).tolist()
    started = time.perf_counter()
    for lr, (inputs, targets) in zip(lrs, loader, strict=False):
        inputs, targets = (
            inputs.to(device, non_blocking=True),
            targets.to(device, non_blocking=True),
        )
        optimizer.param_groups[0]["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def finder(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    steps: int,
    device: torch.device,
) -> tuple[float, float]:
    """``lr_find`` over the same steps: (seconds for the whole call, seconds of the sweep loop)."""
    started = time.perf_counter()
    result = lr_find(
        model,
        optimizer,
        loader,
        nn.functional.cross_entropy,
        num_steps=steps,
        start_lr=START_LR,
        end_lr=END_LR,
        settings=Settings(diverge_factor=1e12),
        options=TorchOptions(progress=False, device=device),
    )
    total = time.perf_counter() - started
    assert len(result.lrs) == steps, result
    return total, result.meta["run_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads (cpu default: 1, as in bench/throughput.py: on a shared "
        "machine torch's OpenMP threads spin whenever a neighbour holds a core)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    threads = args.threads or (1 if device.type == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    model, optimizer, loader = make_setup(args.steps, device)
    initial_model = copy.deepcopy(model.state_dict())
    initial_optimizer = copy.deepcopy(optimizer.state_dict())

    def reset() -> None:
        """Both contenders start from the same weights, optimizer state and data order."""
        model.load_state_dict(initial_model)
        optimizer.load_state_dict(initial_optimizer)
        torch.manual_seed(1)

    reset()
    bare_loop(model, optimizer, loader, device)  # warm-up (allocator, kernels)
    reset()
    finder(model, optimizer, loader, args.steps, device)
    bare, whole, sweep = [], [], []
    for round_index in range(args.rounds):
        # Alternate which contender goes first, so neither always runs on a warmer cache.
        for contender in ("bare", "finder") if round_index % 2 == 0 else ("finder", "bare"):
            reset()
            if contender == "bare":
                bare.append(bare_loop(model, optimizer, loader, device))
            else:
                total, loop = finder(model, optimizer, loader, args.steps, device)
                whole.append(total)
                sweep.append(loop)
    per_step = {
        name: statistics.median(values) / args.steps * 1e3
        for name, values in (("bare_ms", bare), ("lr_find_ms", whole), ("sweep_ms", sweep))
    }
    report = {
        "benchmark": "torch_overhead",
        "workload": "MLP 784-256-10, batch 64, Adam",
        "steps": args.steps,
        "rounds": args.rounds,
        "device": str(device),
        "torch_threads": threads,
        "per_step": per_step,
        "ratio_lr_find_to_bare": statistics.median(
            w / b for w, b in zip(whole, bare, strict=False)
        ),
        "ratio_sweep_to_bare": statistics.median(s / b for s, b in zip(sweep, bare, strict=False)),
        # The fastest round of each: the machine's quiet moments (a shared machine's
        # per-step time can jump by 2x for seconds at a time, for both contenders).
        "best_ratio_lr_find_to_bare": min(whole) / min(bare),
        "seconds": {"bare": bare, "lr_find": whole, "sweep": sweep},
        "machine": machine_facts(("numpy", "torch")),
    }
    print(json.dumps(report, indent=1))
    print()
    print("| contender | median ms/step | median ratio to bare | best / best |")
    print("|---|---|---|---|")
    print(f"| bare loop | {per_step['bare_ms']:.3f} | 1.000 | 1.000 |")
    whole_ratio, sweep_ratio = report["ratio_lr_find_to_bare"], report["ratio_sweep_to_bare"]
    best = report["best_ratio_lr_find_to_bare"]
    print(f"| lr_find (whole call) | {per_step['lr_find_ms']:.3f} | {whole_ratio:.3f} | "
          f"{best:.3f} |")
    print(f"| lr_find (sweep loop) | {per_step['sweep_ms']:.3f} | {sweep_ratio:.3f} | - |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
