"""How close is lrfind to the bare training loop, and how far ahead of the others?

For each workload (``bench/throughput_models.py``: an MLP, a small CNN with
BatchNorm, a small transformer LM; Adam throughout) the same steps run as:

torch (batches made up front on the device, served by ``DataLoader(batch_size=None)``)
  * ``torch_bare``: a hand-written loop that sets ``param_groups[0]["lr"]`` each step,
    with no host read of the loss (one ``synchronize`` at the end on a GPU);
  * ``lrfind_torch``: ``lrfind_torch.lr_find(..., progress=False)``, the whole call
    (snapshot, sweep, restore, suggestions);
  * ``torch_lr_finder``: torch-lr-finder's ``LRFinder(...)`` (its state copy, the
    counterpart of lr_find's snapshot), ``range_test(...)`` and ``reset()`` (when
    installed; its prints and bar go to /dev/null).

JAX (arrays stacked on the device)
  * ``jax_bare``: a jitted train step (value_and_grad + an optax update with the LR
    injected) called per step from Python on pre-sliced device batches, reading
    ``float(loss)`` every step and checking it for divergence, as users write it;
  * ``lrfind_jax``: ``lrfind_jax.lr_find(..., progress=False)``, one compiled program;
  * ``lrfind_jax_chunked``: ``progress=True``, one call per chunk (bar to /dev/null);
  * ``lrfind_jax_k8``: ``num_sweeps=8`` vmapped sweeps in one program, reported per
    sweep (and as the ratio of its total to one sweep's time);
  * ``jax_loop_floor`` (MLP only): the bare loop's jitted step inside one jitted
    ``lax.fori_loop`` over the stacked batches, recording and checking nothing, with
    the optimizer state and LRs made once before the timed calls. No
    compiled sweep can be cheaper, so bare / floor is the most any compiled sweep
    can gain over the bare loop on this machine, and lrfind_jax / floor is what
    lrfind's recording, stop rule and host work cost on top.

Every contender trains the same initial state (torch: ``load_state_dict`` of a saved
copy before each call, untimed) with the same LRs, ``START_LR`` to ``END_LR``
exponentially, so nothing diverges, and ``diverge_factor=1e12``; each call is checked
to have run every step. Each contender is warmed up once, untimed (its first call:
JAX compiles there; that call's wall time and the compile time are reported). The
warm-ups are short: 10 steps for torch, 2 for the bare JAX loop, and for lrfind_jax
the same compiled program at ``BLOWUP_LRS``, where it stops itself after a few steps
(each timed call is checked not to recompile). Then
``rounds`` rounds run every available contender once, in an order rotated each
round, in this one process. Figures are medians over rounds; a contender's ratio to
its bare loop is the median over rounds of (its time per step) / (the bare loop's
time per step in the same round).

Memory, after the timed rounds (so that it perturbs no timing): one more warm call
per contender like its warm-up (torch and the bare JAX loop: up to 10 steps; lrfind_jax:
the same compiled program with the warm-up's LRs), after ``gc.collect()`` and
``malloc_trim`` so memory freed earlier is not silently reused, while a thread samples
the process RSS every 2 ms: the figure is peak - RSS before the call. On a GPU:
``torch.cuda.max_memory_allocated`` (peak reset before the call) and for JAX the
device's ``peak_bytes_in_use`` (process-wide and never reset: the high-water mark so
far) and ``bytes_in_use``.

    python bench/throughput.py [--device cpu|cuda] [--workloads mlp cnn transformer]
        [--steps 100] [--rounds N] [--json PATH] [--markdown] [--quick]
    python bench/throughput.py --from-json PATH   # the table of a saved (or partial) run

``--rounds`` defaults to 5, except on the CPU, where ``CPU_ROUNDS`` sets it per
workload (more for the cheap MLP, fewer for the slow ones) and torch gets one thread
(``CPU_TORCH_THREADS``). On the CPU, ``CPU_STEP_CAPS`` also shortens the K=8 JAX
contenders, which would take minutes a call; their figures are per step and the JSON
says how many steps ran. ``--no-caps`` lifts the caps and the CPU rounds. ``--quick``: 5
steps, 1 round, for a smoke test (targets are not judged).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime
import gc
import json
import os
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
# A bare checkout (the GPU machine) works without installing lrfind.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from _machine import machine_facts
from throughput_models import DESCRIPTIONS, WORKLOADS, jax_workload, torch_workload

START_LR, END_LR = 1e-7, 1e-5
DIVERGE_FACTOR = 1e12
NUM_SWEEPS = 8
TORCH_WARMUP_STEPS = 10
BLOWUP_LRS = (1e20, 1e21)
"""lrfind_jax warm-up LRs: the LR range is data, not part of the compiled program, so a
sweep at these LRs compiles the same program and stops on a non-finite or diverged
loss after a few steps."""
DEFAULT_ROUNDS = 5
CPU_ROUNDS = {"mlp": 31, "cnn": 9, "transformer": 2}
"""On the CPU: the MLP is cheap (a round is about a second), so many rounds against a
shared machine's noise, whose per-step times jump by up to 2x for seconds at a time;
the CNN gets 9 (a round is under a minute; with 5, one run's per-round torch ratios
spread from 0.65 to 1.25 and the median said 1.063); one transformer round costs about
4 minutes on 2 cores (the whole CPU run: about 18)."""
CPU_STEP_CAPS = {
    ("cnn", "lrfind_jax_k8"): 10,
    ("transformer", "lrfind_jax_k8"): 10,
}
"""On the CPU, steps per call of the JAX contenders that would take too long: 8 vmapped
sweeps are 8x the work, and XLA:CPU turns the CNN's vmapped convolutions into grouped
ones, about 3x slower per sweep. (lrfind_jax's single CNN sweeps run in full: on the
CPU it dispatches one compiled step per update for convolutional models, since
convolutions inside XLA:CPU's while loop run about 12x slower, jax-ml/jax#12868.)"""
CPU_TORCH_THREADS = 1
"""On a shared CPU, torch's OpenMP threads spin at every op's barrier whenever another
process holds a core: on the 2-core machine of bench/RESULTS.md the MLP step took
90-190 ms with 2 threads and 1-3 ms with 1. One thread measures lrfind, not the
neighbours; ``--torch-threads`` overrides it."""
SAMPLE_INTERVAL_S = 0.002
MB = 2**20

LABELS = {
    "torch_bare": "bare torch loop",
    "lrfind_torch": "lrfind_torch.lr_find",
    "torch_lr_finder": "torch-lr-finder: LRFinder() + range_test + reset",
    "jax_bare": "bare JAX loop (jitted step, float(loss) per step)",
    "lrfind_jax": "lrfind_jax.lr_find (single program)",
    "lrfind_jax_chunked": "lrfind_jax.lr_find (chunked, progress=True)",
    "lrfind_jax_k8": f"lrfind_jax.lr_find num_sweeps={NUM_SWEEPS}, per sweep",
    "jax_loop_floor": "the bare step in a jitted lax.fori_loop (no recording, no stop)",
}
FLOOR_WORKLOADS = ("mlp",)
"""Workloads that also time ``jax_loop_floor``: the cheapest a compiled sweep can be
(the MLP, where lrfind_jax's speedup target is judged; XLA:CPU runs convolutions
slowly inside loops, so the CNN's floor is not a loop)."""
BARE = {"torch": "torch_bare", "jax": "jax_bare"}


# ------------------------------------------------------------------------ measuring


def _trim_host_memory() -> None:
    """Give freed heap pages back to the OS (glibc), so RSS growth means new memory."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRss:
    """Samples this process's RSS in a thread while the ``with`` block runs."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.before = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.before = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Progress bars and prints to /dev/null (they are still formatted and written)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*cycling through them.*")
        yield


@dataclass
class Contender:
    """One way of running the steps: ``call(steps)`` is timed, ``reset()`` is not."""

    name: str
    framework: str
    call: Callable[[int], dict[str, Any]]
    warmup: Callable[[], dict[str, Any]]
    steps: int
    sweeps: int = 1
    reset: Callable[[], None] = lambda: None
    device_memory: Callable[[], Any] | None = None
    unavailable: str | None = None
    first_call: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)


