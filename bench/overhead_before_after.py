"""What ``lr_find`` costs over the steps it runs, in microseconds, before and after a change.

A small model makes lrfind's own work (the shell, the per-step bookkeeping, the
host checks) a large part of each call, so that a change of a few microseconds
per step shows above the machine's noise. In each fresh process, for one
checkout of lrfind, the same 200 SGD steps of a 64-32-1 MLP (batch 16, MSE) run
as the bare loop and as ``lr_find`` (progress off, ``diverge_factor=1e12`` so
both run every step), alternating for 31 rounds after 3 warm-ups:

* torch (one thread): the bare loop sets the LR and steps, with no host read; from
  lr_find's ``meta["run_time_s"]`` (its runs, the snapshot and restore left out)
  come the **extra per step** ``(run_time - bare) / steps`` in us and the **fixed
  cost** ``call - run_time`` in ms (snapshot, restore, checks, judging);
* JAX: the floor is the bare step in one jitted ``lax.fori_loop`` over the stacked
  batches, with its optimizer state and LRs made once; the **overhead per call**
  is ``call - floor`` in ms (host work plus what the program adds).

Medians over the rounds of each process; the checkouts alternate for ``--pairs``
pairs of processes and the summary is the median over pairs.

    git worktree add /tmp/old_lrfind COMMIT
    python bench/overhead_before_after.py --old-root /tmp/old_lrfind --old-commit COMMIT \\
        [--pairs 3] [--json bench/overhead_before_after_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_facts

HERE = Path(__file__).resolve().parent.parent
STEPS, ROUNDS, WARMUPS = 200, 31, 3

TORCH_WORKER = r'''
import copy, json, statistics, sys, time, warnings
root, steps, rounds, warmups = sys.argv[1], *map(int, sys.argv[2:5])
sys.path.insert(0, root)
import torch
import lrfind_torch
from lrfind_core.schedules import exponential_schedule
from lrfind_torch import Settings, TorchOptions, lr_find
assert lrfind_torch.__file__.startswith(root), lrfind_torch.__file__
torch.set_num_threads(1)
warnings.simplefilter("ignore")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
batches = [(torch.randn(16, 64), torch.randn(16, 1)) for _ in range(steps)]
loss_fn = torch.nn.functional.mse_loss
weights, state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
lrs = exponential_schedule(1e-7, 1e-4, steps).tolist()
settings, options = Settings(diverge_factor=1e12), TorchOptions(progress=False)

def reset():
    model.load_state_dict(weights)
    optimizer.load_state_dict(state)

def bare():
    group = optimizer.param_groups[0]
    for lr, (inputs, target) in zip(lrs, batches):
        group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), target).backward()
        optimizer.step()

def finder():
    return lr_find(model, optimizer, batches, loss_fn, num_steps=steps, start_lr=1e-7,
                   end_lr=1e-4, settings=settings, options=options)

extra, fixed = [], []
for number in range(warmups + rounds):
    reset()
    started = time.perf_counter()
    bare()
    bare_s = time.perf_counter() - started
    reset()
    started = time.perf_counter()
    result = finder()
    call_s = time.perf_counter() - started
    assert result.meta["steps_trained"] == steps
    if number >= warmups:
        run_s = result.meta["run_time_s"]
        extra.append((run_s - bare_s) / steps * 1e6)
        fixed.append((call_s - run_s) * 1e3)
print(json.dumps({"torch_extra_us_per_step": statistics.median(extra),
                  "torch_fixed_ms_per_call": statistics.median(fixed)}))
'''

JAX_WORKER = r'''
import json, statistics, sys, time, warnings
root, steps, rounds, warmups = sys.argv[1], *map(int, sys.argv[2:5])
sys.path.insert(0, root)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
import lrfind_jax
from lrfind_core.schedules import exponential_schedule
from lrfind_jax import JaxOptions, Settings, lr_find
assert lrfind_jax.__file__.startswith(root), lrfind_jax.__file__
warnings.simplefilter("ignore")
keys = jax.random.split(jax.random.key(0), 4)
params = {"w1": jax.random.normal(keys[0], (64, 32)) * 0.1, "b1": jnp.zeros(32),
          "w2": jax.random.normal(keys[1], (32, 1)) * 0.1, "b2": jnp.zeros(1)}
data = (jax.random.normal(keys[2], (steps, 16, 64)), jax.random.normal(keys[3], (steps, 16, 1)))
optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3)

def loss_fn(p, batch):
    inputs, target = batch
    hidden = jax.nn.relu(inputs @ p["w1"] + p["b1"])
    return jnp.mean((hidden @ p["w2"] + p["b2"] - target) ** 2)

@jax.jit
def floor(p, opt_state, lrs):
    def body(i, carry):
        p, opt_state = carry
        opt_state.hyperparams["learning_rate"] = lrs[i]
        batch = jax.tree.map(lambda leaf: lax.dynamic_index_in_dim(leaf, i, keepdims=False), data)
        grads = jax.grad(loss_fn)(p, batch)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state
    return lax.fori_loop(0, lrs.shape[0], body, (p, opt_state))

lrs = jnp.asarray(exponential_schedule(1e-7, 1e-4, steps).astype(np.float32))
opt_state = jax.block_until_ready(optimizer.init(params))
settings, options = Settings(diverge_factor=1e12), JaxOptions(progress=False)
overhead = []
for number in range(warmups + rounds):
    started = time.perf_counter()
    jax.block_until_ready(floor(params, opt_state, lrs))
    floor_s = time.perf_counter() - started
    started = time.perf_counter()
    result = lr_find(params, optimizer, data, loss_fn, num_steps=steps, start_lr=1e-7,
                     end_lr=1e-4, settings=settings, options=options)
    call_s = time.perf_counter() - started
    assert result.meta["steps_trained"] == steps
    if number >= warmups:
        overhead.append((call_s - floor_s) * 1e3)
print(json.dumps({"jax_overhead_ms_per_call": statistics.median(overhead)}))
'''


def measure(root: Path) -> dict[str, float]:
    """Both backends' figures for the checkout at ``root``, each in a fresh process."""
    figures: dict[str, float] = {}
    for worker in (TORCH_WORKER, JAX_WORKER):
        done = subprocess.run(
            [sys.executable, "-c", worker, str(root), str(STEPS), str(ROUNDS), str(WARMUPS)],
            check=True, capture_output=True, text=True,
        )
        figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return figures


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over pairs of the old and the new value."""
    return {
        name: {side: statistics.median(pair[side][name] for pair in pairs)
               for side in ("old", "new")}
        for name in pairs[0]["new"]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-root", type=Path, required=True)
    parser.add_argument("--old-commit", required=True, help="the older checkout's commit")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    pairs: list[dict[str, Any]] = []
    for _ in range(args.pairs):
        pairs.append({"old": measure(args.old_root), "new": measure(HERE)})
        print(f"old {pairs[-1]['old']}\nnew {pairs[-1]['new']}")
    summary = summarise(pairs)
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        out = {"format": "lrfind-bench-overhead-before-after", "old_commit": args.old_commit,
               "workload": f"MLP 64-32-1, batch 16, SGD, {STEPS} steps, {ROUNDS} rounds",
               "pairs": pairs, "summary": summary, "machine": machine_facts()}
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
