"""The torch backend of the shared shell: snapshot and restore, and the planned runs.

:class:`TorchBackend` is what :func:`lrfind_core.shell.run_finder` drives. Its
session snapshots everything the runs change and restores it afterwards, error or
not. Its :meth:`~TorchBackend.run` makes the planned runs one after the other,
each from the snapshot, on the batches the plan assigns, and records raw losses
on the device, read every ``sync_every`` steps (:mod:`lrfind_torch.recording`).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from lrfind_core.batch_source import (
    BatchSource,
    DataExhausted,
    exhausted_reason,
    held_out_error,
)
from lrfind_core.plan import RunPlan, RunRecord, curve_finished
from lrfind_core.progress import ProgressBar
from lrfind_core.schedules import group_learning_rates
from lrfind_core.versions import package_versions
from lrfind_torch.batches import (
    BatchTape,
    kept_loader_generators,
    kept_loader_positions,
    move_to_device,
)
from lrfind_torch.checks import check_device
from lrfind_torch.distributed import (
    active_group,
    is_collective_failure,
    rank,
    share_from_rank0,
    world_size,
)
from lrfind_torch.one_cycle import one_cycle_for_run
from lrfind_torch.options import TorchOptions
from lrfind_torch.recording import LossRecorder
from lrfind_torch.state import TrainingSnapshot
from lrfind_torch.step import TrainStep

LR_BLOCK = 256
"""Steps whose LRs a run turns into Python floats at once."""


def default_sync_every(device: torch.device) -> int:
    """Steps between host reads of the losses: 1 on CPU (reads are free), 10 elsewhere."""
    return 1 if device.type == "cpu" else 10


def set_group_lrs(groups: list[dict[str, Any]], values: list[float]) -> None:
    """Set every param group's LR (in place where it is a tensor)."""
    for group, value in zip(groups, values, strict=True):
        current = group["lr"]
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            group["lr"] = value


def curve_seeds(count: int) -> list[int | None]:
    """Seeds of curves 1..count-1, drawn from the user's RNG, which curve 0 uses as is."""
    state = torch.get_rng_state()
    drawn = torch.randint(0, 2**62, (max(count - 1, 0),)).tolist()
    torch.set_rng_state(state)
    return [None, *drawn]


