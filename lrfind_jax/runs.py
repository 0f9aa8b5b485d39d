"""R runs of the compiled program from the same start: their carry, inputs and keys.

Run r belongs to curve ``c = plan.curves[r]`` (:class:`lrfind_core.plan.RunPlan`):

* micro-batch ``m`` (run-relative) reads data index ``(m + c * block) % length``,
  with ``block`` the plan's ``block_batches``: curve 0 reads exactly what a single
  sweep reads, curve c the c-th next block, and the runs of one curve the same;
* its base key is the user's ``rng`` for c = 0 and ``jax.random.fold_in(rng, c)``
  for c > 0; micro-batch m then gets ``fold_in(base, m)``, so the runs of one
  curve see the same per-step keys (the same dropout masks). Typed PRNG keys
  inside ``model_state`` (nnx RNG streams) are folded the same way.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from lrfind_core.plan import RunPlan
from lrfind_jax.injection import LrGroup, lr_tables
from lrfind_jax.sweep import SweepCarry, SweepInputs, fresh_copy, host_monitor


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


@jax.jit
def _folded(model_state: Any, curve: Any) -> Any:
    """A copy of ``model_state`` with its typed keys folded with ``curve``."""
    return jax.tree_util.tree_map(
        lambda leaf: _fold_all(leaf, curve) if _is_typed_key(leaf) else jnp.copy(leaf), model_state
    )


@functools.partial(jax.jit, static_argnames=("runs",))
def _copies(params: Any, opt_state: Any, model_state: Any, curves: Any, *, runs: int) -> Any:
    """R copies of the initial state along a leading axis, typed keys folded by curve."""

    def one(curve: Any) -> tuple[Any, Any, Any]:
        state = jax.tree_util.tree_map(
            lambda leaf: _fold_all(leaf, curve) if _is_typed_key(leaf) else leaf, model_state
        )
        return params, opt_state, state

    return jax.vmap(one)(curves)


def start_runs(
    plan: RunPlan,
    state: tuple[Any, Any, Any],
    loss_dtype: np.dtype,
    opt_state_is_new: bool,
) -> SweepCarry:
    """The carry of the plan's R fresh runs: new buffers (the program donates its carry;
    the caller's arrays stay valid). ``opt_state_is_new``: lrfind made the optimizer
    state itself, so a single run may take it without a copy."""
    params, opt_state, model_state = state
    runs = plan.num_runs
    if runs == 1:  # one run: no run axis on its state
        curve = int(plan.curves[0])
        copied = (params, None if opt_state_is_new else opt_state,
                  model_state if curve == 0 else None)
        params, opt_state_copy, model_state = fresh_copy(copied)  # one dispatch for all
        opt_state = opt_state if opt_state_is_new else opt_state_copy
        if curve != 0:
            model_state = _folded(state[2], jnp.int32(curve))
    else:
        curves = jnp.asarray(plan.curves, jnp.int32)
        params, opt_state, model_state = _copies(params, opt_state, model_state, curves,
                                                 runs=runs)
    points = 1 if plan.val_every is None else plan.num_points
    return SweepCarry(
        params=params,
        opt_state=opt_state,
        model_state=model_state,
        step=np.zeros(runs, np.int32),
        monitor=host_monitor(runs, loss_dtype),
        code=np.zeros(runs, np.int32),
        losses=np.full((runs, plan.num_steps), np.nan, loss_dtype),
        points=np.full((runs, points), np.nan, loss_dtype),
        points_made=np.zeros(runs, np.int32),
    )


def planned_lrs(plan: RunPlan, one_cycle_options: dict[str, Any] | None = None) -> np.ndarray:
    """The reference group's LR at every step of every run (float64, ``[R, num_steps]``):
    the plan's LRs, or under ``target="one_cycle"`` optax's own
    ``cosine_onecycle_schedule`` (its defaults, or ``one_cycle_options``) over the run,
    peaking at the run's LR."""
    if plan.target != "one_cycle":
        return plan.lrs
    options = tuple(sorted((one_cycle_options or {}).items()))
    table = _one_cycle_table(plan.num_steps, options)
    return np.asarray(table(jnp.asarray(plan.lrs[:, 0], jnp.float32)), dtype=np.float64)


@functools.lru_cache(maxsize=32)
def _one_cycle_table(num_steps: int, options: tuple[tuple[str, Any], ...]) -> Any:
    """A compiled ``peaks [R] -> [R, num_steps]`` table of optax's one-cycle, one row
    per peak (compiled once per length and options: evaluated op by op, the schedule
    cost about 50 ms a plan)."""
    steps = jnp.arange(num_steps)

    def rows(peaks: Any) -> Any:
        def row(peak: Any) -> Any:
            schedule = optax.cosine_onecycle_schedule(num_steps, peak, **dict(options))
            return jax.vmap(schedule)(steps)

        return jax.vmap(row)(peaks)

    return jax.jit(rows)


def run_tables(
    plan: RunPlan, groups: tuple[LrGroup, ...], one_cycle_options: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    """Per LR group, the ``[R, num_steps]`` table of every run's LRs (group dtype): numpy
    arrays, which the program's dispatch transfers (a ``jnp.asarray`` per table cost
    about 0.2 ms a call inside ``lr_find``)."""
    lrs = planned_lrs(plan, one_cycle_options)
    flat = lr_tables(lrs.reshape(-1), groups)
    return tuple(table.reshape(lrs.shape) for table in flat)


def run_inputs(
    plan: RunPlan,
    data: Any,
    length: int,
    tables: tuple[Any, ...],
    rng: Any,
    val_data: Any,
    shift: int = 0,
) -> SweepInputs:
    """The program's inputs: run r's data offset makes micro-batch m read
    ``data[(m + plan.block_start(r) - shift) % length]`` (``shift``: positions held
    out before ``data[0]``); every run may go to its last step."""
    starts = np.array([plan.block_start(run) - shift for run in range(plan.num_runs)],
                      np.int64)
    offsets = (-starts) % length
    rngs = None if rng is None else curve_keys(rng, jnp.asarray(plan.curves, jnp.int32))
    return SweepInputs(data, tables, rngs, offsets.astype(np.int32),
                       np.full(plan.num_runs, plan.num_steps, np.int32), val_data)


__all__ = ["curve_keys", "run_inputs", "run_tables", "start_runs"]
