"""The JAX backend of the shared shell: the planned runs as one compiled program.

:class:`JaxBackend` is what :func:`lrfind_core.shell.run_finder` drives. The
user's arrays are never changed, so its session has nothing to restore. Its
:meth:`~JaxBackend.run` stacks the data the runs read, builds (or reuses) the
compiled program of R runs (:mod:`lrfind_jax.sweep`), and drives it with the one
host loop (:mod:`lrfind_jax.driver`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrfind_core.batch_source import held_out_error
from lrfind_core.plan import RunPlan, RunRecord
from lrfind_core.progress import ProgressBar
from lrfind_core.versions import package_versions
from lrfind_jax.checks import check_devices, check_loss_output, check_validation_loss
from lrfind_jax.data import (
    BatchSequence,
    batch_example,
    is_stacked,
    stacked_data,
    validation_batches,
)
from lrfind_jax.driver import ChunkFeed, drive, end_reasons
from lrfind_jax.injection import LrGroup
from lrfind_jax.options import JaxOptions
from lrfind_jax.runs import run_inputs, run_tables, start_runs
from lrfind_jax.sweep import (
    SweepSpec,
    cached_program,
    choose_execution,
    compile_program,
    explained_tracing,
    signature,
)


@dataclass(frozen=True)
class PlainValidationLoss:
    """``loss_fn(params, batch)`` in the validation form ``(params, model_state, batch)``
    (frozen and hashable, so the compiled program is reused)."""

    loss_fn: Callable[[Any, Any], Any]

    def __call__(self, params: Any, model_state: Any, batch: Any) -> Any:
        return self.loss_fn(params, batch)


@dataclass
class JaxModel:
    """The user's loss and state, and the optimizer lrfind runs."""

    loss_fn: Callable[..., Any]
    stateful: bool
    params: Any
    model_state: Any
    rng: Any
    transformation: Any
    opt_state: Any
    opt_state_is_new: bool
    groups: tuple[LrGroup, ...]
    val_loss_fn: Callable[..., Any] | None


def _devices_of(tree: Any) -> list[str]:
    for leaf in jax.tree_util.tree_leaves(tree):
        devices = getattr(leaf, "devices", None)
        if devices is not None:
            return sorted(str(device) for device in devices())
    return [str(jax.devices()[0])]


