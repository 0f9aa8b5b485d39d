"""How fast is ``lrfind_jax.lr_find`` against the Python loop a JAX user would write?

Runs the same N steps of a 784-256-10 MLP (relu, batch 64, Adam via
``optax.inject_hyperparams``) three ways, alternating in one process for several
rounds, and reports median per-step times (compile time apart):

* ``python_loop``: a jitted train step called once per step from Python, with the
  LR set in the opt_state, ``float(loss)`` read every step and a Python-side
  divergence check (smoothed loss > 4x best), as a user typically writes it;
* ``lr_find_single``: ``lr_find(..., progress=False)``, one compiled call;
* ``lr_find_chunked``: ``lr_find(..., progress=True)``, one call per chunk with a
  (silenced) progress bar;
* ``lr_find_k8_per_sweep``: ``lr_find(..., num_sweeps=8, progress=False)``, the 8
  sweeps ``jax.vmap``-ed in one compiled call, reported per sweep (its run time
  divided by 8) so it reads next to ``lr_find_single``. Its sweeps cycle through
  the same N batches (as many as the single sweep reads, to keep the benchmark's
  memory small): the work per sweep is the same as on distinct batches.

The stop rule is disabled (a huge ``diverge_factor``, small ``end_lr``) so every
contender runs all N steps. The data is stacked on the device.

    python bench/jax_sweep.py [--steps 200] [--rounds 5] [--chunk-size 20] [--sweeps 8]
                              [--out FILE]

Prints a JSON record and a markdown table; ``--out`` also writes the JSON.
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

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_facts

from lrfind_core.schedules import exponential_schedule
from lrfind_jax import JaxOptions, Settings, lr_find

BATCH = 64
SIZES = (784, 256, 10)
START_LR, END_LR = 1e-7, 1e-3
DIVERGE_FACTOR = 1e30


def init_params(key: jax.Array) -> dict[str, jax.Array]:
    """He-initialised 784-256-10 MLP."""
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, SIZES[:2]) * np.sqrt(2 / SIZES[0]),
        "b1": jnp.zeros(SIZES[1]),
        "w2": jax.random.normal(k2, SIZES[1:]) * np.sqrt(2 / SIZES[1]),
        "b2": jnp.zeros(SIZES[2]),
    }


def loss_fn(params: dict[str, jax.Array], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Mean softmax cross-entropy of the MLP on one batch."""
    inputs, labels = batch
    hidden = jax.nn.relu(inputs @ params["w1"] + params["b1"])
    logits = hidden @ params["w2"] + params["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


OPTIMIZER = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)


@jax.jit
def train_step(params: Any, opt_state: Any, batch: Any, lr: jax.Array) -> tuple[Any, Any, Any]:
    """The user's jitted step: set the LR, one Adam update, return the loss."""
    opt_state.hyperparams["learning_rate"] = lr
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def python_loop(params: Any, data: Any, steps: int) -> float:
    """The hand-written sweep; seconds for ``steps`` steps (after a warm-up call)."""
    lrs = exponential_schedule(START_LR, END_LR, steps).astype(np.float32)  # host values
    opt_state = OPTIMIZER.init(params)
    inputs, labels = data
    started = time.perf_counter()
    best = smoothed = None
    for step in range(steps):
        params, opt_state, loss = train_step(params, opt_state, (inputs[step], labels[step]),
                                             lrs[step])
        value = float(loss)  # the per-step host check
        smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
        best = smoothed if best is None else min(best, smoothed)
        if not np.isfinite(value) or smoothed > DIVERGE_FACTOR * best:
            break
    return time.perf_counter() - started


