"""One JAX ``lr_find`` call before and after a change, side by side.

Times the whole call (100 Adam steps of the throughput benchmark's MLP, LRs 1e-7
to 1e-5 with ``diverge_factor=1e12`` so every call runs every step, progress off)
of two checkouts of lrfind: this one and an older one made with
``git worktree add /tmp/old_lrfind COMMIT``. Each measurement is a fresh process
(5 warm calls, then the median and the minimum of 40 timed calls); the two
checkouts alternate for ``--pairs`` pairs. The older API (before 0.2:
``lr_find(loss_fn, params, optimizer, data, ...)`` with keywords) is detected by
the signature.

    python bench/jax_call_before_after.py --old-root /tmp/old_lrfind --old-commit c2c55fd \\
        [--pairs 3] [--json bench/jax_call_before_after_cpu.json]
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


def measure(root: Path) -> dict[str, float]:
    """The median and minimum call time of the checkout at ``root``, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", WORKER, str(root)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


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
        print(f"old {pairs[-1]['old']}  new {pairs[-1]['new']}")
    ratio_min = sorted(p["new"]["min_ms"] / p["old"]["min_ms"] for p in pairs)
    ratio_median = sorted(p["new"]["median_ms"] / p["old"]["median_ms"] for p in pairs)
    summary = {"new/old of the minimum": ratio_min[len(ratio_min) // 2],
               "new/old of the median": ratio_median[len(ratio_median) // 2]}
    print(summary)
    if args.json is not None:
        out = {"format": "lrfind-bench-jax-call-before-after", "old_commit": args.old_commit,
               "workload": "mlp 784-256-10, Adam, 100 steps, progress off", "pairs": pairs,
               "summary": summary, "machine": machine_facts()}
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
