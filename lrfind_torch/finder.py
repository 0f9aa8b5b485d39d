"""``lr_find`` for PyTorch: run the range test, record raw losses, restore everything."""

from __future__ import annotations

import itertools
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from lrfind_core import FinderConfig, LRFindResult, make_config
from lrfind_core.batch_source import BatchSource, DataExhausted, exhausted_reason
from lrfind_core.ensemble import end_losses, score_stop
from lrfind_core.schedules import group_learning_rates
from lrfind_core.versions import package_versions
from lrfind_torch.batches import move_to_device
from lrfind_torch.checks import (
    check_loss_options,
    check_model_and_optimizer,
    check_sweep_options,
)
from lrfind_torch.distributed import (
    active_group,
    is_collective_failure,
    rank,
    share_from_rank0,
    world_size,
)
from lrfind_torch.recording import LossRecorder, read_steps
from lrfind_torch.state import TrainingSnapshot
from lrfind_torch.step import TrainStep, loss_computation

logger = logging.getLogger("lrfind_torch")


def default_sync_every(device: torch.device) -> int:
    """Steps between host reads of the losses: 1 on CPU (reads are free), 10 elsewhere."""
    return 1 if device.type == "cpu" else 10


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _group_lrs(optimizer: torch.optim.Optimizer, lrs: np.ndarray) -> list[list[float]]:
    """Per step, every group's LR (:func:`lrfind_core.schedules.group_learning_rates`)."""
    bases = [float(group["lr"]) for group in optimizer.param_groups]
    return group_learning_rates(lrs, bases).tolist()