class DeviceMemory:
    """Per-call device memory of one framework (None on the CPU)."""

    def __init__(self, framework: str, device: str) -> None:
        self.framework, self.device = framework, device
        self._before = 0

    def start(self) -> None:
        if self.framework == "torch" and self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._before = torch.cuda.memory_allocated()

    def finish(self) -> dict[str, float] | None:
        if self.framework == "torch":
            if self.device != "cuda":
                return None
            import torch

            peak = torch.cuda.max_memory_allocated()
            return {"peak_mb": peak / MB, "growth_mb": (peak - self._before) / MB}
        import jax

        stats = jax.local_devices()[0].memory_stats()
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        return {"process_peak_mb": stats["peak_bytes_in_use"] / MB,
                "in_use_mb": stats.get("bytes_in_use", 0) / MB}


def timed_call(contender: Contender) -> dict[str, Any]:
    """One timed call of ``contender.steps`` steps (nothing else runs meanwhile)."""
    contender.reset()
    started = time.perf_counter()
    facts = contender.call(contender.steps)
    seconds = time.perf_counter() - started
    expected = contender.steps * contender.sweeps
    if facts["steps_trained"] != expected:
        raise RuntimeError(f"{contender.name} ran {facts['steps_trained']} of {expected} steps")
    return {"seconds": seconds, **{key: value for key, value in facts.items()
                                   if key != "steps_trained"}}


