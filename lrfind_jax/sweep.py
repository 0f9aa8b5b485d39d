"""The compiled sweep: one real optimizer update per loop iteration, all on the device.

:func:`sweep_update` is a pure function of ``(carry, inputs)``: set the step's
learning rates, run ``k`` micro-batches (gradient, ``optimizer.update``, apply),
record the mean raw loss and fold it into the core's online monitor
(:func:`lrfind_core.monitor_update` with ``jax.numpy``). :func:`sweep_loop` repeats it
in a ``lax.while_loop`` from ``carry.step`` until ``inputs.end`` or until the
monitor's stop code is nonzero. The same compiled program therefore serves a
whole sweep in one call, a chunk of it (for a progress bar, or for streamed data),
and a resume after the host's float64 check disagreed with the in-loop float32
hint. Nothing in it touches the host, so :func:`vmapped_loop` runs R copies of it
(K repeated sweeps, or the independent runs) as one program with ``jax.vmap``.

Indices: update ``i`` uses micro-batches ``m = i * k + j`` (``j < k``); micro-batch
``m`` reads ``data[(m - inputs.data_offset) % len(data)]`` and, in the stateful
form, gets the key ``jax.random.fold_in(inputs.rng, m)``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from lrfind_core import MonitorSettings, MonitorState, monitor_init, monitor_update
from lrfind_jax.injection import set_learning_rates

logger = logging.getLogger("lrfind_jax")


class SweepCarry(NamedTuple):
    """Everything the loop updates.

    Attributes:
      params: the trained parameters (a pytree).
      opt_state: the optimizer state (its learning rates are set every update).
      model_state: non-trained model state (e.g. BatchNorm statistics), or None.
      step: index of the next real update (int32).
      monitor: the core's online smoothing and stop state (loss dtype).
      code: stop code of the last update (0 none, 1 non-finite, 2 diverged; int32).
      losses: raw loss of every update, NaN where not run yet, shape ``[num_steps]``.
    """

    params: Any
    opt_state: Any
    model_state: Any
    step: Any
    monitor: MonitorState
    code: Any
    losses: Any


class SweepInputs(NamedTuple):
    """Read-only inputs of a loop run.

    Attributes:
      data: stacked micro-batches (leading axis), on the device.
      lrs: per LR group, the LR of every update (``[num_steps]``, the group's dtype).
      rng: the base PRNG key of the stateful form, or None.
      data_offset: micro-step index of ``data[0]`` (int32; 0 for stacked data).
      end: run updates while ``step < end`` (int32).
    """

    data: Any
    lrs: tuple[Any, ...]
    rng: Any
    data_offset: Any
    end: Any


@dataclass(frozen=True)
class SweepSpec:
    """The static part of a compiled sweep (hashable: it keys the program cache).

    Attributes:
      loss_fn: ``loss_fn(params, batch) -> loss`` or, when ``stateful``,
        ``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)``.
      stateful: which of the two forms ``loss_fn`` has.
      transformation: the optax transformation (``init``/``update``).
      lr_leaves: the injected learning rates it sets (:attr:`LrGroup.leaf_index`).
      accumulation_steps: micro-batches per real update (k).
      monitor: the core's smoothing and stop settings.
    """

    loss_fn: Callable[..., Any]
    stateful: bool
    transformation: Any
    lr_leaves: tuple[int, ...]
    accumulation_steps: int
    monitor: MonitorSettings


def micro_loss(spec: SweepSpec, params: Any, model_state: Any, batch: Any, key: Any) -> Any:
    """The user's loss on one micro-batch: ``(loss, new_model_state)``."""
    if spec.stateful:
        return spec.loss_fn(params, model_state, batch, key)
    return spec.loss_fn(params, batch), model_state


def _match_dtypes(new: Any, old: Any) -> Any:
    """``new`` with ``old``'s leaf dtypes, so the loop carry keeps one type."""
    return jax.tree_util.tree_map(
        lambda n, o: n if n.dtype == o.dtype else n.astype(o.dtype),
        new,
        old,
    )


def _index(data: Any, position: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: lax.dynamic_index_in_dim(x, position, axis=0, keepdims=False), data
    )


