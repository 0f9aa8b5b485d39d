"""The compiled runs: one real optimizer update per loop iteration, all on the device.

:func:`run_update` is a pure function of one run's ``(carry, inputs)``: set the
step's learning rates, run ``k`` micro-batches (gradient, ``optimizer.update``,
apply), record the mean raw loss and fold it into the core's online monitor
(:func:`lrfind_core.monitor.monitor_update` with ``jax.numpy``). With validation,
every ``val_every``-th update is followed by :func:`validation_point`: the mean
eval-mode loss over the validation batches becomes the run's next curve point,
and the monitor watches those points instead. :func:`run_loop` repeats updates
in a ``lax.while_loop`` from ``carry.step`` until ``inputs.end`` or a stop code.

A program runs R such runs (:func:`loop_function`): the carry and the per-run
inputs have a leading run axis; R > 1 runs are ``jax.vmap``-ed (a finished run
stays frozen while others go on), one run is the plain loop on the squeezed
axis. The same compiled program serves a whole run in one call, a chunk of it
(progress bar, streamed data) and a resume after the host's float64 check
disagreed with the in-loop float32 hint.

Indices: update ``i`` uses micro-batches ``m = i * k + j`` (``j < k``); micro-batch
``m`` reads ``data[(m - inputs.data_offset) % len(data)]`` and, in the stateful
form, gets the key ``jax.random.fold_in(inputs.rng, m)``.
"""

from __future__ import annotations

import collections
import contextlib
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

from lrfind_core.monitor import MonitorSettings, MonitorState, monitor_init, monitor_update
from lrfind_jax.injection import set_learning_rates

logger = logging.getLogger("lrfind_jax")


class SweepCarry(NamedTuple):
    """Everything a run updates (one run; a program's carry has a leading run axis).

    Attributes:
      params: the trained parameters (a pytree).
      opt_state: the optimizer state (its learning rates are set every update).
      model_state: non-trained model state (e.g. BatchNorm statistics), or None.
      step: index of the next real update (int32).
      monitor: the core's online smoothing and stop state (loss dtype).
      code: stop code of the last point (0 none, 1 non-finite, 2 diverged; int32).
      losses: raw training loss of every update, NaN where not run, ``[num_steps]``.
      points: validation losses, one per ``val_every`` updates (``[0]`` without).
      points_made: validation points recorded (int32).
    """

    params: Any
    opt_state: Any
    model_state: Any
    step: Any
    monitor: MonitorState
    code: Any
    losses: Any
    points: Any
    points_made: Any


class SweepInputs(NamedTuple):
    """Read-only inputs of a program call (per run: ``lrs``, ``rng``, ``data_offset``, ``end``).

    Attributes:
      data: stacked micro-batches (leading axis), on the device; shared by all runs.
      lrs: per LR group, the LR of every update (``[num_steps]``, the group's dtype).
      rng: the base PRNG key of the stateful form, or None.
      data_offset: micro-step index of ``data[0]`` (int32).
      end: run updates while ``step < end`` (int32).
      val_data: stacked validation batches, shared by all runs, or None.
    """

    data: Any
    lrs: tuple[Any, ...]
    rng: Any
    data_offset: Any
    end: Any
    val_data: Any = None


RUN_AXES = SweepInputs(data=None, lrs=0, rng=0, data_offset=0, end=0, val_data=None)
"""Which inputs have the run axis."""


@dataclass(frozen=True)
class SweepSpec:
    """The static part of a compiled program (hashable: it keys the program cache).

    Attributes:
      loss_fn: ``loss_fn(params, batch) -> loss`` or, when ``stateful``,
        ``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)``.
      stateful: which of the two forms ``loss_fn`` has.
      transformation: the optax transformation (``init``/``update``).
      lr_leaves: the injected learning rates it sets (:attr:`LrGroup.leaf_index`).
      accumulation_steps: micro-batches per real update (k).
      monitor: the core's smoothing and stop settings.
      val_every: updates between validation points, or None (points are the losses).
      val_loss_fn: ``val_loss_fn(params, model_state, batch) -> loss`` in eval mode.
      runs: R, the runs of one program.
    """

    loss_fn: Callable[..., Any]
    stateful: bool
    transformation: Any
    lr_leaves: tuple[int, ...]
    accumulation_steps: int
    monitor: MonitorSettings
    val_every: int | None = None
    val_loss_fn: Callable[..., Any] | None = None
    runs: int = 1


def micro_loss(spec: SweepSpec, params: Any, model_state: Any, batch: Any, key: Any) -> Any:
    """The user's loss on one micro-batch: ``(loss, new_model_state)``."""
    if spec.stateful:
        return spec.loss_fn(params, model_state, batch, key)
    return spec.loss_fn(params, batch), model_state


