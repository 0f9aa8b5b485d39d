"""What does ``mode="search"`` cost over the training steps it runs?

For each backend, ``lr_find(mode="search")`` runs on the throughput benchmark's
MLP (784-256-10, Adam, batch 64; ``bench/throughput_models.py``) with a planned
training of ``--training-steps`` steps and a budget of ``--budget`` times that.
Its wall time is set against a bare loop that trains the same number of optimizer
steps (``meta["steps_trained"]``: the bracketing sweep and every candidate run)
and makes the same validation passes (one per candidate, over the same
validation batches), in the same process, the two alternating for
``--rounds`` rounds. The ratio is the median over rounds of (search / bare).

* torch: the bare loop sets the LR, steps the optimizer and reads nothing; the
  search also snapshots, restores the model, optimizer and RNG before every
  candidate, reads the losses every step (the CPU's ``sync_every``) and plans.
* JAX: the bare loop is one jitted train step dispatched per step with a
  ``float(loss)`` per step (the hand-written loop of ``bench/throughput.py``);
  the search compiles one program per rung shape (``compile_time_s``, reported
  apart; the ratio is given with and without it), and runs each rung's
  candidates vmapped.

    python bench/search_overhead.py [--training-steps 300] [--budget 1.0] [--rounds 5]
        [--json bench/search_overhead_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_facts
from throughput_models import jax_workload, torch_workload

VAL_BATCHES = 8


def torch_pair(training_steps: int, budget: int) -> tuple[Any, Any]:
    """``search()`` and ``bare(steps, validations)`` for the torch MLP."""
    import torch

    from lrfind_torch import TorchOptions, lr_find

    torch.set_num_threads(1)
    work = torch_workload("mlp", training_steps + VAL_BATCHES, "cpu", 1e-3)
    train, val = work.batches[:training_steps], work.batches[training_steps:]
    initial = {key: value.clone() for key, value in work.model.state_dict().items()}

    def search() -> dict[str, Any]:
        result = lr_find(work.model, work.optimizer, train, work.loss_fn, mode="search",
                         val_data=val, training_steps=training_steps, budget_steps=budget,
                         options=TorchOptions(progress=False))
        return {"steps": result.meta["steps_trained"], "validations": len(result.search.lrs),
                "lr": result.search.lr}

    def bare(steps: int, validations: int) -> None:
        work.model.load_state_dict(initial)
        optimizer = torch.optim.Adam(work.model.parameters(), lr=1e-3)
        for index in range(steps):
            inputs, targets = train[index % len(train)]
            optimizer.zero_grad(set_to_none=True)
            work.loss_fn(work.model(inputs), targets).backward()
            optimizer.step()
        with torch.no_grad():
            for _ in range(validations):
                sum(float(work.loss_fn(work.model(x), y)) for x, y in val)
        work.model.load_state_dict(initial)

    return search, bare


def jax_pair(training_steps: int, budget: int) -> tuple[Any, Any]:
    """``search()`` and ``bare(steps, validations)`` for the JAX MLP."""
    import jax
    import optax

    from lrfind_jax import JaxOptions, lr_find

    work = jax_workload("mlp", training_steps + VAL_BATCHES)
    inputs, labels = work.data
    train = (inputs[:training_steps], labels[:training_steps])
    val = (inputs[training_steps:], labels[training_steps:])
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

    def search() -> dict[str, Any]:
        result = lr_find(work.params, optimizer, train, work.loss_fn, mode="search",
                         val_data=val, training_steps=training_steps, budget_steps=budget,
                         options=JaxOptions(progress=False))
        return {"steps": result.meta["steps_trained"], "validations": len(result.search.lrs),
                "lr": result.search.lr, "compile_time_s": result.meta["compile_time_s"]}

    @jax.jit
    def step(params: Any, state: Any, batch: Any) -> tuple[Any, Any, Any]:
        loss, grads = jax.value_and_grad(work.loss_fn)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    evaluate = jax.jit(lambda params, batch: work.loss_fn(params, batch))
    batches = [(train[0][i], train[1][i]) for i in range(training_steps)]
    val_batches = [(val[0][i], val[1][i]) for i in range(VAL_BATCHES)]

    def bare(steps: int, validations: int) -> None:
        params, state = work.params, optimizer.init(work.params)
        for index in range(steps):
            params, state, loss = step(params, state, batches[index % len(batches)])
            float(loss)
        for _ in range(validations):
            sum(float(evaluate(params, batch)) for batch in val_batches)

    return search, bare


def measure(name: str, pair: tuple[Any, Any], rounds: int) -> dict[str, Any]:
    """Warm both once, then alternate them for ``rounds`` rounds."""
    search, bare = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = search()  # compiles (JAX) and warms the caches
        bare(first["steps"], first["validations"])
        records = []
        for number in range(rounds):
            order = ("search", "bare") if number % 2 == 0 else ("bare", "search")
            seconds: dict[str, float] = {}
            facts: dict[str, Any] = {}
            for which in order:
                started = time.perf_counter()
                if which == "search":
                    facts = search()
                else:
                    bare(first["steps"], first["validations"])
                seconds[which] = time.perf_counter() - started
            records.append({**seconds, **facts})
    ratios = [record["search"] / record["bare"] for record in records]
    report: dict[str, Any] = {
        "backend": name,
        "steps_trained": first["steps"],
        "candidate_runs": first["validations"],
        "rounds": records,
        "ratio_search_to_bare": statistics.median(ratios),
        "ratios": ratios,
    }
    if "compile_time_s" in first:
        report["compile_time_s_first_call"] = first["compile_time_s"]
        without = [(record["search"] - record["compile_time_s"]) / record["bare"]
                   for record in records]
        report["ratio_without_compile"] = statistics.median(without)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-steps", type=int, default=300)
    parser.add_argument("--budget", type=float, default=1.0, help="budget / training steps")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    budget = round(args.budget * args.training_steps)
    started = time.perf_counter()
    reports = [
        measure("torch", torch_pair(args.training_steps, budget), args.rounds),
        measure("jax", jax_pair(args.training_steps, budget), args.rounds),
    ]
    out = {
        "format": "lrfind-bench-search-overhead",
        "settings": {"training_steps": args.training_steps, "budget_steps": budget,
                     "rounds": args.rounds, "val_batches": VAL_BATCHES,
                     "workload": "mlp 784-256-10, Adam, batch 64"},
        "machine": machine_facts(),
        "wall_s": time.perf_counter() - started,
        "backends": reports,
    }
    for report in reports:
        line = (f"{report['backend']}: {report['steps_trained']} steps, "
                f"{report['candidate_runs']} candidates; search / bare "
                f"{report['ratio_search_to_bare']:.3f}")
        if "ratio_without_compile" in report:
            line += f" ({report['ratio_without_compile']:.3f} without compiling)"
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