class JaxBackend:
    """Runs planned runs of a JAX model; see :mod:`lrfind_core.shell` for the protocol."""

    name = "jax"

    def __init__(self, model: JaxModel, train_data: Any, val_data: Any,
                 options: JaxOptions) -> None:
        self.model, self.train_data, self.val_data, self.options = (
            model, train_data, val_data, options)
        self.is_main_process = jax.process_index() == 0
        self._facts: dict[str, Any] = {}

    def versions(self) -> dict[str, str]:
        return package_versions(("jax", "jaxlib", "optax", "flax", "numpy"))

    def devices(self) -> list[str]:
        return _devices_of(self.model.params)

    @contextlib.contextmanager
    def session(self, notices: list[str]) -> Iterator[None]:
        """Nothing to restore (the runs train copies of the user's arrays); batches
        drawn from a sequence are kept for the call's later plans."""
        self._sequence: BatchSequence | None = None
        self._pulled: tuple[Any, int] | None = None
        self._validation: dict[int | None, Any] = {}
        self._bar = ProgressBar(self.options.progress and self.is_main_process)
        self._compile_time_s, self._programs_compiled, self._calls = 0.0, 0, 0
        try:
            yield
        finally:
            self._bar.close()

    def facts(self) -> dict[str, Any]:
        return self._facts

    def common_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        return meta

    def num_batches(self) -> int | None:
        if is_stacked(self.train_data):
            return stacked_data(self.train_data).length
        try:
            return len(self.train_data)
        except TypeError:
            return None

    def run(self, plan: RunPlan, notices: list[str]) -> RunRecord:
        """Run the planned runs in one compiled program, vmapped over the runs, or one
        after another where a vmapped program would be slower: on XLA:CPU, where
        ``auto`` execution dispatches a model with convolutions update by update,
        vmapped convolutions become grouped ones, about 3x slower per run."""
        return self._run_program(plan, notices)

    def _spec(self, plan: RunPlan) -> SweepSpec:
        model = self.model
        return SweepSpec(
            loss_fn=model.loss_fn, stateful=model.stateful, transformation=model.transformation,
            lr_leaves=tuple(group.leaf_index for group in model.groups),
            accumulation_steps=plan.accumulation_steps, monitor=plan.stop,
            val_every=plan.val_every, val_loss_fn=model.val_loss_fn, runs=plan.num_runs,
        )

    def _run_program(self, plan: RunPlan, notices: list[str]) -> RunRecord:
        """Run every run of ``plan`` in one compiled program, driven by the host loop."""
        model, options = self.model, self.options
        data, length, limits, feed, kind = self._data(plan, notices)
        val_data, shift = None, 0
        if plan.val_from_train:
            data, length, val_data = _hold_out(data, length, plan.val_from_train)
            shift = plan.val_from_train
        elif plan.val_every is not None:
            if plan.val_batches not in self._validation:  # once a call: val_data may be
                self._validation[plan.val_batches] = validation_batches(  # a one-shot iterator
                    self.val_data, plan.val_batches)
            val_data = self._validation[plan.val_batches]
        spec = self._spec(plan)
        tables = run_tables(plan, model.groups, options.one_cycle_options)
        inputs = run_inputs(plan, data, length, tables, model.rng, val_data, shift)
        check_devices({"params": model.params, "model_state": model.model_state,
                       "opt_state": model.opt_state, "train_data": data, "val_data": val_data})
        state = (model.params, model.opt_state, model.model_state)
        key = _program_key(spec, state, inputs, plan, options.execution)
        program = cached_program(key)
        loss_dtype = program.loss_dtype if program else self._loss_dtype(data)
        if program is None and val_data is not None:
            check_validation_loss(model.val_loss_fn, model.params, model.model_state,
                                  batch_example(val_data))
        carry = start_runs(plan, state, np.dtype(loss_dtype), model.opt_state_is_new)
        if program is None and plan.num_runs > 1 and key in _SEQUENTIAL:
            return self._one_by_one(plan, notices)
        if program is None:
            with explained_tracing():
                execution = choose_execution(options.execution, spec, carry, inputs)
                if execution == "per_step" and plan.num_runs > 1:
                    _SEQUENTIAL.add(key)
                    return self._one_by_one(plan, notices)
                program = compile_program(spec, carry, inputs, key, execution)
        chunked = options.progress or feed is not None
        steps_per_call = options.chunk_size if chunked else plan.num_steps
        seen = drive(program.run, carry, inputs, plan, steps_per_call, limits, feed, self._bar)
        self._facts = self._run_facts(program, loss_dtype, kind, chunked, steps_per_call, seen)
        losses = np.asarray(seen.losses, np.float64)
        points = losses if seen.points is None else np.asarray(seen.points, np.float64)
        return RunRecord(losses=losses, points=points, made=seen.made(plan),
                         steps=seen.steps, end_reasons=end_reasons(seen, plan))

    def _one_by_one(self, plan: RunPlan, notices: list[str]) -> RunRecord:
        """Each run of ``plan`` as a one-run program (they share one compilation); none
        may donate lrfind's own optimizer state, which the next starts from."""
        donate, self.model.opt_state_is_new = self.model.opt_state_is_new, False
        try:
            record = merge_records([self._run_program(one_run(plan, run), notices)
                                    for run in range(plan.num_runs)])
        finally:
            self.model.opt_state_is_new = donate
        self._facts["runs_one_by_one"] = True
        return record

    def _loss_dtype(self, data: Any) -> Any:
        model = self.model
        dtype = check_loss_output(model.loss_fn, model.stateful, model.params, model.model_state,
                                  batch_example(data), model.rng)
        return jnp.promote_types(dtype, jnp.float32)

    def _data(
        self, plan: RunPlan, notices: list[str]
    ) -> tuple[Any, int, np.ndarray, ChunkFeed | None, str]:
        """The data of the runs: ``(data, length, limits, feed, kind)``; see the module."""
        needed = plan.batches_read
        limits = np.full(plan.num_runs, plan.num_steps)
        if is_stacked(self.train_data):
            stacked = stacked_data(self.train_data)
            if stacked.length < needed:
                notices.append(
                    f"train_data holds {stacked.length} batches, fewer than the {needed} the "
                    "runs read; cycling through them"
                )
            return stacked.arrays, stacked.length, limits, None, "stacked"
        k = plan.accumulation_steps
        if plan.num_runs == 1 and plan.batches_read == plan.block_batches and not (
            plan.keep_data or self._sequence
        ):
            chunk = self.options.chunk_size
            feed = ChunkFeed(BatchSequence(self.train_data, chunk * k, notices=notices),
                             chunk, k, plan.num_steps)
            data, _ = feed.first()
            return data, chunk * k, limits, feed, "sequence"
        # Pulled and stacked up front: no host work while the runs are on the device.
        data, count = self._pull(needed, notices, cycle=not plan.val_from_train)
        if plan.val_from_train:  # read once; the runs cycle through what is not held out
            return data, count, limits, None, "sequence"
        if count < needed:
            starts = np.array([plan.block_start(run) for run in range(plan.num_runs)])
            limits = np.clip((count - starts) // k, 0, plan.num_steps)
        return data, needed, limits, None, "sequence"

    def _pull(self, needed: int, notices: list[str], cycle: bool = True) -> tuple[Any, int]:
        """The first ``needed`` batches of the sequence, stacked, and how many are real;
        kept, so that the call's later plans read the very same batches."""
        if self._sequence is None:
            self._sequence = BatchSequence(self.train_data, needed, notices=notices,
                                           cycle=cycle)
            self._pulled = self._sequence.next_chunk(needed)
        data, count = self._pulled
        if count < needed and not self._sequence.exhausted:
            more, extra = self._sequence.next_chunk(needed - count)
            if extra:
                data = jax.tree_util.tree_map(
                    lambda old, new: jnp.concatenate([old[:count], new[:extra]]), data, more)
                count += extra
            self._pulled = (data, count)
        width = jax.tree_util.tree_leaves(data)[0].shape[0]
        if width < needed:  # pad to the plan's length (padding is never read)
            data = jax.tree_util.tree_map(
                lambda leaf: jnp.concatenate([leaf, jnp.repeat(leaf[-1:], needed - width, 0)]),
                data)
        return jax.tree_util.tree_map(lambda leaf: leaf[:needed], data), count

    def _run_facts(self, program: Any, loss_dtype: Any, kind: str, chunked: bool,
                   steps_per_call: int, seen: Any) -> dict[str, Any]:
        """The call's facts so far: its last plan's, with compile time and program calls
        summed over every plan of the call."""
        self._compile_time_s += program.compile_time_s
        self._programs_compiled += not program.cached
        self._calls += seen.calls
        return {
            "loss_dtype": str(np.dtype(loss_dtype)),
            "lr_groups": [
                {"path": group.path, "base_lr": group.base_lr, "dtype": str(group.dtype)}
                for group in self.model.groups
            ],
            "compiled": self._programs_compiled > 0,
            "execution": program.execution,
            "compile_time_s": self._compile_time_s,
            "loop": "chunked" if chunked else "single",
            "chunk_size": steps_per_call,
            "data": kind,
            "program_calls": self._calls,
            "in_loop_resumes": seen.resumes,
            "runs_one_by_one": False,
        }


_SEQUENTIAL: set[Any] = set()
"""Program keys of plans whose runs go one by one (per-step execution of several runs)."""


def one_run(plan: RunPlan, run: int) -> RunPlan:
    """Run ``run`` of ``plan`` as a plan of its own (its curve, data and key kept)."""
    return dataclasses.replace(plan, lrs=plan.lrs[run : run + 1],
                               curves=plan.curves[run : run + 1])


def merge_records(records: list[RunRecord]) -> RunRecord:
    """The record of runs made as single-run plans, in order."""
    return RunRecord(
        losses=np.concatenate([record.losses for record in records]),
        points=np.concatenate([record.points for record in records]),
        made=np.concatenate([record.made for record in records]),
        steps=np.concatenate([record.steps for record in records]),
        end_reasons=[reason for record in records for reason in record.end_reasons],
    )


def _hold_out(data: Any, length: int, count: int) -> tuple[Any, int, Any]:
    """The first ``count`` micro-batches as validation data, the rest to train on:
    ``(train, its length, validation)``."""
    if length <= count:
        raise held_out_error(length, count)
    train = jax.tree_util.tree_map(lambda leaf: leaf[count:length], data)
    held = jax.tree_util.tree_map(lambda leaf: leaf[:count], data)
    return train, length - count, held


def _program_key(
    spec: SweepSpec, state: tuple[Any, Any, Any], inputs: Any, plan: RunPlan, execution: str
) -> Any:
    """The cache key of a program, or None when something in it is unhashable.

    It includes the JAX settings that change the compiled code (matmul precision,
    x64), since a cached executable bypasses ``jax.jit``'s own cache.
    """
    settings = (jax.config.jax_default_matmul_precision, jax.config.jax_enable_x64)
    try:
        key = (spec, signature(state), signature(inputs), plan.num_steps, plan.num_points,
               execution, settings)
        hash(key)
    except TypeError:  # an unhashable loss_fn or optimizer: no reuse across calls
        return None
    return key


__all__ = ["JaxBackend", "JaxModel", "PlainValidationLoss"]