def memory_call(contender: Contender, memory: DeviceMemory) -> dict[str, Any]:
    """Peak host RSS growth and device memory of one warm call like the warm-up (the
    same program and buffers; a short call for torch and the bare JAX loop), measured
    apart from the timed calls so that sampling and trimming do not perturb them."""
    contender.reset()
    _trim_host_memory()
    memory.start()
    with PeakRss() as rss:
        contender.warmup()
    return {"rss_before_mb": rss.before / MB, "rss_growth_mb": (rss.peak - rss.before) / MB,
            "device_memory": memory.finish()}


# ------------------------------------------------------------------------ contenders


def torch_contenders(workload: str, steps: int, device: str) -> list[Contender]:
    """The bare torch loop, lrfind_torch and torch-lr-finder on one workload."""
    import torch
    from torch.utils.data import DataLoader

    from lrfind_core.schedules import exponential_schedule
    from lrfind_torch import Settings, TorchOptions, lr_find

    torch_device = torch.device(device)
    setup = torch_workload(workload, steps, torch_device, START_LR)
    model, optimizer, loss_fn = setup.model, setup.optimizer, setup.loss_fn
    loader = DataLoader(setup.batches, batch_size=None, shuffle=False)
    initial_model = copy.deepcopy(model.state_dict())
    initial_optimizer = copy.deepcopy(optimizer.state_dict())
    cuda = torch_device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def reset() -> None:
        model.load_state_dict(initial_model)
        optimizer.load_state_dict(initial_optimizer)
        model.train()
        torch.manual_seed(1)
        sync()

    def bare(n: int) -> dict[str, Any]:
        lrs = exponential_schedule(START_LR, END_LR, n).tolist()
        group = optimizer.param_groups[0]
        done = 0
        for lr, (inputs, targets) in zip(lrs, loader, strict=False):
            inputs = inputs.to(torch_device, non_blocking=True)
            targets = targets.to(torch_device, non_blocking=True)
            group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(inputs), targets).backward()
            optimizer.step()
            done += 1
        sync()
        return {"steps_trained": done}

    def finder(n: int) -> dict[str, Any]:
        result = lr_find(model, optimizer, loader, loss_fn, num_steps=n, start_lr=START_LR,
                         end_lr=END_LR, settings=Settings(diverge_factor=DIVERGE_FACTOR),
                         options=TorchOptions(progress=False, device=torch_device))
        sync()
        return {"steps_trained": result.meta["steps_trained"],
                "run_time_s": result.meta["run_time_s"]}

    contenders = [
        Contender("torch_bare", "torch", bare, lambda: {}, steps, reset=reset),
        Contender("lrfind_torch", "torch", finder, lambda: {}, steps, reset=reset),
    ]
    try:
        from torch_lr_finder import LRFinder
    except ImportError as error:
        contenders.append(Contender("torch_lr_finder", "torch", bare, lambda: {}, steps,
                                    unavailable=f"not installed ({error})"))
    else:
        def other(n: int) -> dict[str, Any]:
            with quiet():
                other_finder = LRFinder(model, optimizer, loss_fn, device=torch_device)
                other_finder.range_test(loader, start_lr=START_LR, end_lr=END_LR, num_iter=n,
                                        step_mode="exp", diverge_th=DIVERGE_FACTOR)
                ran = len(other_finder.history["lr"])
                other_finder.reset()
            sync()
            return {"steps_trained": ran}

        contenders.append(Contender("torch_lr_finder", "torch", other, lambda: {}, steps,
                                    reset=reset))
    for contender in contenders:
        contender.warmup = _torch_warmup(contender, min(steps, TORCH_WARMUP_STEPS))
    return contenders


