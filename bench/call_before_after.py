"""One ``lr_find`` call (JAX or torch) before and after a change, side by side.

Times the whole call (100 Adam steps of the throughput benchmark's MLP, LRs 1e-7
to 1e-5 with ``diverge_factor=1e12`` so every call runs every step, progress off;
torch on one thread, its weights and optimizer state put back untimed before
each call, as in bench/throughput.py)
of two checkouts of lrfind: this one and an older one made with
``git worktree add /tmp/old_lrfind COMMIT``. Each measurement is a fresh process
(5 warm calls, then the median and the minimum of 40 timed calls); the two
checkouts alternate for ``--pairs`` pairs. The older API (before 0.2:
``lr_find(loss_fn, params, optimizer, data, ...)`` with keywords) is detected by
the signature.

    python bench/call_before_after.py --old-root /tmp/old_lrfind --old-commit c2c55fd \\
        [--backend jax|torch] [--pairs 3] [--json bench/jax_call_before_after_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_facts

HERE = Path(__file__).resolve().parent.parent

TORCH_WORKER = r'''
import copy, inspect, json, statistics, sys, time, warnings
root = sys.argv[1]
sys.path.insert(0, root); sys.path.insert(0, root + "/bench")
import torch
from throughput_models import torch_workload
import lrfind_torch
from lrfind_torch import lr_find
assert lrfind_torch.__file__.startswith(root), lrfind_torch.__file__
torch.set_num_threads(1)
warnings.simplefilter("ignore")
work = torch_workload("mlp", 100, "cpu", 1e-3)
weights = copy.deepcopy(work.model.state_dict())
state = copy.deepcopy(work.optimizer.state_dict())
sweep = {"num_steps": 100, "start_lr": 1e-7, "end_lr": 1e-5}
if "settings" not in inspect.signature(lr_find).parameters:
    def call():
        return lr_find(work.model, work.optimizer, work.batches, loss_fn=work.loss_fn,
                       diverge_factor=1e12, progress=False, **sweep)
else:
    from lrfind_torch import Settings, TorchOptions
    settings, options = Settings(diverge_factor=1e12), TorchOptions(progress=False)
    def call():
        return lr_find(work.model, work.optimizer, work.batches, work.loss_fn,
                       settings=settings, options=options, **sweep)
times = []
for number in range(45):
    work.model.load_state_dict(weights)
    work.optimizer.load_state_dict(state)
    started = time.perf_counter()
    call()
    if number >= 5:
        times.append(time.perf_counter() - started)
print(json.dumps({"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3}))
'''

WORKER = r'''
import inspect, json, statistics, sys, time, warnings
root = sys.argv[1]
sys.path.insert(0, root); sys.path.insert(0, root + "/bench")
import optax
from throughput_models import jax_workload
import lrfind_jax
from lrfind_jax import lr_find
assert lrfind_jax.__file__.startswith(root), lrfind_jax.__file__
warnings.simplefilter("ignore")
work = jax_workload("mlp", 100)
optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
sweep = {"num_steps": 100, "start_lr": 1e-7, "end_lr": 1e-5}
if next(iter(inspect.signature(lr_find).parameters)) == "loss_fn":
    def call():
        return lr_find(work.loss_fn, work.params, optimizer, work.data, diverge_factor=1e12,
                       progress=False, **sweep)
else:
    from lrfind_jax import JaxOptions, Settings
    settings, options = Settings(diverge_factor=1e12), JaxOptions(progress=False)
    def call():
        return lr_find(work.params, optimizer, work.data, work.loss_fn, settings=settings,
                       options=options, **sweep)
for _ in range(5):
    call()
times = []
for _ in range(40):
    started = time.perf_counter()
    call()
    times.append(time.perf_counter() - started)
print(json.dumps({"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3}))
'''


def measure(root: Path, backend: str) -> dict[str, float]:
    """The median and minimum call time of the checkout at ``root``, in a fresh process."""
    worker = TORCH_WORKER if backend == "torch" else WORKER
    done = subprocess.run([sys.executable, "-c", worker, str(root)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-root", type=Path, required=True)
    parser.add_argument("--old-commit", required=True, help="the older checkout's commit")
    parser.add_argument("--backend", choices=("jax", "torch"), default="jax")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    pairs: list[dict[str, Any]] = []
    for _ in range(args.pairs):
        pairs.append({"old": measure(args.old_root, args.backend),
                      "new": measure(HERE, args.backend)})
        print(f"old {pairs[-1]['old']}  new {pairs[-1]['new']}")
    ratio_min = sorted(p["new"]["min_ms"] / p["old"]["min_ms"] for p in pairs)
    ratio_median = sorted(p["new"]["median_ms"] / p["old"]["median_ms"] for p in pairs)
    summary = {"new/old of the minimum": ratio_min[len(ratio_min) // 2],
               "new/old of the median": ratio_median[len(ratio_median) // 2]}
    print(summary)
    if args.json is not None:
        out = {"format": "lrfind-bench-call-before-after", "backend": args.backend,
               "old_commit": args.old_commit,
               "workload": "mlp 784-256-10, Adam, 100 steps, progress off", "pairs": pairs,
               "summary": summary, "machine": machine_facts()}
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