def extra_args(
    spec: SweepSpec, loss: Any, grads: Any, model_state: Any, batch: Any, key: Any
) -> dict[str, Any]:
    """What optax's extra-args transformations may ask of an update: the loss
    (``value``, e.g. a user's loss-aware transformation; lr_find refuses
    ``contrib.reduce_on_plateau``), the gradient (``grad``) and the
    loss as a function of the params (``value_fn``, for line searches)."""
    if not isinstance(spec.transformation, optax.GradientTransformationExtraArgs):
        return {}

    def value_fn(params: Any) -> Any:
        return micro_loss(spec, params, model_state, batch, key)[0]

    return {"value": loss, "grad": grads, "value_fn": value_fn}


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


def _monitor(carry: SweepCarry, value: Any, spec: SweepSpec) -> tuple[MonitorState, Any]:
    monitor, _, code = monitor_update(carry.monitor, value, spec.monitor, jnp)
    return _match_dtypes(monitor, carry.monitor), jnp.asarray(code, jnp.int32)


def run_update(spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs) -> SweepCarry:
    """One real optimizer update (``k`` micro-batches) of one run; pure, so it vmaps."""
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
        updates, new_opt_state = spec.transformation.update(
            grads, opt_state, params, **extra_args(spec, loss, grads, model_state, batch, key)
        )
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
    if spec.val_every is None:
        monitor, code = _monitor(carry, loss, spec)
    else:  # the monitor watches the validation points (as in the torch backend)
        monitor, code = carry.monitor, carry.code
    return carry._replace(
        params=params,
        opt_state=opt_state,
        model_state=model_state,
        step=step + 1,
        monitor=monitor,
        code=code,
        losses=carry.losses.at[step].set(loss),
    )


def validation_loss(spec: SweepSpec, carry: SweepCarry, val_data: Any) -> Any:
    """The mean eval-mode loss over the stacked validation batches (unrolled: no loop)."""
    count = jax.tree_util.tree_leaves(val_data)[0].shape[0]
    total = jnp.zeros((), carry.points.dtype)
    for index in range(count):
        batch = _index(val_data, index)
        loss = spec.val_loss_fn(carry.params, carry.model_state, batch)
        total = total + loss.astype(carry.points.dtype)
    return total / count


def validation_point(spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs) -> SweepCarry:
    """Record the next validation point and fold it into the monitor."""
    value = validation_loss(spec, carry, inputs.val_data)
    monitor, code = _monitor(carry, value, spec)
    return carry._replace(
        monitor=monitor,
        code=jnp.maximum(carry.code, code),
        points=carry.points.at[carry.points_made].set(value),
        points_made=carry.points_made + 1,
    )


def validation_due(spec: SweepSpec, carry: SweepCarry) -> Any:
    """Whether the run has just made an update that ends with a validation point."""
    if spec.val_every is None:
        return jnp.zeros((), bool)
    return jnp.logical_and(
        carry.step == (carry.points_made + 1) * spec.val_every, carry.code == 0
    )


def run_loop(spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs) -> SweepCarry:
    """Run updates from ``carry.step`` while ``step < inputs.end`` and no stop code.

    With validation, an inner loop runs the updates of one validation period and
    the point follows it, kept where it is due: under ``jax.vmap`` a conditional on
    a per-run flag computes both branches, so a point checked after every update
    would cost a validation pass per update instead of one per period.
    """

    def running(c: SweepCarry) -> Any:
        return jnp.logical_and(c.step < inputs.end, c.code == 0)

    def update(c: SweepCarry) -> SweepCarry:
        return run_update(spec, c, inputs)

    if spec.val_every is None:
        return lax.while_loop(running, update, carry)

    def in_period(c: SweepCarry) -> Any:
        return jnp.logical_and(running(c), jnp.logical_not(validation_due(spec, c)))

    def period(c: SweepCarry) -> SweepCarry:
        c = lax.while_loop(in_period, update, c)
        return lax.cond(
            validation_due(spec, c), lambda x: validation_point(spec, x, inputs), lambda x: x, c
        )

    return lax.while_loop(running, period, carry)


def guarded_update(spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs) -> tuple[Any, Any]:
    """One step of :func:`run_loop` outside a loop: ``(carry, done)``.

    The update is computed and kept only where the loop would have run it
    (``step < end``, no stop code), by a select rather than ``lax.cond``: XLA:CPU
    compiles convolutions inside a conditional as slowly as inside a loop.
    Validation points are a program of their own (:func:`guarded_validation`).
    ``done`` says that the run has no update left.
    """
    running = jnp.logical_and(carry.step < inputs.end, carry.code == 0)
    updated = run_update(spec, carry, inputs)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(running, a, b), updated, carry)
    done = jnp.logical_or(new.step >= inputs.end, new.code != 0)
    return new, done