def _torch_warmup(contender: Contender, steps: int) -> Callable[[], dict[str, Any]]:
    """A short untimed first call (allocator, kernels, lazy init): nothing to compile."""

    def warmup() -> dict[str, Any]:
        contender.reset()
        started = time.perf_counter()
        contender.call(steps)
        return {"first_call_s": time.perf_counter() - started, "first_call_steps": steps,
                "compile_s": None}

    return warmup


def jax_contenders(workload: str, steps: int, device: str,
                   caps: dict[str, int]) -> list[Contender]:
    """The bare JAX loop and the three lrfind_jax modes on one workload."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax

    import lrfind_jax
    from lrfind_core.schedules import exponential_schedule

    if device == "cuda" and jax.default_backend() != "gpu":
        reason = f"JAX has no GPU backend here (default backend: {jax.default_backend()})"
        return [Contender(name, "jax", _never, _never, steps, unavailable=reason)
                for name in ("jax_bare", "lrfind_jax", "lrfind_jax_chunked", "lrfind_jax_k8")]
    setup = jax_workload(workload, steps)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=START_LR)
    stateful = setup.model_state is not None

    def train_step(params: Any, opt_state: Any, state: Any, batch: Any,
                   lr: Any) -> tuple[Any, Any, Any, Any]:
        opt_state.hyperparams["learning_rate"] = lr
        if stateful:
            (loss, state), grads = jax.value_and_grad(setup.loss_fn, has_aux=True)(
                params, state, batch, None)
        else:
            loss, grads = jax.value_and_grad(setup.loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, loss

    step = jax.jit(train_step)
    batches = [jax.tree.map(lambda leaf, i=i: leaf[i], setup.data) for i in range(steps)]
    jax.block_until_ready(batches)

    def bare(n: int, first_step: dict[str, float] | None = None) -> dict[str, Any]:
        lrs = exponential_schedule(START_LR, END_LR, n).astype(np.float32)
        params, opt_state, state = setup.params, optimizer.init(setup.params), setup.model_state
        best = smoothed = None
        done = 0
        for i in range(n):
            started = time.perf_counter()
            params, opt_state, state, loss = step(params, opt_state, state, batches[i], lrs[i])
            value = float(loss)  # the per-step host check
            if first_step is not None and i == 0:
                first_step["seconds"] = time.perf_counter() - started
            done += 1
            smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
            best = smoothed if best is None else min(best, smoothed)
            if not np.isfinite(value) or smoothed > DIVERGE_FACTOR * best:
                break
        return {"steps_trained": done}

    def bare_warmup() -> dict[str, Any]:
        first: dict[str, float] = {}
        started = time.perf_counter()
        bare(2, first)
        return {"first_call_s": time.perf_counter() - started, "first_call_steps": 2,
                "compile_s": first["seconds"], "compile_note": "first step: compile + 1 step"}

    def finder(progress: bool, sweeps: int) -> Callable[..., dict[str, Any]]:
        def call(n: int, lrs: tuple[float, float] = (START_LR, END_LR)) -> dict[str, Any]:
            state: dict[str, Any] = {"model_state": setup.model_state} if stateful else {}
            settings = lrfind_jax.Settings(diverge_factor=DIVERGE_FACTOR, num_sweeps=sweeps)
            with quiet():
                result = lrfind_jax.lr_find(
                    setup.params, optimizer, setup.data, setup.loss_fn, start_lr=lrs[0],
                    end_lr=lrs[1], num_steps=n, settings=settings,
                    options=lrfind_jax.JaxOptions(progress=progress), **state)
            meta = result.meta
            return {"steps_trained": meta["steps_trained"], "compiled": meta["compiled"],
                    "compile_time_s": meta["compile_time_s"], "run_time_s": meta["run_time_s"],
                    "program_calls": meta["program_calls"], "loop": meta["loop"],
                    "execution": meta.get("execution")}

        return call

    def finder_warmup(contender: Contender) -> Callable[[], dict[str, Any]]:
        def warmup() -> dict[str, Any]:
            started = time.perf_counter()
            facts = contender.call(contender.steps, BLOWUP_LRS)
            return {"first_call_s": time.perf_counter() - started,
                    "first_call_steps": facts["steps_trained"] // contender.sweeps,
                    "compile_s": facts["compile_time_s"], "compiled": facts["compiled"]}

        return warmup

    @jax.jit
    def loop_floor(params: Any, opt_state: Any, state: Any, lrs: Any) -> Any:
        def body(i: Any, carry: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
            batch = jax.tree.map(lambda leaf: lax.dynamic_index_in_dim(leaf, i, keepdims=False),
                                 setup.data)
            return train_step(*carry[:3], batch, lrs[i])

        return lax.fori_loop(0, lrs.shape[0], body,
                             (params, opt_state, state, jnp.zeros((), jnp.float32)))

    floor_inputs: dict[int, tuple[Any, Any]] = {}

    def floor(n: int) -> dict[str, Any]:
        # Made once, outside the timed calls: the floor times the loop and nothing else.
        if n not in floor_inputs:
            lrs = jnp.asarray(exponential_schedule(START_LR, END_LR, n).astype(np.float32))
            floor_inputs[n] = (jax.block_until_ready(optimizer.init(setup.params)), lrs)
        opt_state, lrs = floor_inputs[n]
        jax.block_until_ready(loop_floor(setup.params, opt_state, setup.model_state, lrs))
        return {"steps_trained": n}

    def floor_warmup() -> dict[str, Any]:
        started = time.perf_counter()
        floor(steps)
        seconds = time.perf_counter() - started
        return {"first_call_s": seconds, "first_call_steps": steps, "compile_s": None,
                "compile_note": "first call: compile + the steps"}

    contenders = [Contender("jax_bare", "jax", bare, bare_warmup, steps)]
    if workload in FLOOR_WORKLOADS:
        contenders.append(Contender("jax_loop_floor", "jax", floor, floor_warmup, steps))
    for name, progress, sweeps in (("lrfind_jax", False, 1), ("lrfind_jax_chunked", True, 1),
                                   ("lrfind_jax_k8", False, NUM_SWEEPS)):
        contender = Contender(name, "jax", finder(progress, sweeps), _never,
                              min(steps, caps.get(name, steps)), sweeps=sweeps)
        contender.warmup = finder_warmup(contender)
        contenders.append(contender)
    return contenders


def _never(*args: Any) -> dict[str, Any]:
    raise RuntimeError("an unavailable contender was called")


# ------------------------------------------------------------------------ one workload


def run_workload(workload: str, steps: int, rounds: int, device: str,
                 caps: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """Warm up, then ``rounds`` rotated rounds of every available contender."""
    started = time.perf_counter()
    load_before = os.getloadavg()
    contenders = (torch_contenders(workload, steps, device)
                  + jax_contenders(workload, steps, device, caps))
    memories = {framework: DeviceMemory(framework, device) for framework in BARE}
    for contender in contenders:
        if contender.unavailable:
            log(f"  {contender.name}: unavailable ({contender.unavailable})")
            continue
        try:
            contender.first_call = contender.warmup()
        except Exception as error:  # reported; the other contenders still run
            contender.unavailable = f"{type(error).__name__}: {error}"
            log(f"  {contender.name}: unavailable ({contender.unavailable})")
            continue
        log(f"  {contender.name}: first call {contender.first_call['first_call_s']:.2f} s")
    active = [contender for contender in contenders if not contender.unavailable]
    for number in range(rounds if active else 0):
        shift = number % len(active)
        for contender in active[shift:] + active[:shift]:
            record = timed_call(contender)
            if record.get("compiled"):
                raise RuntimeError(f"{contender.name} recompiled in a timed call")
            contender.records.append(record)
        log(f"  round {number + 1}/{rounds}: " + ", ".join(
            f"{c.name} {c.records[-1]['seconds']:.3f}s" for c in active))
    for contender in active:
        contender.memory = memory_call(contender, memories[contender.framework])
    return {
        "workload": workload,
        "description": DESCRIPTIONS[workload],
        "steps": steps,
        "rounds": rounds,
        "contenders": summarise(contenders),
        "wall_s": time.perf_counter() - started,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def summarise(contenders: list[Contender]) -> dict[str, Any]:
    """Medians, ratios to the bare loop and memory, per contender."""
    by_name = {contender.name: contender for contender in contenders}
    summary: dict[str, Any] = {}
    for contender in contenders:
        entry: dict[str, Any] = {"framework": contender.framework,
                                 "label": LABELS[contender.name]}
        if contender.unavailable:
            summary[contender.name] = {**entry, "available": False,
                                       "reason": contender.unavailable}
            continue
        seconds = [record["seconds"] for record in contender.records]
        sweep_steps = contender.steps * contender.sweeps
        per_step = [value / sweep_steps for value in seconds]
        entry.update(
            available=True,
            steps=contender.steps,
            sweeps=contender.sweeps,
            seconds=seconds,
            median_s=statistics.median(seconds),
            min_s=min(seconds),
            steps_per_s=sweep_steps / statistics.median(seconds),
            first_call=contender.first_call,
            host_rss_growth_mb=contender.memory["rss_growth_mb"],
            host_rss_before_mb=contender.memory["rss_before_mb"],
            device_memory=contender.memory["device_memory"],
        )
        extras = {key: [record[key] for record in contender.records]
                  for key in ("run_time_s", "program_calls", "loop", "execution")
                  if key in contender.records[0]}
        if extras:
            entry["meta"] = extras
        bare = by_name[BARE[contender.framework]]
        if not bare.unavailable:
            bare_per_step = [record["seconds"] / bare.steps for record in bare.records]
            ratios = [mine / theirs for mine, theirs in zip(per_step, bare_per_step,
                                                            strict=True)]
            entry["ratio_to_bare"] = statistics.median(ratios)
            entry["ratio_to_bare_all"] = ratios
            entry["speedup_vs_bare"] = 1 / entry["ratio_to_bare"]
            entry["best_ratio_to_bare"] = min(per_step) / min(bare_per_step)
            if "run_time_s" in extras:
                entry["sweep_loop_ratio_to_bare"] = statistics.median(
                    (loop / contender.steps) / theirs
                    for loop, theirs in zip(extras["run_time_s"], bare_per_step, strict=True))
        floor = by_name.get("jax_loop_floor")
        if (contender.framework == "jax" and floor is not None and not floor.unavailable
                and contender is not floor):
            floor_per_step = [record["seconds"] / floor.steps for record in floor.records]
            entry["ratio_to_floor"] = statistics.median(
                mine / theirs for mine, theirs in zip(per_step, floor_per_step, strict=True))
        single = by_name.get("lrfind_jax")
        if contender.sweeps > 1 and single is not None and not single.unavailable:
            one = [record["seconds"] / single.steps for record in single.records]
            entry["total_to_one_sweep"] = statistics.median(
                (total / contender.steps) / per for total, per in
                zip(seconds, one, strict=True))
        summary[contender.name] = entry
    return summary


# ------------------------------------------------------------------------ report


def environment(device: str) -> dict[str, Any]:
    """Machine, versions and the numeric settings that change throughput."""
    import jax
    import torch

    from lrfind_core.versions import package_versions

    facts = machine_facts(("numpy", "torch", "jax", "jaxlib", "optax", "flax", "psutil"))
    facts["versions"] = package_versions(
        ("numpy", "torch", "jax", "jaxlib", "optax", "flax", "torch-lr-finder", "psutil",
         "jax-cuda12-plugin", "jax-cuda13-plugin", "tqdm"))
    facts.update(
        device=device,
        torch_threads=torch.get_num_threads(),
        torch_float32_matmul_precision=torch.get_float32_matmul_precision(),
        jax_backend=jax.default_backend(),
        jax_devices=[str(d) for d in jax.devices()],
        jax_default_matmul_precision=jax.config.jax_default_matmul_precision,
        xla_flags=os.environ.get("XLA_FLAGS"),
        xla_python_client_preallocate=os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
    )
    if device == "cuda" and torch.cuda.is_available():
        facts.update(gpu=torch.cuda.get_device_name(0), torch_cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version(),
                     cudnn_benchmark=torch.backends.cudnn.benchmark,
                     allow_tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return facts


def judge(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that this run can judge, met or missed."""
    device, results = report["settings"]["device"], report["workloads"]
    targets: list[dict[str, Any]] = []

    def figure(workload: str, name: str, key: str) -> float | None:
        entry = results.get(workload, {}).get("contenders", {}).get(name, {})
        return entry.get(key) if entry.get("available") else None

    torch_limit = 1.03 if device == "cpu" else 1.05
    for workload in results:
        value = figure(workload, "lrfind_torch", "ratio_to_bare")
        targets.append({"target": f"lrfind_torch / bare <= {torch_limit} ({device})",
                        "workload": workload, "value": value,
                        "met": None if value is None else value <= torch_limit})
    if device == "cpu" and "mlp" in results:
        value = figure("mlp", "lrfind_jax", "speedup_vs_bare")
        targets.append({"target": "lrfind_jax >= 2x the per-step JAX loop (cpu, mlp)",
                        "workload": "mlp", "value": value,
                        "met": None if value is None else value >= 2.0})
        for name, text in (("jax_bare", "bare JAX loop / compiled-loop floor: the most "
                            "any compiled sweep can gain (informational)"),
                           ("lrfind_jax", "lrfind_jax / compiled-loop floor (informational)")):
            value = figure("mlp", name, "ratio_to_floor")
            if value is not None:
                targets.append({"target": text, "workload": "mlp", "value": value,
                                "met": None})
    for workload in results:
        value = figure(workload, "lrfind_jax_k8", "total_to_one_sweep")
        gpu = device == "cuda"
        targets.append({"target": f"K={NUM_SWEEPS} total <= 1.3x one sweep (gpu)"
                        + ("" if gpu else "; informational on cpu"),
                        "workload": workload, "value": value,
                        "met": None if value is None or not gpu else value <= 1.3})
    return targets


