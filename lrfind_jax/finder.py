"""``lr_find`` for JAX/optax: the whole LR range test as one compiled program.

The host prepares the sweep (config, optimizer state, learning rates, data),
gets the compiled loop of :mod:`lrfind_jax.sweep` (cached across calls with the
same shapes), and calls it once (``progress=False``, stacked data) or once per
chunk of ``chunk_size`` updates (progress bar, or streamed data). After each call
it reads the step, the stop code and the raw losses in one transfer and, if
another call would follow or the in-loop rule fired, applies the core's float64
stop rule to the losses so far. The in-loop float32 rule is only an early-exit
hint: if it fired where the float64 rule did not (rounding at the boundary), the
loop resumes where it stopped. The result is always
:meth:`lrfind_core.LRFindResult.from_curve` of the float64 schedule and the raw
losses, which applies the float64 rule to the whole curve, so it comes from the
same code as the torch backend's.

Repeated sweeps (``num_sweeps=K``) and independent runs (``mode="independent"``)
run the same loop ``jax.vmap``-ed over R copies of the carry, as one compiled
program (:mod:`lrfind_jax.ensemble`); the host applies the same float64 rule
to every run and builds the result with
:meth:`~lrfind_core.LRFindResult.from_sweeps` or
:meth:`~lrfind_core.LRFindResult.from_runs`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrfind_core import (
    FinderConfig,
    LRFindResult,
    MonitorSettings,
    make_config,
    monitor_fold,
    monitor_init,
)
from lrfind_core._checks import check_choice, check_int
from lrfind_core.batch_source import exhausted_reason
from lrfind_core.versions import package_versions
from lrfind_jax.checks import (
    check_bool,
    check_callable,
    check_loss_output,
    check_opt_state,
    check_optional_int,
    check_params,
    check_rng,
)
from lrfind_jax.data import BatchSequence, batch_example, is_stacked, stacked_data
from lrfind_jax.ensemble import (
    curve_keys,
    independent_plan,
    run_all,
    run_inputs,
    start_runs,
    sweeps_plan,
)
from lrfind_jax.injection import (
    LrGroup,
    check_multi_steps_placement,
    find_lr_groups,
    initial_opt_state,
    low_precision_hyperparams,
    lr_tables,
    prepare_optimizer,
)
from lrfind_jax.sweep import (
    EXECUTIONS,
    Program,
    SweepCarry,
    SweepInputs,
    SweepSpec,
    cached_program,
    choose_execution,
    compile_program,
    initial_carry,
    program_key,
)

logger = logging.getLogger("lrfind_jax")

DEFAULT_CHUNK_SIZE = 20
"""Updates per compiled call in chunked mode (progress bar or streamed data)."""


def _device_of(tree: Any) -> str:
    for leaf in jax.tree_util.tree_leaves(tree):
        devices = getattr(leaf, "devices", None)
        if devices is not None:
            return ", ".join(sorted(str(device) for device in devices()))
    return str(jax.devices()[0])


def lr_find(
    loss_fn: Callable[..., Any],
    params: Any,
    optimizer: Any,
    train_data: Any,
    *,
    start_lr: float | None = None,
    end_lr: float | None = None,
    num_steps: int | None = None,
    schedule: str | None = None,
    preset: str | None = None,
    beta: float | None = None,
    diverge_factor: float | None = None,
    methods: Sequence[str] | None = None,
    method: str | None = None,
    for_schedule: str | None = None,
    model_state: Any = None,
    rng: Any = None,
    opt_state: Any = None,
    accumulation_steps: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    execution: str = "auto",
    num_sweeps: int | None = None,
    mode: str | None = None,
    steps_per_lr: int | None = None,
    average_last: int | None = None,
) -> LRFindResult:
    """Run the LR range test on a JAX model and return the curve and suggestions.

    The learning rate follows the schedule for ``num_steps`` real optimizer
    updates inside one compiled ``lax.while_loop``; the raw loss of every update is
    recorded and the loop exits early once the loss diverges. The core smooths the
    raw losses in float64, applies the stop rule and suggests LRs. ``params`` (and
    ``model_state``, ``opt_state``, the data) are never modified or donated: the
    sweep trains copies and throws them away.

    Args:
      loss_fn: the loss, in one of two forms.

        * ``loss_fn(params, batch) -> loss`` (a scalar), as for ``jax.grad``;
        * with ``model_state=`` and/or ``rng=``: ``loss_fn(params, model_state,
          batch, key) -> (loss, new_model_state)``, the ``has_aux`` form for models
          with mutable state (e.g. BatchNorm statistics) and randomness (dropout).
          ``key`` is ``jax.random.fold_in(rng, m)`` for micro-batch ``m`` (None
          without ``rng``); ``model_state`` is None without ``model_state=``.

        Flax users: see :func:`lr_find_nnx` and :func:`lr_find_linen`.
      params: the parameters to train (a pytree of arrays).
      optimizer: an optax ``GradientTransformation`` whose learning rate is injected,
        ``optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)`` (also inside
        ``optax.chain``, ``optax.multi_transform``, or an outermost
        ``optax.MultiSteps``), or a factory ``lr -> GradientTransformation`` such as
        ``optax.adam``, which lrfind injects itself. With several injected learning
        rates (``multi_transform`` groups), the first in ``jax.tree_util`` order is
        the reference that follows the schedule and every other keeps its ratio to
        it. Only the ``learning_rate`` hyperparameter is changed, in its stored
        dtype (set as float32 values, like the torch backend). Note: with bf16
        params ``inject_hyperparams(optax.adam)`` also stores ``b2=0.999`` in bf16,
        where it rounds to 1.0 and Adam yields NaN (lr_find warns about any such
        low-precision hyperparameter); pass
        ``hyperparam_dtype=jnp.float32`` to it, or the factory ``optax.adam``.
      train_data: stacked data, a tuple, dict or array whose leaves have the step
        as their leading axis (fastest; best already on the device), or a sequence
        of batches: a list, iterator, generator or DataLoader (stacked into chunks
        on the host). See :mod:`lrfind_jax.data`. Data shorter than the sweep is
        cycled with a warning; a one-shot iterator that runs out ends the sweep.
      start_lr, end_lr, num_steps, schedule: the sweep (defaults from the preset:
        1e-7, 10, 100 real updates, ``"exponential"``).
      preset: ``"lrfind"`` (default), ``"fastai"`` or ``"torch-lr-finder"``.
      beta: EWA smoothing weight of the past (default 0.98).
      diverge_factor: stop when the smoothed loss exceeds this times its best (4).
      methods: suggestion methods to compute; ``method``: the default one
        (``"minimum"``).
      for_schedule: what suggestions are for: ``"one_cycle"`` (default: a one-cycle
        peak LR), ``"constant"``, or ``"curve"`` (as read off the curve); any
        other is one call away, ``result.suggest(for_schedule=...)``.
      model_state: non-trained model state passed to and returned by ``loss_fn``
        (switches to the stateful form).
      rng: a PRNG key (``jax.random.key(0)``) for the per-step keys (switches to
        the stateful form).
      opt_state: start from this optimizer state instead of ``optimizer.init(params)``.
      accumulation_steps: micro-batches per real update; lrfind wraps the
        optimizer in ``optax.MultiSteps``. An ``optax.MultiSteps`` optimizer brings
        its own (a constant int ``every_k_schedule``). The LR advances once per real
        update, ``num_steps`` counts real updates, and the recorded loss is the mean
        of the update's micro-batch losses.
      chunk_size: real updates per compiled call in chunked mode (and per
        transferred chunk of a sequence of batches).
      progress: show a tqdm progress bar, updated once per chunk. ``False`` runs
        stacked data in a single call (the fastest).
      execution: ``"while_loop"`` (all updates of a call in one compiled
        ``lax.while_loop``), ``"per_step"`` (one compiled update dispatched per
        step, asynchronously; the host never waits inside a call, it only reads
        the "done" flags of steps already computed), or ``"auto"``
        (default): ``per_step`` for models with convolutions on the CPU, where
        XLA compiles convolutions inside a loop into slow layouts
        (jax-ml/jax#12868), else ``while_loop``. Results are the same.
      num_sweeps: record K sweeps (default 1) as one compiled program: the loop
        ``jax.vmap``-ed over K copies of the initial params, optimizer and model
        state, all K in one ``lax.while_loop`` (finished sweeps stay frozen while
        others run). Sweep k reads the next batches, micro-batch ``m`` at data
        index ``(m + k * num_steps * k_acc) % len(data)`` (sweep 0 reads what a
        single sweep reads), and uses ``jax.random.fold_in(rng, k)`` as its base
        key for k > 0 (sweep 0: ``rng`` itself); typed PRNG keys in
        ``model_state`` (nnx RNG streams) are folded with k the same way. Each
        sweep stops on its own (float64 host rule). The result is the median
        curve, with every sweep, the interquartile band and each sweep's
        suggestions in ``result.ensemble``. Sweep 0 equals a single sweep up to
        float32 rounding (the vmapped program may fuse some ops differently).
        Memory: K copies of params and optimizer state; a sequence of batches is
        pulled and stacked up front, ``K * num_steps * k_acc`` batches on the device.
      mode: ``"sweep"`` (default, the classic range test) or ``"independent"``:
        for each LR of a grid of ``num_steps`` LRs (default 24, no smoothing nor
        trimming), train ``steps_per_lr`` updates (20) at that constant LR from the
        initial state, every run on the same first ``steps_per_lr * k_acc``
        batches with the same per-step keys (curve k of ``num_sweeps`` on the next
        block, with key ``fold_in(rng, k)``), and score it by the mean loss of its
        last ``average_last`` updates (5). All ``num_sweeps * num_steps`` runs are
        one vmapped program (as many copies of the state in memory); runs above the
        first LR where the core's stop rule fires on the scores are NaN, as the
        torch backend never makes them. Only a non-finite loss ends a run early.
      steps_per_lr, average_last: see ``mode`` (independent mode only).

    Returns:
      An :class:`lrfind_core.LRFindResult`. ``result.lrs`` are the float64
      schedule values of the reference group. ``result.meta`` holds
      ``compile_time_s`` (0 when the compiled sweep was reused), ``run_time_s``,
      ``wall_time_s``, the device, the versions and the run facts: ``loop``
      (``"single"`` or ``"chunked"``), ``program_calls``, ``num_steps_run`` (updates
      run, all runs together), ``mode``, ``num_sweeps`` and ``vmapped_runs``.

    A second call with the same functions, optimizer object, shapes, ``num_sweeps``
    and mode reuses the compiled program (pass the same ``loss_fn`` and
    ``optimizer`` objects); the LR range is data, not part of the program.

    Example::

        tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
        result = lr_find(loss_fn, params, tx, (inputs, labels))  # [steps, batch, ...]
        result.suggestion, result.plot(path="lr_find.png")
    """
    started = time.perf_counter()
    check_callable("loss_fn", loss_fn)
    config = make_config(
        preset,
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
        schedule=schedule,
        beta=beta,
        diverge_factor=diverge_factor,
        methods=methods,
        default_method=method,
        for_schedule=for_schedule,
        num_sweeps=num_sweeps,
        mode=mode,
        steps_per_lr=steps_per_lr,
        average_last=average_last,
    )
    accumulation_steps = check_optional_int("accumulation_steps", accumulation_steps, minimum=1)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    check_bool("progress", progress)
    check_choice("execution", execution, ("auto", *EXECUTIONS))
    rng = check_rng(rng)
    check_params(params)
    prepared = prepare_optimizer(optimizer, accumulation_steps)
    opt_state_is_new = opt_state is None
    if opt_state is None:
        opt_state = initial_opt_state(prepared.transformation, params)
    else:
        check_opt_state(prepared.transformation, params, opt_state)
    check_multi_steps_placement(opt_state, prepared)
    low_precision = low_precision_hyperparams(opt_state)
    if low_precision:
        warnings.warn(
            "the optimizer keeps hyperparameters in low precision ("
            + "; ".join(low_precision)
            + "): optax.inject_hyperparams stores them in the params' dtype, where Adam's "
            "b2=0.999 rounds to 1.0 and the first update divides by zero. Build it with "
            "optax.inject_hyperparams(..., hyperparam_dtype=jnp.float32), or pass the "
            "factory (e.g. optax.adam) and lrfind injects it in float32",
            stacklevel=2,
        )
    setup = _Setup(
        config=config,
        loss_fn=loss_fn,
        stateful=model_state is not None or rng is not None,
        params=params,
        opt_state=opt_state,
        opt_state_is_new=opt_state_is_new,
        model_state=model_state,
        rng=rng,
        transformation=prepared.transformation,
        accumulation_steps=prepared.accumulation_steps,
        groups=find_lr_groups(opt_state),
        chunk_size=chunk_size,
        progress=progress,
        execution=execution,
        started=started,
    )
    notices: list[str] = []
    if config.mode == "sweep" and config.num_sweeps == 1:
        result = _one_sweep(setup, train_data, notices)
    else:
        result = _vmapped_runs(setup, train_data, notices)
    for message in notices:
        warnings.warn(message, stacklevel=2)
    return result


@dataclass(frozen=True)
class _Setup:
    """What every mode shares: the config, the user's loss and state, the optimizer."""

    config: FinderConfig
    loss_fn: Callable[..., Any]
    stateful: bool
    params: Any
    opt_state: Any
    opt_state_is_new: bool
    model_state: Any
    rng: Any
    transformation: Any
    accumulation_steps: int
    groups: tuple[LrGroup, ...]
    chunk_size: int
    progress: bool
    execution: str
    started: float

    def spec(self, monitor: MonitorSettings) -> SweepSpec:
        """The static part of the compiled loop, with this stop rule."""
        return SweepSpec(
            loss_fn=self.loss_fn,
            stateful=self.stateful,
            transformation=self.transformation,
            lr_leaves=tuple(group.leaf_index for group in self.groups),
            accumulation_steps=self.accumulation_steps,
            monitor=monitor,
        )

    def loss_dtype(self, program: Program | None, data: Any) -> Any:
        """The dtype the loop records losses in (at least float32)."""
        if program is not None:
            return program.loss_dtype
        dtype = check_loss_output(self.loss_fn, self.stateful, self.params, self.model_state,
                                  batch_example(data), self.rng)
        return jnp.promote_types(dtype, jnp.float32)

    def meta(self, program: Program, loss_dtype: Any, **facts: Any) -> dict[str, Any]:
        """``result.meta``: the run ``facts`` with what every mode records."""
        return {
            "backend": "jax",
            "versions": package_versions(("jax", "jaxlib", "optax", "flax", "numpy")),
            "device": _device_of(self.params),
            **facts,
            "accumulation_steps": self.accumulation_steps,
            "mode": self.config.mode,
            "num_sweeps": self.config.num_sweeps,
            "loss_dtype": str(np.dtype(loss_dtype)),
            "lr_groups": [
                {"path": group.path, "base_lr": group.base_lr, "dtype": str(group.dtype)}
                for group in self.groups
            ],
            "compiled": not program.cached,
            "execution": program.execution,
            "compile_time_s": program.compile_time_s,
        }


def _one_sweep(setup: _Setup, train_data: Any, notices: list[str]) -> LRFindResult:
    """One classic sweep: one compiled loop, called once or once per chunk."""
    config, k, chunk_size = setup.config, setup.accumulation_steps, setup.chunk_size
    schedule64 = config.learning_rates()
    tables = tuple(jnp.asarray(table) for table in lr_tables(schedule64, setup.groups))
    total = config.num_steps
    sequence: BatchSequence | None = None
    first_end = total
    if is_stacked(train_data):
        data = stacked_data(train_data).arrays
        length = jax.tree_util.tree_leaves(data)[0].shape[0]
        if length < total * k:
            notices.append(
                f"train_data holds {length} batches, fewer than the sweep's "
                f"{total * k}; cycling through them"
            )
        chunked = setup.progress
        data_source = "stacked"
    else:
        sequence = BatchSequence(train_data, chunk_size * k, notices=notices)
        data, count = sequence.next_chunk(min(chunk_size, total) * k)
        if count < k:
            raise ValueError(
                f"train_data yielded {count} batch(es), fewer than the {k} micro-batches "
                "of one update"
            )
        first_end = count // k
        chunked = True
        data_source = "sequence"
    steps_per_call = chunk_size if chunked else total

    spec = setup.spec(MonitorSettings(config.beta, config.debias, config.diverge_factor))
    inputs = SweepInputs(data, tables, setup.rng, np.int32(0), np.int32(first_end))
    state = (setup.params, setup.opt_state, setup.model_state)
    key = program_key(spec, state, inputs, total, execution=setup.execution)
    program = cached_program(key)
    loss_dtype = setup.loss_dtype(program, data)
    carry = initial_carry(*state, total, loss_dtype, opt_state_is_new=setup.opt_state_is_new)
    if program is None:
        execution = choose_execution(setup.execution, spec, carry, inputs, "single")
        program = compile_program(spec, carry, inputs, key, execution=execution)

    loop = _run(program.run, carry, inputs, sequence, config, chunk_size, steps_per_call, k,
                setup.progress, notices)
    meta = setup.meta(
        program,
        loss_dtype,
        loop="chunked" if chunked else "single",
        chunk_size=steps_per_call,
        data=data_source,
        num_steps_run=len(loop.losses),
        program_calls=loop.calls,
        in_loop_resumes=loop.resumes,
        vmapped_runs=1,
        run_time_s=loop.run_time_s,
        wall_time_s=time.perf_counter() - setup.started,
    )
    return LRFindResult.from_curve(
        schedule64[: len(loop.losses)],
        np.asarray(loop.losses, dtype=np.float64),
        config=config,
        end_reason=loop.end_reason,
        meta=meta,
    )


def _all_batches(
    train_data: Any, needed: int, what: str, notices: list[str]
) -> tuple[Any, int, int | None, str]:
    """Every micro-batch the runs read, stacked on the device.

    Returns the data, its length, how many batches a one-shot iterator yielded
    when it ran out before ``needed`` (else None) and the kind of data.
    """
    if is_stacked(train_data):
        stacked = stacked_data(train_data)
        if stacked.length < needed:
            notices.append(
                f"train_data holds {stacked.length} batches, fewer than the {needed} that "
                f"{what} read; cycling through them"
            )
        return stacked.arrays, stacked.length, None, "stacked"
    # Pulled and stacked up front: no host work while the runs are on the device.
    sequence = BatchSequence(train_data, needed, notices=notices)
    data, count = sequence.next_chunk(needed)
    return data, needed, count if count < needed else None, "sequence"


def _vmapped_runs(setup: _Setup, train_data: Any, notices: list[str]) -> LRFindResult:
    """K sweeps, or the independent runs, as one vmapped program (:mod:`lrfind_jax.ensemble`)."""
    config, k = setup.config, setup.accumulation_steps
    independent = config.mode == "independent"
    sweeps = config.num_sweeps
    steps = config.steps_per_lr if independent else config.num_steps
    needed = sweeps * steps * k
    what = (f"{sweeps} curve(s) of independent runs of {steps} steps" if independent
            else f"{sweeps} sweeps of {steps} steps")
    data, length, available, data_source = _all_batches(train_data, needed, what, notices)
    if independent:
        if available is not None:
            raise ValueError(
                f"train_data ran out after {available} batches; mode='independent' reads "
                f"{needed} ({what}, {k} micro-batch(es) each). Pass more data or a "
                "re-iterable, which is cycled"
            )
        plan = independent_plan(config, setup.groups, k)
    else:
        plan = sweeps_plan(config, setup.groups, k, available)
        if np.any(plan.limits == 0):
            raise ValueError(
                f"train_data ran out after {available} batches: sweep "
                f"{int(np.argmin(plan.limits))} of {sweeps} gets none (sweep c reads batches "
                f"from c * {steps * k} on). Pass more data, a re-iterable (it is cycled) or "
                "fewer sweeps"
            )
    chunked = setup.progress
    steps_per_call = setup.chunk_size if chunked else steps

    spec = setup.spec(plan.monitor)
    curves = jnp.asarray(plan.curves, jnp.int32)
    rngs = None if setup.rng is None else curve_keys(setup.rng, curves)
    inputs = run_inputs(data, length, plan, rngs)
    state = (setup.params, setup.opt_state, setup.model_state)
    key = program_key(spec, state, inputs, steps, plan.layout, setup.execution)
    program = cached_program(key)
    loss_dtype = setup.loss_dtype(program, data)
    carry = start_runs(*state, curves, num_steps=steps, loss_dtype=np.dtype(loss_dtype))
    if program is None:
        execution = choose_execution(setup.execution, spec, carry, inputs, plan.layout)
        program = compile_program(spec, carry, inputs, key, plan.layout, execution)

    loop = run_all(program.run, carry, inputs, plan, steps_per_call, setup.progress)
    end_reason = None
    short = np.flatnonzero((loop.stops < 0) & (loop.steps < steps))
    if len(short):
        end_reason = exhausted_reason(int(loop.steps[short[0]]))
        notices.append(
            f"train_data ran out after {available} batches; sweep(s) {short.tolist()} ended "
            f"after {loop.steps[short].tolist()} of {steps} steps"
        )
    meta = setup.meta(
        program,
        loss_dtype,
        loop="chunked" if chunked else "single",
        chunk_size=steps_per_call,
        data=data_source,
        num_steps_run=int(loop.steps.sum()),
        program_calls=loop.calls,
        in_loop_resumes=loop.resumes,
        vmapped_runs=len(plan.curves),
        run_time_s=loop.run_time_s,
        wall_time_s=time.perf_counter() - setup.started,
    )
    if independent:
        runs = loop.losses.reshape(sweeps, config.num_steps, steps)
        return LRFindResult.from_runs(config.learning_rates(), runs,
                                      config=config, meta=meta)
    return LRFindResult.from_sweeps(config.learning_rates(), loop.curves(), config=config,
                                    end_reason=end_reason, meta=meta)


@dataclass
class _Loop:
    """What the host loop saw: raw losses (as float), why it ended early, its costs."""

    losses: list[float] = field(default_factory=list)
    end_reason: str | None = None
    calls: int = 0
    resumes: int = 0
    run_time_s: float = 0.0


def _run(
    run: Callable[[SweepCarry, SweepInputs], SweepCarry],
    carry: SweepCarry,
    inputs: SweepInputs,
    sequence: BatchSequence | None,
    config: FinderConfig,
    chunk_size: int,
    steps_per_call: int,
    k: int,
    progress: bool,
    notices: list[str],
) -> _Loop:
    """Call the compiled loop until the sweep ends: planned steps done, the float64
    rule fired, or the data ran out. One device-to-host read per call; with
    streamed data the next chunk is stacked while the device runs this one."""
    from tqdm.auto import tqdm

    total = config.num_steps
    settings = MonitorSettings(config.beta, config.debias, config.diverge_factor)
    monitor, checked = monitor_init(), 0
    loop = _Loop()
    stopped = False
    step = 0
    chunk_end = 0 if sequence is None else int(inputs.end)
    prefetched: tuple[Any, int] | None = None
    started = time.perf_counter()
    bar = tqdm(total=total, desc="lr_find", disable=not progress, leave=False)
    try:
        while step < total and not stopped:
            if sequence is None:
                inputs = inputs._replace(end=np.int32(min(step + steps_per_call, total)))
            elif step == chunk_end:
                wanted = min(chunk_size, total - step) * k
                data, count = prefetched or sequence.next_chunk(wanted)
                prefetched = None
                if count < k:
                    loop.end_reason = exhausted_reason(step)
                    notices.append(
                        f"train_data ran out after {sequence.produced} batches; the sweep "
                        f"ended after {step} of {total} steps"
                    )
                    break
                chunk_end = step + count // k
                inputs = inputs._replace(data=data, data_offset=np.int32(step * k),
                                         end=np.int32(chunk_end))
            carry = run(carry, inputs)
            if sequence is not None and prefetched is None and step < chunk_end < total:
                # Dispatch is asynchronous: stack the next chunk while the device works.
                prefetched = sequence.next_chunk(min(chunk_size, total - chunk_end) * k)
            new_step, code, recorded = jax.device_get((carry.step, carry.code, carry.losses))
            loop.calls += 1
            new_step = int(new_step)
            loop.losses.extend(recorded[step:new_step].tolist())
            bar.update(new_step - step)
            step = new_step
            if code or step < total:
                # The in-loop hint fired, or another call would follow: apply the float64
                # rule to the losses not yet checked. (After the last call the result
                # applies it to the whole curve anyway.)
                monitor, stop_offset = monitor_fold(monitor, loop.losses[checked:], settings)
                checked = len(loop.losses)
                stopped = stop_offset is not None
                if code and not stopped:
                    # The float32 hint fired where the float64 rule does not: go on.
                    loop.resumes += 1
                    logger.debug("lr_find: in-loop stop at step %d not confirmed; resuming",
                                 step)
                    carry = carry._replace(code=jnp.zeros((), jnp.int32))
    finally:
        bar.close()
    loop.run_time_s = time.perf_counter() - started
    return loop


__all__ = ["DEFAULT_CHUNK_SIZE", "lr_find"]