class TorchBackend:
    """Runs planned runs on a torch model; see :mod:`lrfind_core.shell` for the protocol."""

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        train_data: Iterable[Any],
        compute_loss: tuple[Callable[[Any], torch.Tensor], str],
        val_data: Iterable[Any] | None,
        options: TorchOptions,
    ) -> None:
        self.model, self.optimizer, self.options = model, optimizer, options
        self.train_data, self.val_data = train_data, val_data
        self.compute_loss, self.loss_source = compute_loss
        self.target = check_device(model, options.device)
        self.sync_every = options.sync_every or default_sync_every(self.target)
        self.group = active_group(options.process_group)
        self.is_main_process = rank(self.group) == 0
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.snapshot: TrainingSnapshot | None = None
        self.times = {"snapshot_time_s": 0.0, "restore_time_s": 0.0}
        self._tape: BatchTape | None = None
        self._validation: dict[tuple[bool, int], list[Any]] = {}
        self._runs_made = 0

    def versions(self) -> dict[str, str]:
        return package_versions(("torch", "numpy"))

    def devices(self) -> list[str]:
        target = self.target
        if target.type == "cuda" and target.index is None:
            return [f"cuda:{torch.cuda.current_device()}"]
        return [str(target)]

    @contextlib.contextmanager
    def session(self, notices: list[str]) -> Iterator[None]:
        """Snapshot on entry; on exit restore everything, whatever happened."""
        started = time.perf_counter()
        extras = list(self.options.restore_also)
        self.snapshot = TrainingSnapshot(
            [self.model, *(x for x in extras if isinstance(x, torch.nn.Module))],
            [self.optimizer, *(x for x in extras if isinstance(x, torch.optim.Optimizer))],
            grad_scaler=self.options.grad_scaler,
            extras=[
                x for x in extras if not isinstance(x, torch.nn.Module | torch.optim.Optimizer)
            ],
            mode=self.options.snapshot,
            directory=self.options.snapshot_dir,
        )
        self.times["snapshot_time_s"] = time.perf_counter() - started
        self._tape, self._validation, self._runs_made = None, {}, 0
        self._bar = ProgressBar(self.options.progress and self.is_main_process)
        try:
            loaders = (self.train_data, self.val_data)
            with kept_loader_positions(loaders), kept_loader_generators(loaders):
                yield
        except Exception as error:
            if self.group is not None and is_collective_failure(error):
                raise RuntimeError(
                    f"lr_find stopped on rank {rank(self.group)}: a collective failed, most "
                    "likely because another rank raised or stopped responding (see its "
                    "error). This rank's model, optimizer and RNG were restored."
                ) from error
            raise
        finally:
            self._bar.close()
            restore_started = time.perf_counter()
            try:
                self.snapshot.restore()
            finally:
                self.snapshot.close()
            self.times["restore_time_s"] = time.perf_counter() - restore_started

    def facts(self) -> dict[str, Any]:
        options = self.options
        autocast = options.autocast_dtype
        return {
            "world_size": world_size(self.group),
            "sync_every": self.sync_every,
            "autocast_dtype": None if autocast is None else str(autocast),
            "snapshot": options.snapshot,
            "train_mode": options.train_mode,
            **self.times,
        }

    def common_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        return share_from_rank0(meta, self.group)

    def num_batches(self) -> int | None:
        try:
            return len(self.train_data)  # type: ignore[arg-type]
        except TypeError:
            return None

    def run(self, plan: RunPlan, notices: list[str]) -> RunRecord:
        """Make the planned runs one after the other, each from the snapshot."""
        assert self.snapshot is not None, "run() belongs inside session()"
        if self._runs_made:  # a later plan of the call: from the initial state again
            self.snapshot.restore()
        if self._tape is None:
            # Iterating a shuffling DataLoader draws from the torch RNG: only after the snapshot.
            held_out = plan.val_from_train or None
            source = BatchSource(self.train_data, "train_data", notices, cycle=not held_out)
            self._tape = BatchTape(source, plan.replays_data, wrap_from=held_out)
        tape = self._tape
        tape.replay = tape.replay or plan.replays_data
        step = self._train_step(tape, plan.accumulation_steps)
        validation = self._validation_batches(plan, tape)
        seeds = curve_seeds(plan.num_curves)
        record = RunRecord.empty(plan)
        self._bar.grow(plan.num_runs * plan.num_steps)
        for run, curve in enumerate(plan.curves.tolist()):
            if plan.skip_after_stop and self._curve_done(plan, record, run, curve):
                continue
            if run:
                self.snapshot.restore()
                if seeds[curve] is not None:
                    torch.manual_seed(seeds[curve])
            tape.seek(plan.block_start(run), preload=plan.block_batches)
            self._runs_made += 1
            self._one_run(plan, run, step, validation, record, self._bar.update)
        return record

    @staticmethod
    def _curve_done(plan: RunPlan, record: RunRecord, run: int, curve: int) -> bool:
        """Whether the earlier runs of ``curve`` already fired the stop on their scores."""
        first = int(np.flatnonzero(plan.curves == curve)[0])
        made = [r for r in range(first, run) if record.steps[r]]
        return bool(made) and curve_finished(plan, record.losses[made])

    def _train_step(self, tape: BatchTape, accumulation_steps: int) -> TrainStep:
        options = self.options
        return TrainStep(
            self.model, self.optimizer, self.compute_loss, self.loss_source, tape, self.target,
            options.non_blocking, accumulation_steps, options.autocast_dtype,
            options.enabled_scaler, options.max_grad_norm,
        )

    def _validation_batches(self, plan: RunPlan, tape: BatchTape) -> list[Any] | None:
        """The plan's fixed validation batches on the device (made once per call): the
        first of ``val_data``, or the held-out first micro-batches of the training data
        (read before any run, so that no run draws them)."""
        held_out = plan.val_from_train > 0
        if plan.val_every is None and not held_out:
            return None
        key = (held_out, plan.val_from_train if held_out else plan.val_batches)
        if key not in self._validation:
            if held_out:
                tape.seek(0)
                try:
                    batches: Iterable[Any] = [next(tape) for _ in range(plan.val_from_train)]
                except DataExhausted:
                    raise held_out_error(tape.source.produced, plan.val_from_train) from None
            else:
                batches = itertools.islice(self.val_data, plan.val_batches)
            moved = [move_to_device(b, self.target, self.options.non_blocking) for b in batches]
            if not moved:
                raise ValueError("val_data is empty: it yielded no batch")
            self._validation[key] = moved
        return None if plan.val_every is None else self._validation[key]

    def _one_run(
        self,
        plan: RunPlan,
        run: int,
        step: TrainStep,
        validation: list[Any] | None,
        record: RunRecord,
        advance: Callable[[int], Any],
    ) -> None:
        """Run ``run`` of ``plan`` to its end, its stop or the end of the data."""
        lrs = plan.lrs[run]
        table = group_learning_rates(lrs, self.base_lrs)
        groups = self.optimizer.param_groups
        scheduler = None
        if plan.target == "one_cycle":
            peaks = [float(lrs[0]) * base / self.base_lrs[0] for base in self.base_lrs]
            scheduler = one_cycle_for_run(self.optimizer, peaks, plan.num_steps,
                                          self.options.one_cycle_options)
        if self.options.train_mode:
            self.model.train()
        recorder = LossRecorder(plan.stop, self.sync_every, self.group)
        end_reason = None
        index = shown = 0
        num_steps = plan.num_steps
        while index < num_steps and not recorder.stopped:
            if index % LR_BLOCK == 0:  # Python floats a block at a time: a long plan stays small
                block_lrs = lrs[index : index + LR_BLOCK].tolist()
                block_rows = table[index : index + LR_BLOCK].tolist()
            lr = block_lrs[index % LR_BLOCK]
            if scheduler is None:
                set_group_lrs(groups, block_rows[index % LR_BLOCK])
            try:
                loss, found_inf = step.run()
            except DataExhausted:
                end_reason = exhausted_reason(index)
                break
            if scheduler is not None:
                scheduler.step()
            point = loss
            if validation is not None:
                point = step.validation_loss(validation) if plan.is_point(index) else None
            index += 1
            if recorder.add(index - 1, lr, loss, found_inf, point):
                advance(index - shown)
                shown = index
        recorder.finish()
        advance(index - shown)
        record.losses[run, : len(recorder.step_losses)] = recorder.step_losses
        record.points[run, : len(recorder.losses)] = recorder.losses
        record.made[run] = len(recorder.losses)
        record.steps[run] = index
        record.end_reasons[run] = recorder.end_reason or end_reason
        record.skipped += [{"run": run, **entry} for entry in recorder.skipped]


__all__ = ["TorchBackend", "default_sync_every"]