def sweep_update(spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs) -> SweepCarry:
    """One real optimizer update (``k`` micro-batches); pure, so it vmaps."""
    step = carry.step
    lrs = tuple(lax.dynamic_index_in_dim(table, step, keepdims=False) for table in inputs.lrs)
    opt_state = set_learning_rates(carry.opt_state, spec.lr_leaves, lrs)
    k = spec.accumulation_steps
    length = jax.tree_util.tree_leaves(inputs.data)[0].shape[0]
    loss_dtype = carry.losses.dtype
    grad_fn = jax.value_and_grad(
        lambda p, s, b, key: micro_loss(spec, p, s, b, key), has_aux=True
    )

    def micro(j: Any, state: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        params, opt_state, model_state, total = state
        m = step * k + j
        batch = _index(inputs.data, (m - inputs.data_offset) % length)
        key = None if inputs.rng is None else jax.random.fold_in(inputs.rng, m)
        (loss, new_model_state), grads = grad_fn(params, model_state, batch, key)
        updates, new_opt_state = spec.transformation.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        # Summing loss / k in update order is what the torch backend records.
        loss = loss.astype(loss_dtype)
        total = loss if k == 1 else total + loss / k
        return (
            _match_dtypes(new_params, params),
            _match_dtypes(new_opt_state, opt_state),
            _match_dtypes(new_model_state, model_state),
            total,
        )

    state = (carry.params, opt_state, carry.model_state, jnp.zeros((), loss_dtype))
    state = micro(jnp.int32(0), state) if k == 1 else lax.fori_loop(0, k, micro, state)
    params, opt_state, model_state, loss = state
    monitor, _, code = monitor_update(carry.monitor, loss, spec.monitor, jnp)
    return SweepCarry(
        params=params,
        opt_state=opt_state,
        model_state=model_state,
        step=step + 1,
        monitor=_match_dtypes(monitor, carry.monitor),
        code=jnp.asarray(code, jnp.int32),
        losses=carry.losses.at[step].set(loss),
    )


def sweep_loop(spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs) -> SweepCarry:
    """Run updates from ``carry.step`` while ``step < inputs.end`` and no stop code."""

    def running(c: SweepCarry) -> Any:
        return jnp.logical_and(c.step < inputs.end, c.code == 0)

    return lax.while_loop(running, lambda c: sweep_update(spec, c, inputs), carry)


def guarded_update(spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs) -> tuple[Any, Any]:
    """One step of :func:`sweep_loop` outside a loop: ``(carry, done)``.

    The update is computed and kept only where the loop would have run it
    (``step < end``, no stop code), by a select rather than ``lax.cond``: XLA:CPU
    compiles convolutions inside a conditional as slowly as inside a loop.
    ``done`` says that no run has an update left, so the host can stop
    dispatching.
    """
    running = jnp.logical_and(carry.step < inputs.end, carry.code == 0)
    updated = sweep_update(spec, carry, inputs)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(running, a, b), updated, carry)
    done = jnp.all(jnp.logical_or(new.step >= inputs.end, new.code != 0))
    return new, done


EXECUTIONS = ("while_loop", "per_step")
"""How a program runs its updates: all in one ``lax.while_loop`` (the default,
no per-step dispatch), or one compiled :func:`guarded_update` dispatched per
update from Python, asynchronously, with no host read in between. XLA:CPU
compiles convolutions inside a while loop into slow layouts (jax-ml/jax#12868;
12x slower on the throughput benchmark's CNN), so ``"auto"`` picks ``per_step``
for models with convolutions on the CPU."""


def _inner_jaxprs(params: dict[str, Any]) -> Iterator[Any]:
    """The jaxprs among an equation's params (a cond's branches, a loop's body...)."""
    for value in params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            inner = getattr(item, "jaxpr", item)
            if hasattr(inner, "eqns"):
                yield inner


def uses_convolution(function: Callable[..., Any], *args: Any) -> bool:
    """Whether ``function(*args)`` traces to a convolution (in any nested jaxpr)."""

    def search(jaxpr: Any) -> bool:
        return any(
            equation.primitive.name == "conv_general_dilated"
            or any(search(inner) for inner in _inner_jaxprs(equation.params))
            for equation in jaxpr.eqns
        )

    return search(jax.make_jaxpr(function)(*args).jaxpr)


def choose_execution(
    execution: str, spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs, layout: str
) -> str:
    """``execution`` resolved: ``"auto"`` is ``per_step`` for convolutions on a CPU."""
    if execution != "auto":
        return execution
    leaf = jax.tree_util.tree_leaves(carry.params)[0]
    platforms = {device.platform for device in leaf.devices()}
    if platforms != {"cpu"}:
        return "while_loop"
    step = loop_function(spec, layout, "per_step")
    return "per_step" if uses_convolution(step, carry, inputs) else "while_loop"


