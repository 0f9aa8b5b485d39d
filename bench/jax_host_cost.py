"""Where lrfind_jax's fixed cost per call goes, on the throughput benchmark's MLP.

``bench/throughput.py`` judges lrfind_jax against the compiled-loop floor: the
same steps in one jitted ``lax.fori_loop`` with nothing recorded or checked and
with the optimizer state and LRs made before the call. This script splits an
``lr_find`` call into its phases, measured inside the call, in rounds that
alternate with the floor as in ``bench/throughput.py`` (same workload: the MLP,
100 steps, Adam, ``diverge_factor=1e12``, progress off):

* ``before_dispatch_ms``: from the call to the dispatch of the compiled program
  (argument checks, settings, plan, the optimizer state's ``init``, the LR
  tables, the start state's copy, the program lookup); of it, ``opt_state_init_ms``
  (``initial_opt_state``) and ``start_state_ms`` (``start_runs``);
* ``dispatch_ms``: the call that enqueues the program (it returns before the
  program ends);
* ``wait_ms``: waiting for the program's results (``jax.device_get``): the
  device's work, compared with ``floor_ms``;
* ``after_wait_ms``: from the results to the returned result (the float64 stop
  rule on the losses, judging, meta, notices); of it, ``judging_ms``
  (``judge_record``: smoothing, stop, the suggestion methods).

``host_ms`` is the call minus ``wait_ms``, and ``budget_ms`` what a 1.02 ratio
allows the host at the median floor: 2% of it.

The phases are measured by wrapping lrfind's internal functions from outside
(a diagnostic, not an API; the wrappers add about 1 us each).

    python bench/jax_host_cost.py [--rounds 40] [--json bench/jax_host_cost_cpu.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from _machine import machine_facts
from throughput import DIVERGE_FACTOR, END_LR, START_LR
from throughput_models import jax_workload

STEPS = 100
PHASES = ("before_dispatch_ms", "opt_state_init_ms", "start_state_ms", "dispatch_ms",
          "wait_ms", "after_wait_ms", "judging_ms", "call_ms", "host_ms", "floor_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax import lax

    import lrfind_core.shell as shell
    import lrfind_jax
    import lrfind_jax.backend as backend
    import lrfind_jax.driver as driver
    import lrfind_jax.finder as finder
    from lrfind_core.schedules import exponential_schedule

    setup = jax_workload("mlp", STEPS)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

    def train_step(params: Any, opt_state: Any, loss: Any, batch: Any,
                   lr: Any) -> tuple[Any, Any, Any]:  # as bench/throughput.py's floor
        opt_state.hyperparams["learning_rate"] = lr
        loss, grads = jax.value_and_grad(setup.loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def loop_floor(params: Any, opt_state: Any, lrs: Any) -> Any:
        def body(i: Any, carry: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
            batch = jax.tree.map(lambda leaf: lax.dynamic_index_in_dim(leaf, i, keepdims=False),
                                 setup.data)
            return train_step(*carry, batch, lrs[i])

        return lax.fori_loop(0, lrs.shape[0], body,
                             (params, opt_state, jnp.zeros((), jnp.float32)))

    lrs = jnp.asarray(exponential_schedule(START_LR, END_LR, STEPS).astype(np.float32))
    floor_opt_state = jax.block_until_ready(optimizer.init(setup.params))
    settings = lrfind_jax.Settings(diverge_factor=DIVERGE_FACTOR)
    options = lrfind_jax.JaxOptions(progress=False)

    marks: dict[str, float] = {}
    spans: dict[str, float] = {}

    def timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                spans[label] = spans.get(label, 0.0) + time.perf_counter() - started
        return wrapper

    original_drive, original_get = backend.drive, driver.jax.device_get

    def drive(run: Callable[..., Any], *a: Any, **k: Any) -> Any:
        def marked_run(carry: Any, inputs: Any) -> Any:
            marks.setdefault("dispatch", time.perf_counter())
            out = run(carry, inputs)
            marks.setdefault("dispatched", time.perf_counter())
            return out
        return original_drive(marked_run, *a, **k)

    def device_get(tree: Any) -> Any:
        started = time.perf_counter()
        out = original_get(tree)
        spans["wait_ms"] = spans.get("wait_ms", 0.0) + time.perf_counter() - started
        return out

    backend.drive, driver.jax.device_get = drive, device_get
    finder.initial_opt_state = timed("opt_state_init_ms", finder.initial_opt_state)
    backend.start_runs = timed("start_state_ms", backend.start_runs)
    shell.judge_record = timed("judging_ms", shell.judge_record)

    def floor() -> float:
        started = time.perf_counter()
        jax.block_until_ready(loop_floor(setup.params, floor_opt_state, lrs))
        return time.perf_counter() - started

    def call(start_lr: float = START_LR, end_lr: float = END_LR,
             warmup: bool = False) -> dict[str, float]:
        marks.clear()
        spans.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            result = lrfind_jax.lr_find(setup.params, optimizer, setup.data, setup.loss_fn,
                                        start_lr=start_lr, end_lr=end_lr, num_steps=STEPS,
                                        settings=settings, options=options)
            ended = time.perf_counter()
        if not warmup and (result.meta["compiled"] or result.meta["program_calls"] != 1):
            raise RuntimeError("a timed call compiled or called the program more than once")
        row = {
            "call_ms": ended - started,
            "before_dispatch_ms": marks["dispatch"] - started,
            "dispatch_ms": marks["dispatched"] - marks["dispatch"],
            "host_ms": ended - started - spans["wait_ms"],
            "after_wait_ms": ended - marks["dispatched"] - spans["wait_ms"],
            **spans,
        }
        return {name: 1e3 * seconds for name, seconds in row.items()}

    floor()
    call(1e20, 1e21, warmup=True)  # compiles; the program stops itself after a few steps
    call()
    rows = []
    for _ in range(args.rounds):
        seconds = floor()
        rows.append({**call(), "floor_ms": 1e3 * seconds})
    medians = {name: statistics.median(row[name] for row in rows) for name in PHASES}
    ratios = [row["call_ms"] / row["floor_ms"] for row in rows]
    summary = {
        "medians_ms": medians,
        "fastest_ms": {name: min(row[name] for row in rows) for name in PHASES},
        "ratio_call_to_floor_median": statistics.median(ratios),
        "budget_ms": 0.02 * medians["floor_ms"],
    }
    for name in PHASES:
        print(f"{name:20s} median {medians[name]:8.3f} ms   fastest "
              f"{summary['fastest_ms'][name]:8.3f} ms")
    print(f"call / floor, median over rounds: {summary['ratio_call_to_floor_median']:.3f}; "
          f"host budget at 1.02: {summary['budget_ms']:.2f} ms")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "script": "bench/jax_host_cost.py", "steps": STEPS, "rounds": args.rounds,
            "machine": machine_facts(), "summary": summary, "rows": rows,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
