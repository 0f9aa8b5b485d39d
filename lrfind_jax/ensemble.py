"""Several runs of the compiled sweep as one program: repeated sweeps, independent runs.

Both are R copies of :func:`lrfind_jax.sweep.sweep_loop`, vmapped over a leading
run axis (:func:`lrfind_jax.sweep.vmapped_loop`), every copy starting from the
same params, optimizer state and model state. Run r belongs to curve ``c_r``:

* **K sweeps** (``num_sweeps=K``): R = K runs of the planned schedule, ``c_r = r``.
* **Independent runs** (``mode="independent"``): R = K * M runs; run ``r = c * M + j``
  trains ``steps_per_lr`` updates at the constant LR ``grid[j]`` (every other group
  at its ratio, from the same float32 tables as the sweep).

Curve c reads its own block of the data and has its own seed:

* micro-batch ``m`` (run-relative) reads data index ``(m + c * n * k) % length``,
  with ``n`` the updates per run and ``k`` the micro-batches per update: sweep 0
  reads exactly what a single sweep reads, sweep c the next ``n * k`` batches,
  and the runs of one independent curve all read the same batches;
* its base key is the user's ``rng`` for c = 0 and ``jax.random.fold_in(rng, c)``
  for c > 0; micro-batch m then gets ``fold_in(base, m)``, so the runs of one
  independent curve see the same per-step keys (the same dropout masks).
  Typed PRNG keys inside ``model_state`` (nnx RNG streams) are folded the same way.

The host reads every run's step, stop code and losses once per call and applies
the core's float64 stop rule to each run (:func:`run_all`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lrfind_core import FinderConfig, MonitorSettings, monitor_fold, monitor_init
from lrfind_jax.injection import LrGroup, lr_tables
from lrfind_jax.sweep import SweepCarry, SweepInputs


class RunPlan(NamedTuple):
    """What each of R vmapped runs does.

    Attributes:
      layout: ``"sweeps"`` (shared LR tables) or ``"runs"`` (one table row per run),
        see :data:`lrfind_jax.sweep.LAYOUTS`.
      curves: (R,) the curve of each run; it picks the data block and the seed.
      num_steps: updates a run plans (the schedule's length, or ``steps_per_lr``).
      tables: per LR group, the LR of each update in the group's dtype: ``[num_steps]``
        (sweeps) or ``[R, num_steps]`` (independent runs).
      shift: micro-batches between the data blocks of two curves (``num_steps * k``).
      limits: (R,) updates each run may make (fewer than ``num_steps`` where a
        one-shot iterator ran out).
      monitor: the stop rule of each run, inside the loop and on the host.
    """

    layout: str
    curves: np.ndarray
    num_steps: int
    tables: tuple[Any, ...]
    shift: int
    limits: np.ndarray
    monitor: MonitorSettings


def sweeps_plan(
    config: FinderConfig,
    groups: tuple[LrGroup, ...],
    accumulation_steps: int,
    available: int | None = None,
) -> RunPlan:
    """K = ``config.num_sweeps`` sweeps of ``config.learning_rates()``.

    ``available``: micro-batches a one-shot iterator yielded (None: the data
    cycles); sweep c then makes ``(available - c * shift) // k`` updates at most.
    """
    steps, k = config.num_steps, accumulation_steps
    curves = np.arange(config.num_sweeps)
    limits = np.full(config.num_sweeps, steps)
    if available is not None:
        limits = np.clip((available - curves * steps * k) // k, 0, steps)
    tables = tuple(jnp.asarray(t) for t in lr_tables(config.learning_rates(), groups))
    monitor = MonitorSettings(config.beta, config.debias, config.diverge_factor)
    return RunPlan("sweeps", curves, steps, tables, steps * k, limits, monitor)


def independent_plan(
    config: FinderConfig, groups: tuple[LrGroup, ...], accumulation_steps: int
) -> RunPlan:
    """K * M runs of ``config.steps_per_lr`` updates, one per curve and grid LR.

    Only a non-finite loss ends a run early (its score is +inf either way); the
    ratio rule judges the runs' scores afterwards (:meth:`lrfind_core.LRFindResult.from_runs`).
    """
    grid, steps = config.learning_rates(), config.steps_per_lr
    curves = np.repeat(np.arange(config.num_sweeps), len(grid))
    shape = (config.num_sweeps, len(grid), steps)
    tables = tuple(
        jnp.asarray(np.broadcast_to(t[None, :, None], shape).reshape(len(curves), steps))
        for t in lr_tables(grid, groups)
    )
    monitor = MonitorSettings(config.beta, config.debias, math.inf)
    return RunPlan("runs", curves, steps, tables, steps * accumulation_steps,
                   np.full(len(curves), steps), monitor)


def _fold(key: Any, curve: Any) -> Any:
    """One PRNG key (typed, or a legacy ``uint32[2]``) for curve 0, else folded with it."""
    return lax.select(curve == 0, key, jax.random.fold_in(key, curve))


def _fold_all(keys: Any, curve: Any) -> Any:
    """A typed key array of any shape, every key folded as by :func:`_fold`."""
    return jax.vmap(_fold, in_axes=(0, None))(keys.reshape(-1), curve).reshape(keys.shape)


def _is_typed_key(leaf: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key)


@jax.jit
def curve_keys(rng: Any, curves: Any) -> Any:
    """Each run's base key: ``rng`` for curve 0, ``fold_in(rng, c)`` for curve c > 0."""
    return jax.vmap(lambda curve: _fold(rng, curve))(curves)


@functools.partial(jax.jit, static_argnames=("num_steps", "loss_dtype"))
def start_runs(
    params: Any, opt_state: Any, model_state: Any, curves: Any, *, num_steps: int,
    loss_dtype: np.dtype,
) -> SweepCarry:
    """The carry of R fresh runs: copies of the initial state along a leading axis.

    New buffers (the program donates its carry; the caller's arrays stay valid).
    Typed keys in ``model_state`` are folded with each run's curve.
    """

    def one(curve: Any) -> SweepCarry:
        state = jax.tree_util.tree_map(
            lambda leaf: _fold_all(leaf, curve) if _is_typed_key(leaf) else leaf, model_state
        )
        return SweepCarry(
            params=params,
            opt_state=opt_state,
            model_state=state,
            step=jnp.zeros((), jnp.int32),
            monitor=monitor_init(jnp, loss_dtype),
            code=jnp.zeros((), jnp.int32),
            losses=jnp.full((num_steps,), jnp.nan, loss_dtype),
        )

    return jax.vmap(one)(curves)


def run_inputs(data: Any, length: int, plan: RunPlan, rngs: Any) -> SweepInputs:
    """The program's inputs: curve c's data offset makes micro-batch m read
    ``data[(m + c * shift) % length]``; every run may go to its limit."""
    offsets = (-(plan.curves.astype(np.int64) * plan.shift)) % length
    return SweepInputs(data, plan.tables, rngs, offsets.astype(np.int32),
                       plan.limits.astype(np.int32))


@dataclass
class RunsLoop:
    """What the host saw of R runs.

    Attributes:
      losses: (R, num_steps) raw losses as recorded (loss dtype); NaN where not run.
      steps: (R,) updates each run made.
      stops: (R,) the update where the host's float64 rule fired, -1 where it did not.
      calls, resumes: program calls, and runs resumed after an unconfirmed
        in-loop stop.
      run_time_s: seconds in the host loop (device work included).
    """

    losses: np.ndarray
    steps: np.ndarray
    stops: np.ndarray
    calls: int = 0
    resumes: int = 0
    run_time_s: float = 0.0

    def curves(self) -> list[np.ndarray]:
        """Each run's raw losses (float64), up to and including its host stop."""
        ends = np.where(self.stops >= 0, self.stops + 1, self.steps)
        return [np.asarray(row[:end], np.float64) for row, end in zip(self.losses, ends,
                                                                       strict=True)]


def run_all(
    run: Callable[[SweepCarry, SweepInputs], SweepCarry],
    carry: SweepCarry,
    inputs: SweepInputs,
    plan: RunPlan,
    steps_per_call: int,
    progress: bool,
) -> RunsLoop:
    """Call the compiled runs until each has stopped (host rule) or reached its limit.

    Each call advances every live run by up to ``steps_per_call`` updates (a
    stopped run gets ``end = step`` and stays frozen); one device-to-host read per
    call. The float64 rule is applied, incrementally, to the losses of each run
    that the float32 in-loop rule stopped or that has not made all its planned
    updates: the run stops where it fires; a run the in-loop rule stopped where it
    does not is resumed. (A run that made every update is judged by the result.)
    """
    from tqdm.auto import tqdm

    count = len(plan.limits)
    loop = RunsLoop(np.full((count, plan.num_steps), np.nan), np.zeros(count, np.int64),
                    np.full(count, -1))
    monitors = [monitor_init() for _ in range(count)]
    checked = np.zeros(count, np.int64)
    started = time.perf_counter()
    bar = tqdm(total=int(plan.limits.sum()), desc="lr_find", disable=not progress, leave=False)
    try:
        while np.any(live := (loop.stops < 0) & (loop.steps < plan.limits)):
            end = np.where(live, np.minimum(loop.steps + steps_per_call, plan.limits), loop.steps)
            carry = run(carry, inputs._replace(end=end.astype(np.int32)))
            new_steps, codes, loop.losses = jax.device_get((carry.step, carry.code, carry.losses))
            loop.calls += 1
            # Runs the in-loop hint stopped, or that have not run all their planned
            # updates (more calls, or the data ran out): the float64 rule on the losses
            # not yet checked. (A run that made every update is judged by the result.)
            check = (loop.stops < 0) & ((codes != 0) | (new_steps < plan.num_steps))
            for r in np.flatnonzero(check):
                first = int(checked[r])
                values = loop.losses[r, first : new_steps[r]].tolist()
                monitors[r], stop_offset = monitor_fold(monitors[r], values, plan.monitor)
                checked[r] = new_steps[r]
                if stop_offset is not None:
                    loop.stops[r] = first + stop_offset
            bar.update(int(np.sum(new_steps - loop.steps)))
            loop.steps = new_steps.astype(np.int64)
            # The float32 hint fired where the float64 rule did not: go on.
            resume = (codes != 0) & (loop.stops < 0) & (loop.steps < plan.limits)
            if np.any(resume):
                loop.resumes += int(resume.sum())
                carry = carry._replace(code=jnp.asarray(np.where(resume, 0, codes), jnp.int32))
    finally:
        bar.close()
    loop.run_time_s = time.perf_counter() - started
    return loop


__all__ = [
    "RunPlan",
    "RunsLoop",
    "curve_keys",
    "independent_plan",
    "run_all",
    "run_inputs",
    "start_runs",
    "sweeps_plan",
]