def finder(
    params: Any, data: Any, steps: int, progress: bool, chunk_size: int, sweeps: int = 1
) -> dict[str, float]:
    """``lr_find`` over the same steps (``sweeps`` of them, vmapped): its run and
    compile times (seconds, all sweeps together)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # K sweeps cycle through the data
        result = lr_find(
            params, OPTIMIZER, data, loss_fn, start_lr=START_LR, end_lr=END_LR,
            num_steps=steps, settings=Settings(diverge_factor=DIVERGE_FACTOR, num_sweeps=sweeps),
            options=JaxOptions(progress=progress, chunk_size=chunk_size),
        )
    assert result.meta["steps_trained"] == steps * sweeps, result.meta
    return {key: result.meta[key] for key in ("run_time_s", "compile_time_s", "wall_time_s")}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print JSON and a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=20)
    parser.add_argument("--sweeps", type=int, default=8, help="K of the vmapped contender")
    parser.add_argument("--out", help="also write the JSON record here")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    data = (
        jnp.asarray(rng.normal(size=(args.steps, BATCH, SIZES[0])), jnp.float32),
        jnp.asarray(rng.integers(0, SIZES[2], size=(args.steps, BATCH)), jnp.int32),
    )
    params = init_params(jax.random.key(0))

    # Compile everything once; the first lr_find call of each mode records compile time.
    started = time.perf_counter()
    python_loop(params, data, 2)
    loop_compile = time.perf_counter() - started
    compile_single = finder(params, data, args.steps, False, args.chunk_size)["compile_time_s"]
    compile_chunked = finder(params, data, args.steps, True, args.chunk_size)["compile_time_s"]
    vmapped = f"lr_find_k{args.sweeps}_per_sweep"
    compile_vmapped = finder(params, data, args.steps, False, args.chunk_size,
                             args.sweeps)["compile_time_s"]

    # (name, progress, sweeps); the run time is divided by steps * sweeps.
    contenders = (("lr_find_single", False, 1), ("lr_find_chunked", True, 1),
                  (vmapped, False, args.sweeps))
    times: dict[str, list[float]] = {"python_loop": [], **{c[0]: [] for c in contenders}}
    walls: dict[str, list[float]] = {c[0]: [] for c in contenders}
    for _ in range(args.rounds):
        times["python_loop"].append(python_loop(params, data, args.steps))
        for name, progress, sweeps in contenders:
            facts = finder(params, data, args.steps, progress, args.chunk_size, sweeps)
            times[name].append(facts["run_time_s"] / sweeps)
            walls[name].append(facts["wall_time_s"] / sweeps)

    per_step_ms = {name: 1e3 * statistics.median(t) / args.steps for name, t in times.items()}
    record = {
        "benchmark": "lrfind_jax lr_find vs a Python loop of jitted steps",
        "model": "MLP 784-256-10 relu, batch 64, Adam (inject_hyperparams)",
        "steps": args.steps,
        "rounds": args.rounds,
        "chunk_size": args.chunk_size,
        "sweeps": args.sweeps,
        "per_step_ms": per_step_ms,
        "speedup_vs_python_loop": {
            name: per_step_ms["python_loop"] / per_step_ms[name] for name, *_ in contenders
        },
        # > 1: K vmapped sweeps cost less than K single sweeps one after another.
        "vmapped_speedup_vs_k_single_sweeps": per_step_ms["lr_find_single"]
        / per_step_ms[vmapped],
        "lr_find_wall_per_step_ms": {
            name: 1e3 * statistics.median(t) / args.steps for name, t in walls.items()
        },
        "compile_time_s": {
            "python_loop_first_call": loop_compile,
            "lr_find_first_call": compile_single,
            # 0 when the chunked mode reuses the single-call program (same shapes).
            "lr_find_chunked_after_single": compile_chunked,
            f"lr_find_k{args.sweeps}_first_call": compile_vmapped,
        },
        "raw_seconds": times,
        "machine": machine_facts(("numpy", "jax", "jaxlib", "optax", "flax")),
        "device": str(jax.devices()[0]),
    }
    print(json.dumps(record, indent=1))
    print()
    print(f"| contender | ms/step, per sweep (median of {args.rounds}) | speed-up vs Python loop |")
    print("|---|---|---|")
    for name, value in per_step_ms.items():
        print(f"| {name} | {value:.3f} | {per_step_ms['python_loop'] / value:.2f}x |")
    print()
    print(f"compile (s): lr_find {compile_single:.2f} (chunked mode after it: "
          f"{compile_chunked:.2f}, same program), K={args.sweeps} vmapped "
          f"{compile_vmapped:.2f}; the Python loop's step {loop_compile:.2f}")
    print(f"{args.sweeps} vmapped sweeps vs {args.sweeps} single sweeps in a row: "
          f"{record['vmapped_speedup_vs_k_single_sweeps']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