def guarded_validation(spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs) -> SweepCarry:
    """:func:`validation_point` where it is due, kept by a select."""
    due = validation_due(spec, carry)
    updated = validation_point(spec, carry, inputs)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(due, a, b), updated, carry)


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
    execution: str, spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs
) -> str:
    """``execution`` resolved: ``"auto"`` is ``per_step`` for convolutions on a CPU."""
    if execution != "auto":
        return execution
    leaf = jax.tree_util.tree_leaves(carry.params)[0]
    platforms = {device.platform for device in leaf.devices()}
    if platforms != {"cpu"}:
        return "while_loop"
    step = over_runs(spec, guarded_update)
    return "per_step" if uses_convolution(step, carry, inputs) else "while_loop"


BOOKKEEPING = ("step", "monitor", "code", "losses", "points", "points_made")
"""The carry's fields the host reads per run: they keep a run axis even for one run."""


def _bookkeeping(carry: SweepCarry, change: Callable[[Any], Any]) -> SweepCarry:
    return carry._replace(**{name: jax.tree_util.tree_map(change, getattr(carry, name))
                             for name in BOOKKEEPING})


def over_runs(spec: SweepSpec, body: Callable[..., Any]) -> Callable[..., Any]:
    """``body(spec, carry, inputs)`` of one run, applied to R runs along the leading
    axis: ``jax.vmap`` for R > 1. For R = 1 the run itself, with no batching of its
    operations: its params and states have no run axis at all (no copies to add
    one), only the bookkeeping the host reads (:data:`BOOKKEEPING`) and the per-run
    inputs do."""
    if spec.runs > 1:
        return jax.vmap(functools.partial(body, spec), in_axes=(0, RUN_AXES))

    def single(carry: SweepCarry, inputs: SweepInputs) -> Any:
        one = inputs._replace(
            lrs=tuple(table[0] for table in inputs.lrs),
            rng=None if inputs.rng is None else inputs.rng[0],
            data_offset=inputs.data_offset[0],
            end=inputs.end[0],
        )
        out = body(spec, _bookkeeping(carry, lambda leaf: leaf[0]), one)
        if isinstance(out, SweepCarry):
            return _bookkeeping(out, lambda leaf: leaf[None])
        new, done = out
        return _bookkeeping(new, lambda leaf: leaf[None]), done

    return single


def loop_function(spec: SweepSpec, execution: str = "while_loop") -> Callable[..., Any]:
    """The pure program of R runs: ``(carry, inputs) -> carry`` for the whole loop,
    or for ``per_step`` execution one guarded update ``-> (carry, all_done)``."""
    if execution == "while_loop":
        return over_runs(spec, run_loop)
    update = over_runs(spec, guarded_update)

    def step(carry: SweepCarry, inputs: SweepInputs) -> tuple[SweepCarry, Any]:
        new, done = update(carry, inputs)
        return new, jnp.all(done)

    return step


def per_step_runner(
    step: Callable[[SweepCarry, SweepInputs], tuple[SweepCarry, Any]],
    validate: Callable[[SweepCarry, SweepInputs], SweepCarry] | None,
    val_every: int | None,
) -> Callable[[SweepCarry, SweepInputs], SweepCarry]:
    """``run(carry, inputs)`` from a compiled one-update ``step``.

    Dispatches ``step`` as many times as the furthest run has updates left (and
    the validation program after each update that may end at a validation point).
    Dispatch is asynchronous and the host never waits inside the loop: it only
    looks at the ``done`` flags that are already computed, and stops dispatching
    once one says every run has stopped or ended.
    """

    def run(carry: SweepCarry, inputs: SweepInputs) -> SweepCarry:
        # host arrays (LR tables, offsets, ends) go to the device once, not every update
        inputs = jax.tree_util.tree_map(
            lambda leaf: jnp.asarray(leaf) if isinstance(leaf, np.ndarray) else leaf, inputs)
        steps = np.asarray(jax.device_get(carry.step))
        first, last = int(np.min(steps)), int(np.max(np.asarray(inputs.end)))
        aligned = bool(np.all(steps == steps[0]))
        pending: list[Any] = []
        for update in range(first, last):
            carry, done = step(carry, inputs)
            if validate is not None and (not aligned or (update + 1) % val_every == 0):
                carry = validate(carry, inputs)
            pending.append(done)
            while pending and pending[0].is_ready():
                if bool(pending.pop(0)):
                    return carry
        return carry

    return run