def markdown(report: dict[str, Any]) -> str:
    """The table, with the machine, versions and settings above it."""
    env, settings = report["environment"], report["settings"]
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    where = env.get("gpu") or f"{env['cpu']}, {env['cpu_count']} CPUs"
    lines = [
        f"Generated by `{settings['command']}` on {report['date']} "
        f"({report['wall_s'] / 60:.1f} min wall). Machine: {where}, {env['platform']}; "
        f"JAX backend {env['jax_backend']}. Versions: {versions}.",
        "",
        f"Settings: {settings['steps']} steps per call, Adam, LRs {START_LR:g} to {END_LR:g} "
        f"exponential, diverge_factor {DIVERGE_FACTOR:g} (no contender stops early); "
        f"rounds per workload {settings['rounds']}; torch threads {env['torch_threads']}, "
        f"torch fp32 matmul precision {env['torch_float32_matmul_precision']!r}, "
        f"jax_default_matmul_precision {env['jax_default_matmul_precision']!r}, "
        f"XLA_FLAGS {env['xla_flags']!r}.",
        "",
        "| workload | contender | steps x sweeps | steps/s | time / bare | best / best | "
        "first call s (compile s) | host RSS growth MB | device MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, result in report["workloads"].items():
        for entry in result["contenders"].values():
            if not entry["available"]:
                lines.append(f"| {workload} | {entry['label']} | - | unavailable: "
                             f"{entry['reason']} | - | - | - | - | - |")
                continue
            first = entry["first_call"]
            compile_s = first.get("compile_s")
            first_text = f"{first['first_call_s']:.2f}" + (
                f" ({compile_s:.2f})" if compile_s is not None else "")
            ratio = entry.get("ratio_to_bare")
            ratio_text = "-" if ratio is None else f"{ratio:.3f}"
            best = entry.get("best_ratio_to_bare")
            best_text = "-" if best is None else f"{best:.3f}"
            if "total_to_one_sweep" in entry:
                ratio_text += f"; total / one sweep {entry['total_to_one_sweep']:.2f}"
            memory = entry["device_memory"]
            device_text = "-" if not memory else " / ".join(
                f"{key} {value:.0f}" for key, value in memory.items())
            lines.append(
                f"| {workload} | {entry['label']} | {entry['steps']} x {entry['sweeps']} | "
                f"{entry['steps_per_s']:.1f} | {ratio_text} | {best_text} | {first_text} | "
                f"{entry['host_rss_growth_mb']:.1f} | {device_text} |")
    lines += ["", "| target | workload | value | met |", "|---|---|---|---|"]
    for target in report["targets"]:
        value = "-" if target["value"] is None else f"{target['value']:.3f}"
        met = {True: "yes", False: "**no**", None: "-"}[target["met"]]
        lines.append(f"| {target['target']} | {target['workload']} | {value} | {met} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=None, help="steps per call (100)")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"timed rounds ({DEFAULT_ROUNDS}; on cpu: {CPU_ROUNDS})")
    parser.add_argument("--json", help="write the JSON report here (after every workload)")
    parser.add_argument("--markdown", action="store_true", help="print the markdown table")
    parser.add_argument("--from-json", metavar="PATH",
                        help="run nothing: print the markdown table of a saved report")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 5 steps, 1 round, targets not judged")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help=f"torch intra-op threads (cpu default: {CPU_TORCH_THREADS}; "
                        "cuda: torch's default)")
    parser.add_argument("--no-caps", action="store_true",
                        help="no CPU step caps and no fewer CPU rounds")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 5 if args.quick else 100
    if args.steps < 2:
        parser.error("--steps must be >= 2")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        print(markdown(json.loads(Path(args.from_json).read_text(encoding="utf-8"))))
        return 0
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        # JAX would otherwise take 75% of the GPU up front, beside torch in this process.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    started = time.perf_counter()
    cpu_defaults = args.device == "cpu" and not args.no_caps
    threads = args.torch_threads or (CPU_TORCH_THREADS if args.device == "cpu" else None)
    if threads:
        import torch

        torch.set_num_threads(threads)

    def rounds_for(workload: str) -> int:
        if args.rounds is not None:
            return args.rounds
        if args.quick:
            return 1
        return CPU_ROUNDS[workload] if cpu_defaults else DEFAULT_ROUNDS

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "benchmark": "throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "command": "python bench/throughput.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv),
            "device": args.device,
            "steps": args.steps,
            "rounds": {workload: rounds_for(workload) for workload in args.workloads},
            "quick": args.quick,
            "start_lr": START_LR,
            "end_lr": END_LR,
            "diverge_factor": DIVERGE_FACTOR,
            "num_sweeps": NUM_SWEEPS,
            "torch_warmup_steps": TORCH_WARMUP_STEPS,
            "jax_warmup_lrs": BLOWUP_LRS,
            "rss_sample_interval_s": SAMPLE_INTERVAL_S,
            "cpu_step_caps": {f"{w}/{n}": s for (w, n), s in CPU_STEP_CAPS.items()}
            if cpu_defaults else {},
        },
        "environment": environment(args.device),
        "workloads": {},
    }
    log(f"throughput: {args.device}, workloads {args.workloads}, {args.steps} steps")
    for workload in args.workloads:
        caps = {name: steps for (w, name), steps in CPU_STEP_CAPS.items()
                if w == workload and cpu_defaults}
        log(f"{workload}: {rounds_for(workload)} round(s)")
        report["workloads"][workload] = run_workload(
            workload, args.steps, rounds_for(workload), args.device, caps, log)
        report["wall_s"] = time.perf_counter() - started
        report["targets"] = [] if args.quick else judge(report)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.markdown:
        print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
