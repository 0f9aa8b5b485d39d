"""``lr_find`` for PyTorch: run the range test, record raw losses, restore everything."""

from __future__ import annotations

import itertools
import logging
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import lrfind_core
from lrfind_core import FinderConfig, LRFindResult, MonitorSettings, make_config
from lrfind_core.monitor import monitor_init, monitor_update
from lrfind_torch.batches import BatchStream, DataExhausted, move_to_device
from lrfind_torch.checks import (
    check_loss,
    check_loss_options,
    check_model_and_optimizer,
    check_sweep_options,
)
from lrfind_torch.state import TrainingSnapshot

logger = logging.getLogger("lrfind_torch")

MAX_CONSECUTIVE_SKIPS = 20
"""A GradScaler that skips this many updates in a row ends the sweep."""


def default_sync_every(device: torch.device) -> int:
    """Steps between host reads of the losses: 1 on CPU (reads are free), 10 elsewhere."""
    return 1 if device.type == "cpu" else 10


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass
class _Step:
    """Everything one optimizer step needs; built once per sweep."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    compute_loss: Callable[[Any], torch.Tensor]
    loss_source: str
    batches: BatchStream
    device: torch.device
    non_blocking: bool
    accumulation_steps: int
    autocast_dtype: torch.dtype | None
    grad_scaler: Any
    max_grad_norm: float | None
    checked: bool = False

    def micro_loss(self) -> torch.Tensor:
        batch = move_to_device(next(self.batches), self.device, self.non_blocking)
        if self.autocast_dtype is None:
            loss = self.compute_loss(batch)
        else:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                loss = self.compute_loss(batch)
        if not self.checked:
            check_loss(loss, self.loss_source)
            self.checked = True
        return loss.reshape(())

    def run(self) -> torch.Tensor:
        """One optimizer step (``accumulation_steps`` micro-batches); the mean loss, detached."""
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.grad_scaler
        if self.accumulation_steps == 1:
            loss = self.micro_loss()
            (loss if scaler is None else scaler.scale(loss)).backward()
            total = loss.detach()
        else:
            total = None
            for _ in range(self.accumulation_steps):
                loss = self.micro_loss() / self.accumulation_steps
                (loss if scaler is None else scaler.scale(loss)).backward()
                total = loss.detach() if total is None else total + loss.detach()
        if self.max_grad_norm is not None:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)
            scaler.update()
        return total

    @torch.no_grad()
    def validation_loss(self, batches: list[Any]) -> torch.Tensor:
        """Mean loss over the fixed validation batches, in eval mode."""
        self.model.eval()
        try:
            total = None
            for batch in batches:
                if self.autocast_dtype is None:
                    loss = self.compute_loss(batch)
                else:
                    with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                        loss = self.compute_loss(batch)
                loss = loss.detach().reshape(()).float()
                total = loss if total is None else total + loss
            assert total is not None
            return total / len(batches)
        finally:
            self.model.train()


def _loss_computation(
    model: torch.nn.Module, loss_fn: Callable | None, step_fn: Callable | None
) -> tuple[Callable[[Any], torch.Tensor], str]:
    if step_fn is not None:
        return (lambda batch: step_fn(model, batch)), "step_fn"

    def supervised(batch: Any) -> torch.Tensor:
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise TypeError(
                "without step_fn each batch must be an (inputs, target) tuple or list, got "
                f"{type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, tuple | list) else "")
                + "; for dicts or other batches pass step_fn(model, batch) -> loss"
            )
        inputs, target = batch
        return loss_fn(model(inputs), target)

    return supervised, "loss_fn"


def _to_host(pending: list[torch.Tensor]) -> list[float]:
    """One device-to-host transfer for all pending losses."""
    if len(pending) == 1:
        return [pending[0].item()]
    return torch.stack(pending).tolist()


def _group_lrs(optimizer: torch.optim.Optimizer, lrs: np.ndarray) -> list[list[float]]:
    """Per step, every group's LR: the schedule times the group's ratio to group 0.

    Values are rounded to float32, the precision the update kernels use, so the
    torch and JAX backends apply the very same LRs.
    """
    bases = [float(group["lr"]) for group in optimizer.param_groups]
    ratios = np.asarray(bases, dtype=np.float64) / bases[0]
    return (lrs[:, None] * ratios[None, :]).astype(np.float32).astype(np.float64).tolist()


def _set_lrs(groups: list[dict[str, Any]], values: list[float]) -> None:
    for group, value in zip(groups, values, strict=True):
        current = group["lr"]
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            group["lr"] = value


def _versions() -> dict[str, str]:
    return {
        "lrfind": lrfind_core.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def lr_find(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: Iterable[Any],
    *,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    step_fn: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None,
    start_lr: float | None = None,
    end_lr: float | None = None,
    num_steps: int | None = None,
    schedule: str | None = None,
    preset: str | None = None,
    beta: float | None = None,
    diverge_factor: float | None = None,
    methods: Sequence[str] | None = None,
    method: str | None = None,
    accumulation_steps: int = 1,
    autocast_dtype: torch.dtype | None = None,
    grad_scaler: Any = None,
    max_grad_norm: float | None = None,
    val_data: Iterable[Any] | None = None,
    val_every: int = 1,
    val_batches: int = 8,
    device: str | torch.device | None = None,
    non_blocking: bool = True,
    sync_every: int | None = None,
    progress: bool = True,
    snapshot: str = "memory",
    snapshot_dir: str | os.PathLike[str] | None = None,
    restore_also: Sequence[Any] = (),
) -> LRFindResult:
    """Run the LR range test on a torch model and return the curve and suggestions.

    The LR of every param group follows the schedule (keeping each group's ratio
    to group 0's LR) while the model trains for ``num_steps`` optimizer steps. The
    raw loss of each step is recorded; the core smooths it, applies the stop rule
    and suggests LRs. Afterwards the model (parameters, buffers, grads, training
    flags), the optimizer (state and param groups), the GradScaler, the RNGs and
    ``restore_also`` are exactly as before, also when the sweep raises.

    Args:
      model: the module to train; it must own every parameter of ``optimizer``.
      optimizer: any torch optimizer; its group LRs set the per-group ratios.
      train_data: an iterable of batches (DataLoader, list, generator...). A
        re-iterable shorter than the sweep is cycled with a warning; a one-shot
        iterator that runs out ends the sweep early.
      loss_fn: ``loss_fn(model(inputs), target)`` for ``(inputs, target)`` batches.
      step_fn: ``step_fn(model, batch) -> loss`` for any other batch (dicts,
        several inputs, GANs). lrfind calls ``backward`` and ``optimizer.step``.
      start_lr, end_lr, num_steps, schedule: the sweep (defaults from the preset:
        1e-7, 10, 100 optimizer steps, ``"exponential"``).
      preset: ``"lrfind"`` (default), ``"fastai"`` or ``"torch-lr-finder"``.
      beta: EWA smoothing weight of the past (default 0.98).
      diverge_factor: stop when the smoothed loss exceeds this times its best (4).
      methods: suggestion methods to compute; ``method``: the default one.
      accumulation_steps: micro-batches per optimizer step; the LR advances per
        optimizer step and the recorded loss is the micro-batch mean.
      autocast_dtype: run forward passes under ``torch.autocast`` with this dtype.
      grad_scaler: a ``torch.amp.GradScaler``. Updates it skips (inf/NaN grads) do
        not advance the LR; they are listed in ``result.meta["skipped_steps"]``.
      max_grad_norm: clip the gradient norm before each step.
      val_data: record the mean loss over the first ``val_batches`` batches of it
        (eval mode, no grad) after every ``val_every``-th step, instead of the
        training loss.
      device: where batches are moved (default: the model's device). The model
        must already be there.
      non_blocking: ``non_blocking`` for batch transfers.
      sync_every: steps between host reads of the losses for the stop rule
        (default 1 on CPU, 10 on accelerators). Steps run past the stop are cut.
      progress: show a tqdm progress bar.
      snapshot: keep the restore copy in CPU ``"memory"`` or in a ``"disk"`` temp
        file (in ``snapshot_dir``), deleted afterwards.
      restore_also: more objects with ``state_dict``/``load_state_dict`` (a second
        optimizer, a discriminator...) to restore afterwards.

    Returns:
      An :class:`lrfind_core.LRFindResult`; ``result.lrs`` are group 0's LRs.
    """
    check_loss_options(loss_fn, step_fn)
    check_model_and_optimizer(model, optimizer)
    check_sweep_options(
        accumulation_steps=accumulation_steps,
        sync_every=sync_every,
        val_every=val_every,
        val_batches=val_batches,
        max_grad_norm=max_grad_norm,
        snapshot=snapshot,
        autocast_dtype=autocast_dtype,
        grad_scaler=grad_scaler,
    )
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
    )
    model_device = _model_device(model)
    device = model_device if device is None else torch.device(device)
    if device.type != model_device.type or (
        device.index is not None and model_device.index is not None and device != model_device
    ):
        raise ValueError(
            f"device={device} but the model is on {model_device}; move the model first"
        )
    if not isinstance(train_data, Iterable):
        raise TypeError(
            f"train_data must be an iterable of batches, got {type(train_data).__name__}"
        )
    sync_every = default_sync_every(device) if sync_every is None else sync_every
    scaler = grad_scaler if grad_scaler is not None and grad_scaler.is_enabled() else None

    started = time.perf_counter()
    snapshot_state = TrainingSnapshot(
        model,
        optimizer,
        grad_scaler=grad_scaler,
        extras=restore_also,
        mode=snapshot,
        directory=snapshot_dir,
    )
    snapshot_time = time.perf_counter() - started
    try:
        # Iterating a shuffling DataLoader draws from the torch RNG: only after the snapshot.
        train_stream = BatchStream(train_data, "train_data", warn_stacklevel=6)
        compute_loss, source = _loss_computation(model, loss_fn, step_fn)
        step = _Step(
            model,
            optimizer,
            compute_loss,
            source,
            train_stream,
            device,
            non_blocking,
            accumulation_steps,
            autocast_dtype,
            scaler,
            max_grad_norm,
        )
        sweep_started = time.perf_counter()
        recorder, end_reason, facts = _sweep(
            step,
            config,
            val_data=val_data,
            val_every=val_every,
            val_batches=val_batches,
            sync_every=sync_every,
            progress=progress,
        )
        sweep_time = time.perf_counter() - sweep_started
    finally:
        restore_started = time.perf_counter()
        try:
            snapshot_state.restore()
        finally:
            snapshot_state.close()
        restore_time = time.perf_counter() - restore_started
    meta = {
        "backend": "torch",
        "versions": _versions(),
        "device": str(device),
        "loss_kind": "validation" if val_data is not None else "train",
        "accumulation_steps": accumulation_steps,
        "sync_every": sync_every,
        "autocast_dtype": None if autocast_dtype is None else str(autocast_dtype),
        "snapshot": snapshot,
        "sweep_time_s": sweep_time,
        "snapshot_time_s": snapshot_time,
        "restore_time_s": restore_time,
        "wall_time_s": time.perf_counter() - started,
        **facts,
    }
    planned_points = config.num_steps // val_every if val_data is not None else None
    return LRFindResult.from_curve(
        recorder.lrs,
        recorder.losses,
        config=config,
        end_reason=end_reason,
        meta=meta,
        planned_points=planned_points,
    )


class _Recorder:
    """Recorded (lr, raw loss) pairs, read from the device in batches, with the stop rule."""

    def __init__(self, config: FinderConfig, sync_every: int) -> None:
        self.settings = MonitorSettings(config.beta, config.debias, config.diverge_factor)
        self.monitor = monitor_init()
        self.sync_every = sync_every
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.pending: list[torch.Tensor] = []
        self.pending_lrs: list[float] = []
        self.stopped = False

    def add(self, lr: float, loss: torch.Tensor) -> int:
        """Queue one point; at a sync point, read the queue. Returns points read."""
        self.pending.append(loss)
        self.pending_lrs.append(lr)
        return self.flush() if len(self.pending) >= self.sync_every else 0

    def flush(self) -> int:
        """Read every queued loss to the host and apply the stop rule to each."""
        if not self.pending:
            return 0
        count = len(self.pending)
        for lr, value in zip(self.pending_lrs, _to_host(self.pending), strict=True):
            self.lrs.append(lr)
            self.losses.append(value)
            self.monitor, _, code = monitor_update(self.monitor, value, self.settings)
            if code:
                self.stopped = True
                break
        self.pending.clear()
        self.pending_lrs.clear()
        return count


def _validation_batches(val_data: Iterable[Any], count: int, step: _Step) -> list[Any]:
    batches = [
        move_to_device(batch, step.device, step.non_blocking)
        for batch in itertools.islice(val_data, count)
    ]
    if not batches:
        raise ValueError("val_data is empty: it yielded no batch")
    return batches


def _sweep(
    step: _Step,
    config: FinderConfig,
    *,
    val_data: Iterable[Any] | None,
    val_every: int,
    val_batches: int,
    sync_every: int,
    progress: bool,
) -> tuple[_Recorder, str | None, dict[str, Any]]:
    """The training loop. Returns the recorder, why the sweep ended early, and facts."""
    from tqdm.auto import tqdm

    schedule = config.learning_rates().tolist()
    group_lrs = _group_lrs(step.optimizer, config.learning_rates())
    groups = step.optimizer.param_groups
    validation = None if val_data is None else _validation_batches(val_data, val_batches, step)
    step.model.train()
    recorder = _Recorder(config, sync_every)
    skipped: list[dict[str, float]] = []
    end_reason: str | None = None
    consecutive_skips = 0
    index = 0
    steps_run = 0
    bar = tqdm(total=config.num_steps, desc="lr_find", disable=not progress, leave=False)
    try:
        while index < config.num_steps and not recorder.stopped:
            _set_lrs(groups, group_lrs[index])
            scale_before = None if step.grad_scaler is None else step.grad_scaler.get_scale()
            try:
                loss = step.run()
            except DataExhausted as exhausted:
                end_reason = f"data exhausted after {index} steps"
                warnings.warn(f"{exhausted}; the sweep ended after {index} steps", stacklevel=3)
                break
            steps_run += 1
            if scale_before is not None and step.grad_scaler.get_scale() < scale_before:
                skipped.append({"step": index, "lr": schedule[index], "loss": loss.item()})
                consecutive_skips += 1
                if consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                    end_reason = f"GradScaler skipped {MAX_CONSECUTIVE_SKIPS} updates in a row"
                    break
                continue
            consecutive_skips = 0
            index += 1
            if validation is not None:
                if index % val_every:
                    continue
                loss = step.validation_loss(validation)
            if recorder.add(schedule[index - 1], loss):
                bar.update(index - bar.n)
        if not recorder.stopped:
            recorder.flush()
        bar.update(index - bar.n)
    finally:
        bar.close()
    facts = {
        "steps_run": steps_run,
        "skipped_steps": skipped,
        "val_every": val_every if validation is not None else None,
    }
    return recorder, end_reason, facts