LAYOUTS = ("single", "sweeps", "runs")
"""What a compiled program runs: one sweep (:func:`sweep_loop`), K sweeps over the
same LR tables, or independent runs, each with its own LR tables
(:func:`vmapped_loop`)."""


def vmapped_loop(
    spec: SweepSpec,
    batched_lrs: bool,
    carry: SweepCarry,
    inputs: SweepInputs,
    body: Callable[..., Any] = sweep_loop,
) -> SweepCarry:
    """:func:`sweep_loop` for R runs at once, as ``jax.vmap`` over a leading run axis.

    The carry and ``inputs.rng``, ``inputs.data_offset`` and ``inputs.end`` have
    the run axis (``inputs.lrs`` too when ``batched_lrs``); the data is shared.
    The vmapped ``lax.while_loop`` steps while any run is running and leaves the
    finished ones unchanged, so every run stops where it alone would have.
    """
    axes = SweepInputs(data=None, lrs=0 if batched_lrs else None, rng=0, data_offset=0, end=0)
    return jax.vmap(functools.partial(body, spec), in_axes=(0, axes))(carry, inputs)


def loop_function(
    spec: SweepSpec, layout: str, execution: str = "while_loop"
) -> Callable[[SweepCarry, SweepInputs], Any]:
    """The pure ``(carry, inputs) -> carry`` of a layout (one of :data:`LAYOUTS`):
    the whole loop, or for ``per_step`` execution one guarded update of it."""
    if execution == "while_loop":
        if layout == "single":
            return functools.partial(sweep_loop, spec)
        return functools.partial(vmapped_loop, spec, layout == "runs")
    if layout == "single":
        return functools.partial(guarded_update, spec)

    def vmapped_step(carry: SweepCarry, inputs: SweepInputs) -> tuple[SweepCarry, Any]:
        new, done = vmapped_loop(spec, layout == "runs", carry, inputs, body=guarded_update)
        return new, jnp.all(done)

    return vmapped_step


def per_step_runner(
    step: Callable[[SweepCarry, SweepInputs], tuple[SweepCarry, Any]],
) -> Callable[[SweepCarry, SweepInputs], SweepCarry]:
    """``run(carry, inputs)`` from a compiled one-update ``step``.

    Dispatches ``step`` as many times as the furthest run has updates left.
    Dispatch is asynchronous and the host never waits inside the loop: it only
    looks at the ``done`` flags that are already computed, and stops dispatching
    once one says every run has stopped or ended (a stopped run stays frozen, as
    in the while loop).
    """

    def run(carry: SweepCarry, inputs: SweepInputs) -> SweepCarry:
        updates = int(np.max(np.asarray(inputs.end)) - np.min(jax.device_get(carry.step)))
        pending: list[Any] = []
        for _ in range(max(updates, 0)):
            carry, done = step(carry, inputs)
            pending.append(done)
            while pending and pending[0].is_ready():
                if bool(pending.pop(0)):
                    return carry
        return carry

    return run


def fresh_copy(tree: Any) -> Any:
    """``tree`` with every array copied into a new device buffer (never an alias of
    the caller's arrays, so the copy may be donated). One batched transfer, no
    per-shape compilation."""
    try:
        return jax.device_put(tree, may_alias=False)
    except TypeError:  # older jax without may_alias
        return jax.tree_util.tree_map(
            lambda leaf: leaf.copy() if isinstance(leaf, jax.Array)
            else jax.device_put(np.array(leaf, copy=True)),
            tree,
        )


def initial_carry(
    params: Any,
    opt_state: Any,
    model_state: Any,
    num_steps: int,
    loss_dtype: Any,
    *,
    opt_state_is_new: bool = False,
) -> SweepCarry:
    """A fresh carry. The arrays are copies: the loop donates its carry, and the
    caller's params and states must stay valid (``opt_state_is_new``: lrfind made
    ``opt_state`` itself, in buffers nobody else holds, so it is not copied).
    The step, monitor and loss record start as host arrays; the program's call
    transfers them with its other arguments."""
    return SweepCarry(
        params=fresh_copy(params),
        opt_state=opt_state if opt_state_is_new else fresh_copy(opt_state),
        model_state=fresh_copy(model_state),
        step=np.zeros((), np.int32),
        monitor=jax.tree_util.tree_map(_canonical, monitor_init(np, loss_dtype)),
        code=np.zeros((), np.int32),
        losses=np.full((num_steps,), np.nan, loss_dtype),
    )