def _set_lrs(groups: list[dict[str, Any]], values: list[float]) -> None:
    for group, value in zip(groups, values, strict=True):
        current = group["lr"]
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            group["lr"] = value


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
    for_schedule: str | None = None,
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
    num_sweeps: int | None = None,
    mode: str | None = None,
    steps_per_lr: int | None = None,
    average_last: int | None = None,
    process_group: Any = None,
    plot_path: str | os.PathLike[str] | None = None,
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
      methods: suggestion methods to compute; ``method``: the default one
        (``"minimum"``).
      for_schedule: what suggestions are for: ``"one_cycle"`` (default: a one-cycle
        peak LR), ``"constant"``, or ``"curve"`` (as read off the curve); any
        other is one call away, ``result.suggest(for_schedule=...)``.
      accumulation_steps: micro-batches per optimizer step; the LR advances per
        optimizer step and the recorded loss is the micro-batch mean.
      autocast_dtype: run forward passes under ``torch.autocast`` with this dtype.
      grad_scaler: a ``torch.amp.GradScaler``. An update it skips (inf/NaN grads)
        still uses up its LR and keeps its loss (measured before the update); it is
        listed in ``result.meta["skipped_steps"]``. 20 skips in a row, or a sweep
        whose every update is skipped, end the curve where the skips began; in
        independent mode, runs whose every update is skipped are named in a
        warning (an error when no run trained).
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
      process_group: under ``torch.distributed`` (DDP, FSDP), the group whose ranks
        average their losses (default: the world). Every rank must call
        ``lr_find`` with the same settings; all stop at the same step and return
        the same result. Only rank 0 shows the progress bar and saves the plot.
      num_sweeps: record K curves, each from the initial state on the next batches
        with its own RNG seed (the first uses yours); the result is their median
        curve with an interquartile band and the spread of the suggestions.
      mode: ``"sweep"`` (default, the classic range test) or ``"independent"``:
        for each LR of a grid of ``num_steps`` LRs (default 24), train
        ``steps_per_lr`` steps (20) from the initial state on the same batches and
        score it by the mean loss of its last ``average_last`` steps (5). It costs
        ``num_steps * steps_per_lr`` steps but removes the learning-progress
        confound of the sweep.
      plot_path: also save the plot there (rank 0 only).

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
        for_schedule=for_schedule,
        num_sweeps=num_sweeps,
        mode=mode,
        steps_per_lr=steps_per_lr,
        average_last=average_last,
    )
    if config.mode == "independent" and val_data is not None:
        raise ValueError("val_data is not supported with mode='independent'; use mode='sweep'")
    if val_data is not None and val_every > config.num_steps:
        raise ValueError(
            f"val_every must be <= num_steps ({config.num_steps}), got {val_every}: no "
            "validation point would be recorded"
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
    group = active_group(process_group)
    scaler = grad_scaler if grad_scaler is not None and grad_scaler.is_enabled() else None

    started = time.perf_counter()
    extra_modules = [x for x in restore_also if isinstance(x, torch.nn.Module)]
    extra_optimizers = [x for x in restore_also if isinstance(x, torch.optim.Optimizer)]
    notices: list[str] = []
    snapshot_state = TrainingSnapshot(
        [model, *extra_modules],
        [optimizer, *extra_optimizers],
        grad_scaler=grad_scaler,
        extras=[
            x for x in restore_also if not isinstance(x, torch.nn.Module | torch.optim.Optimizer)
        ],
        mode=snapshot,
        directory=snapshot_dir,
    )
    snapshot_time = time.perf_counter() - started
    try:
        # Iterating a shuffling DataLoader draws from the torch RNG: only after the snapshot.
        train_stream = BatchSource(train_data, "train_data", notices)
        compute_loss, source = loss_computation(model, loss_fn, step_fn)
        step = TrainStep(
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
        validation = None
        if val_data is not None:
            validation = _validation_batches(val_data, val_batches, step)
        sweep_started = time.perf_counter()
        show = progress and rank(group) == 0
        if config.mode == "independent":
            curves, facts = _independent(step, config, snapshot_state, progress=show, group=group)
        else:
            curves, facts = _sweeps(
                step,
                config,
                snapshot_state,
                validation=validation,
                val_every=val_every,
                sync_every=sync_every,
                progress=show,
                group=group,
            )
        sweep_time = time.perf_counter() - sweep_started
    except Exception as error:
        if group is not None and is_collective_failure(error):
            raise RuntimeError(
                f"lr_find stopped on rank {rank(group)}: a collective failed, most likely "
                "because another rank raised or stopped responding (see its error). This "
                "rank's model, optimizer and RNG were restored."
            ) from error
        raise
    finally:
        restore_started = time.perf_counter()
        try:
            snapshot_state.restore()
        finally:
            snapshot_state.close()
        restore_time = time.perf_counter() - restore_started
    end_reason = facts.pop("end_reason", None)
    meta = {
        "backend": "torch",
        "versions": package_versions(("torch", "numpy")),
        "device": device.type,
        "world_size": world_size(group),
        "loss_kind": "validation" if val_data is not None else "train",
        "accumulation_steps": accumulation_steps,
        "sync_every": sync_every,
        "autocast_dtype": None if autocast_dtype is None else str(autocast_dtype),
        "snapshot": snapshot,
        "mode": config.mode,
        "num_sweeps": config.num_sweeps,
        "sweep_time_s": sweep_time,
        "snapshot_time_s": snapshot_time,
        "restore_time_s": restore_time,
        "wall_time_s": time.perf_counter() - started,
        **facts,
    }
    meta = share_from_rank0(meta, group)
    for message in notices:
        warnings.warn(message, stacklevel=2)
    if config.mode == "sweep" and not any(len(curve) for curve in curves):
        raise RuntimeError(f"lr_find recorded no step: {end_reason}")
    if config.mode == "independent":
        result = LRFindResult.from_runs(
            config.learning_rates(), curves, config=config, made=facts["runs_made"], meta=meta
        )
    else:
        curve_lrs = config.learning_rates()
        if val_data is not None:
            curve_lrs = curve_lrs[val_every - 1 :: val_every]
        result = LRFindResult.from_sweeps(
            curve_lrs,
            curves,
            config=config,
            end_reason=end_reason,
            planned_points=len(curve_lrs),
            meta=meta,
        )
    if plot_path is not None and rank(group) == 0:
        result.plot(path=plot_path)
    return result


def _validation_batches(val_data: Iterable[Any], count: int, step: TrainStep) -> list[Any]:
    batches = [
        move_to_device(batch, step.device, step.non_blocking)
        for batch in itertools.islice(val_data, count)
    ]
    if not batches:
        raise ValueError("val_data is empty: it yielded no batch")
    return batches


def _sweep(
    step: TrainStep,
    config: FinderConfig,
    *,
    validation: list[Any] | None,
    val_every: int,
    sync_every: int,
    progress: bool,
    group: Any,
) -> tuple[LossRecorder, str | None, dict[str, Any]]:
    """One classic sweep. Returns the recorder, why the sweep ended early, and facts."""
    from tqdm.auto import tqdm

    schedule = config.learning_rates().tolist()
    group_lrs = _group_lrs(step.optimizer, config.learning_rates())
    groups = step.optimizer.param_groups
    step.model.train()
    recorder = LossRecorder(config, sync_every, group)
    end_reason: str | None = None
    index = 0
    bar = tqdm(total=config.num_steps, desc="lr_find", disable=not progress, leave=False)
    try:
        while index < config.num_steps and not recorder.stopped:
            _set_lrs(groups, group_lrs[index])
            try:
                loss, found_inf = step.run()
            except DataExhausted as exhausted:
                end_reason = exhausted_reason(index)
                step.batches.notices.append(f"{exhausted}; the sweep ended after {index} steps")
                break
            index += 1
            point = loss
            if validation is not None:
                point = None if index % val_every else step.validation_loss(validation)
            if recorder.add(index - 1, schedule[index - 1], loss, found_inf, point):
                bar.update(index - bar.n)
        recorder.finish()
        bar.update(index - bar.n)
    finally:
        bar.close()
    facts = {"steps_run": index, "skipped_steps": recorder.skipped}
    return recorder, recorder.end_reason or end_reason, facts


def _reseed(snapshot_state: TrainingSnapshot, seed: int | None) -> None:
    """Back to the initial state; then, for every curve but the first, a fresh RNG seed."""
    snapshot_state.restore()
    if seed is not None:
        torch.manual_seed(seed)


def _curve_seeds(count: int) -> list[int | None]:
    """RNG seeds of curves 1..K-1, drawn from the user's RNG, which curve 0 then uses as is."""
    state = torch.get_rng_state()
    drawn = torch.randint(0, 2**62, (max(count - 1, 0),)).tolist()
    torch.set_rng_state(state)
    return [None, *drawn]


def _sweeps(
    step: TrainStep,
    config: FinderConfig,
    snapshot_state: TrainingSnapshot,
    *,
    validation: list[Any] | None,
    val_every: int,
    sync_every: int,
    progress: bool,
    group: Any,
) -> tuple[list[list[float]], dict[str, Any]]:
    """``config.num_sweeps`` classic sweeps from the same start.

    Sweep k reads the data from batch ``k * num_steps * accumulation_steps`` on
    (batches a shorter sweep left unread are skipped), as the JAX backend does.
    """
    curves: list[list[float]] = []
    facts: dict[str, Any] = {
        "steps_run": 0, "skipped_steps": [], "end_reason": None, "sweep_end_reasons": []
    }
    per_sweep = config.num_steps * step.accumulation_steps
    for number, seed in enumerate(_curve_seeds(config.num_sweeps)):
        if number:
            _reseed(snapshot_state, seed)
            try:
                while step.batches.produced < number * per_sweep:
                    next(step.batches)
            except DataExhausted:
                facts["end_reason"] = facts["end_reason"] or exhausted_reason(0)
                facts["sweep_end_reasons"].append(exhausted_reason(0))
                curves.append([])
                continue
        recorder, end_reason, sweep_facts = _sweep(
            step,
            config,
            validation=validation,
            val_every=val_every,
            sync_every=sync_every,
            progress=progress,
            group=group,
        )
        curves.append(recorder.losses)
        if config.num_sweeps > 1 and recorder.end_reason is not None:
            # The result's reason speaks for the median curve: say what cut this one.
            step.batches.notices.append(
                f"sweep {number} of {config.num_sweeps}: {recorder.end_reason}; its curve "
                f"ends after {len(recorder.losses)} point(s)"
            )
        facts["sweep_end_reasons"].append(end_reason)
        facts["steps_run"] += sweep_facts["steps_run"]
        facts["skipped_steps"] += [
            {**entry, "sweep": number} for entry in sweep_facts["skipped_steps"]
        ]
        facts["end_reason"] = facts["end_reason"] or end_reason
    facts["val_every"] = val_every if validation is not None else None
    return curves, facts


def _independent(
    step: TrainStep,
    config: FinderConfig,
    snapshot_state: TrainingSnapshot,
    *,
    progress: bool,
    group: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One short run per grid LR, each from the initial state on the same batches.

    Runs go up the grid; once the core's stop rule fires on the runs' scores
    (:func:`lrfind_core.ensemble.score_stop`), the higher LRs are not run. Returns
    ``run_losses`` (K, M, steps_per_lr), NaN for runs not made, and facts with the
    runs made per curve and the updates a GradScaler skipped (by sweep, run, step).
    """
    from tqdm.auto import tqdm

    grid = config.learning_rates()
    group_lrs = _group_lrs(step.optimizer, grid)
    groups = step.optimizer.param_groups
    steps, micro = config.steps_per_lr, config.steps_per_lr * step.accumulation_steps
    runs = np.full((config.num_sweeps, len(grid), steps), np.nan)
    made = [0] * config.num_sweeps
    skipped: list[dict[str, Any]] = []
    source = step.batches
    bar = tqdm(
        total=runs.shape[0] * len(grid) * steps, desc="lr_find", disable=not progress, leave=False
    )
    try:
        for curve, seed in enumerate(_curve_seeds(config.num_sweeps)):
            batches = [next(source) for _ in range(micro)]
            for index in range(len(grid)):
                if curve or index:
                    _reseed(snapshot_state, seed)
                step.batches = BatchSource(batches, "train_data")
                step.model.train()
                _set_lrs(groups, group_lrs[index])
                outputs = [step.run() for _ in range(steps)]
                found_infs = (
                    None if step.grad_scaler is None else [found for _, found in outputs]
                )
                losses, flags, _ = read_steps([loss for loss, _ in outputs], found_infs, group)
                runs[curve, index] = losses
                skipped += [
                    {"sweep": curve, "run": index, "step": number, "lr": grid[index].item(),
                     "loss": losses[number]}
                    for number, flag in enumerate(flags or []) if flag
                ]
                made[curve] = index + 1
                bar.update(steps)
                scores = end_losses(runs[curve, : index + 1], config.average_last)
                if score_stop(scores, config) is not None:
                    break
    finally:
        step.batches = source
        bar.close()
    _check_runs_trained(skipped, made, steps, source.notices)
    return runs, {"steps_run": sum(made) * steps, "runs_made": made, "skipped_steps": skipped}


def _check_runs_trained(
    skipped: list[dict[str, Any]], made: list[int], steps: int, notices: list[str]
) -> None:
    """Independent runs whose every update a GradScaler skipped did not train: say so,
    and raise when no run trained at all."""
    counts: dict[tuple[int, int], int] = {}
    for entry in skipped:
        key = (entry["sweep"], entry["run"])
        counts[key] = counts.get(key, 0) + 1
    untrained = sorted(key for key, count in counts.items() if count == steps)
    if not untrained:
        return
    message = (
        f"GradScaler skipped every update of {len(untrained)} of {sum(made)} independent "
        f"run(s) (inf/NaN gradients at every scale it tried)"
    )
    if len(untrained) == sum(made):
        raise RuntimeError(f"lr_find recorded no trained run: {message}")
    notices.append(f"{message}: (sweep, run) {untrained}; their scores are untrained losses")