def fresh_copy(tree: Any) -> Any:
    """``tree`` with every array copied into a new device buffer (never an alias of
    the caller's arrays, so the copy may be donated).

    One compiled copy (a single dispatch, about 0.2 ms less per call than a
    transfer for an MLP's params) when every leaf is a jax array on one and the
    same device; otherwise one batched transfer, with no per-shape compilation.
    """
    if _on_one_device(tree):
        return _copied(tree)
    try:
        return jax.device_put(tree, may_alias=False)
    except TypeError:  # older jax without may_alias
        return jax.tree_util.tree_map(
            lambda leaf: leaf.copy() if isinstance(leaf, jax.Array)
            else jax.device_put(np.array(leaf, copy=True)),
            tree,
        )


@jax.jit
def _copied(tree: Any) -> Any:
    return jax.tree_util.tree_map(jnp.copy, tree)


def _on_one_device(tree: Any) -> bool:
    """Whether every leaf is a (non-key) jax array on one device, the same for all."""
    devices = set()
    for leaf in jax.tree_util.tree_leaves(tree):
        if not isinstance(leaf, jax.Array) or jax.dtypes.issubdtype(leaf.dtype,
                                                                     jax.dtypes.prng_key):
            return False
        devices |= leaf.sharding.device_set
        if len(devices) != 1:
            return False
    return bool(devices)


# The program cache: one compiled executable per (spec, argument shapes/dtypes/shardings).

MAX_PROGRAMS = 16
_programs: collections.OrderedDict[Any, Program] = collections.OrderedDict()
_programs_lock = threading.Lock()


@dataclass(frozen=True)
class Program:
    """A compiled program of R runs, ``run(carry, inputs) -> carry`` (the carry is
    donated), with the loss dtype its carry records and what compiling cost."""

    run: Callable[[SweepCarry, SweepInputs], SweepCarry]
    loss_dtype: Any
    compile_time_s: float
    cached: bool
    execution: str = "while_loop"


def signature(tree: Any) -> Any:
    """Structure and per-leaf shape, dtype, weak type and sharding of ``tree``."""
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
    spec: SweepSpec, carry: SweepCarry, inputs: SweepInputs, key: Any, execution: str
) -> Program:
    """Trace, lower and compile the program for these arguments; cache it."""
    started = time.perf_counter()
    jitted = jax.jit(loop_function(spec, execution), donate_argnums=0)
    executable = jitted.lower(carry, inputs).compile()
    if execution == "while_loop":
        run = executable
    else:
        validate = None
        if spec.val_every is not None:
            program = jax.jit(over_runs(spec, guarded_validation), donate_argnums=0)
            validate = program.lower(carry, inputs).compile()
        run = per_step_runner(executable, validate, spec.val_every)
    compile_time = time.perf_counter() - started
    logger.info("lr_find: compiled the %d-run %s program in %.2f s", spec.runs, execution,
                compile_time)
    program = Program(run, carry.losses.dtype, compile_time, False, execution)
    if key is not None:
        with _programs_lock:
            _programs[key] = program
            while len(_programs) > MAX_PROGRAMS:
                _programs.popitem(last=False)
    return program


@contextlib.contextmanager
def explained_tracing() -> Iterator[None]:
    """Turn a tracing error caused by an injected hyperparameter into a clear ValueError."""
    try:
        yield
    except jax.errors.JAXTypeError as error:
        if "hyperparams" not in str(error):
            raise
        raise ValueError(
            "the optimizer's update branches in Python on an injected hyperparameter, which "
            "is data inside lr_find's compiled loop. Inject only what may change: "
            "optax.inject_hyperparams(factory, static_args=('memory_size', ...))(...), or "
            f"pass the factory itself (e.g. optax.lbfgs). JAX said: {str(error).splitlines()[0]}"
        ) from error


def clear_program_cache() -> None:
    """Forget every compiled program."""
    with _programs_lock:
        _programs.clear()


def _canonical(value: np.ndarray) -> np.ndarray:
    """``value`` in the dtype jax would give it (int32 unless x64 is on)."""
    return np.asarray(value, dtype=jax.dtypes.canonicalize_dtype(value.dtype))


def host_monitor(runs: int, loss_dtype: Any) -> MonitorState:
    """R fresh monitor states as host arrays (transferred with the program's call)."""
    state = jax.tree_util.tree_map(_canonical, monitor_init(np, loss_dtype))
    return jax.tree_util.tree_map(lambda leaf: np.repeat(leaf[None], runs, axis=0), state)


__all__ = [
    "EXECUTIONS",
    "Program",
    "SweepCarry",
    "SweepInputs",
    "SweepSpec",
    "cached_program",
    "choose_execution",
    "clear_program_cache",
    "compile_program",
    "fresh_copy",
    "host_monitor",
    "loop_function",
    "micro_loss",
    "over_runs",
    "run_loop",
    "run_update",
    "signature",
]