def _canonical(value: np.ndarray) -> np.ndarray:
    """``value`` in the dtype jax would give it (int32 unless x64 is on)."""
    return np.asarray(value, dtype=jax.dtypes.canonicalize_dtype(value.dtype))


# The program cache: one compiled executable per (spec, argument shapes/dtypes/shardings).

MAX_PROGRAMS = 16
_programs: collections.OrderedDict[Any, Program] = collections.OrderedDict()
_programs_lock = threading.Lock()


@dataclass(frozen=True)
class Program:
    """A compiled loop (:func:`loop_function`), ``run(carry, inputs) -> carry`` (the
    carry is donated), with the loss dtype its carry records and what compiling cost."""

    run: Callable[[SweepCarry, SweepInputs], SweepCarry]
    loss_dtype: Any
    compile_time_s: float
    cached: bool
    execution: str = "while_loop"


def _signature(tree: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple(_leaf_signature(leaf) for leaf in leaves)


def _leaf_signature(leaf: Any) -> tuple[Any, ...]:
    """Shape, dtype, weak type and sharding of one argument leaf.

    An array's own dtype is read directly (``jnp.result_type`` costs ~10 us a
    leaf); it is never coarser than the dtype jax would give it. A Python scalar
    is weakly typed for jax (``2.0`` and ``np.float32(2.0)`` trace differently),
    so it is marked weak: a key never covers two programs.
    """
    if isinstance(leaf, jax.Array | np.ndarray | np.generic):
        dtype, weak = leaf.dtype, bool(getattr(leaf, "weak_type", False))
    else:
        dtype, weak = jnp.result_type(leaf), isinstance(leaf, bool | int | float | complex)
    return (tuple(np.shape(leaf)), dtype, weak, getattr(leaf, "sharding", None))


def program_key(
    spec: SweepSpec,
    state: tuple[Any, Any, Any],
    inputs: SweepInputs,
    num_steps: int,
    layout: str = "single",
    execution: str = "while_loop",
) -> Any:
    """The cache key of a sweep, or None when something in it is unhashable.

    It includes the JAX settings that change the compiled code (matmul precision,
    x64), since a cached executable bypasses ``jax.jit``'s own cache.
    """
    settings = (jax.config.jax_default_matmul_precision, jax.config.jax_enable_x64)
    try:
        key = (
            spec, _signature(state), _signature(inputs), num_steps, layout, execution, settings
        )
        hash(key)
    except TypeError:  # an unhashable loss_fn or optimizer: no reuse across calls
        logger.debug("lr_find: unhashable sweep settings; the program is not cached")
        return None
    return key


def cached_program(key: Any) -> Program | None:
    """The compiled program stored under ``key``, if any."""
    if key is None:
        return None
    with _programs_lock:
        program = _programs.get(key)
        if program is None:
            return None
        _programs.move_to_end(key)
    return dataclasses.replace(program, compile_time_s=0.0, cached=True)


def compile_program(
    spec: SweepSpec,
    carry: SweepCarry,
    inputs: SweepInputs,
    key: Any,
    layout: str = "single",
    execution: str = "while_loop",
) -> Program:
    """Trace, lower and compile the ``layout``'s loop for these arguments; cache it."""
    started = time.perf_counter()
    jitted = jax.jit(loop_function(spec, layout, execution), donate_argnums=0)
    executable = jitted.lower(carry, inputs).compile()
    compile_time = time.perf_counter() - started
    logger.info("lr_find: compiled the %s %s program in %.2f s", layout, execution, compile_time)
    run = executable if execution == "while_loop" else per_step_runner(executable)
    program = Program(run, carry.losses.dtype, compile_time, False, execution)
    if key is not None:
        with _programs_lock:
            _programs[key] = program
            while len(_programs) > MAX_PROGRAMS:
                _programs.popitem(last=False)
    return program


def clear_program_cache() -> None:
    """Forget every compiled sweep."""
    with _programs_lock:
        _programs.clear()


__all__ = [
    "EXECUTIONS",
    "LAYOUTS",
    "Program",
    "SweepCarry",
    "SweepInputs",
    "SweepSpec",
    "cached_program",
    "choose_execution",
    "clear_program_cache",
    "compile_program",
    "fresh_copy",
    "initial_carry",
    "loop_function",
    "micro_loss",
    "program_key",
    "sweep_loop",
    "sweep_update",
    "vmapped_loop",
]
