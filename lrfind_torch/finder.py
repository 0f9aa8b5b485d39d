"""``lr_find`` for PyTorch: check the torch objects, then run the shared shell."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch

from lrfind_core.result import LRFindResult
from lrfind_core.settings import Settings
from lrfind_core.shell import call_settings, run_finder
from lrfind_torch.backend import TorchBackend
from lrfind_torch.checks import check_loss_options, check_model_and_optimizer
from lrfind_torch.options import TorchOptions, checked_options
from lrfind_torch.step import loss_computation


def lr_find(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: Iterable[Any],
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    *,
    step_fn: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None,
    mode: str | None = None,
    for_schedule: str | None = None,
    start_lr: float | None = None,
    end_lr: float | None = None,
    num_steps: int | None = None,
    val_data: Iterable[Any] | None = None,
    training_steps: int | None = None,
    budget_steps: int | None = None,
    settings: Settings | str | None = None,
    options: TorchOptions | None = None,
    plot_path: str | os.PathLike[str] | None = None,
) -> LRFindResult:
    """Find the LR for a torch model; the model, optimizer and RNGs come back exactly.

    The model trains for real while the LR of every param group follows the plan
    (each group keeps its ratio to group 0's LR); the raw loss of each step is
    recorded, and the core smooths it, applies the stop rule and suggests LRs.
    Afterwards the model (parameters, buffers, grads, training flags), the
    optimizer (state and param groups), the GradScaler, the RNGs and
    ``options.restore_also`` are exactly as before, also when the call raises.

    Args:
      model: the module to train; it must own every parameter of ``optimizer``.
      optimizer: any torch optimizer; its group LRs set the per-group ratios.
      train_data: an iterable of batches (DataLoader, list, generator...). A
        re-iterable shorter than needed is cycled with a warning; a one-shot
        iterator that runs out ends the run early.
      loss_fn: ``loss_fn(model(inputs), target)`` for ``(inputs, target)`` batches.
      step_fn: ``step_fn(model, batch) -> loss`` for any other batch (dicts,
        several inputs, GANs), instead of ``loss_fn``. lrfind calls ``backward``
        and ``optimizer.step``.
      mode: ``"sweep"`` (default: the classic range test) or ``"independent"``
        (one short run per LR of a grid, each from the same start).
      for_schedule: what the suggestion is for: ``"one_cycle"`` (default: a
        one-cycle peak LR), ``"constant"``, or ``"curve"`` (as read off the curve).
      start_lr, end_lr, num_steps: the sweep (default 1e-7 to 10 in 100 steps).
      val_data: record the mean loss over its first ``settings.val_batches``
        batches (eval mode, no grad) every ``settings.val_every`` steps, instead
        of the training loss.
      training_steps, budget_steps: the planned training and the most steps a
        search may train (``mode="search"``).
      settings: a :class:`~lrfind_core.settings.Settings` or a preset name
        (``"fastai"``, ``"torch-lr-finder"``) for every other setting: smoothing,
        stop rule, methods, repeated sweeps (``num_sweeps``), independent mode's
        grid, gradient accumulation, validation details.
      options: :class:`~lrfind_torch.options.TorchOptions`: mixed precision,
        clipping, train mode, device, sync, distributed group, progress bar,
        where the restore copy lives and what else to restore.
      plot_path: also save the plot there (rank 0 only; checked before any work).

    Returns:
      An :class:`~lrfind_core.result.LRFindResult`; ``result.lrs`` are group 0's LRs.
    """
    options = checked_options(options)
    check_loss_options(loss_fn, step_fn)
    check_model_and_optimizer(model, optimizer)
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if data is not None and (not isinstance(data, Iterable) or isinstance(data, str | bytes)):
            raise TypeError(f"{name} must be an iterable of batches, got {type(data).__name__}")
    chosen = call_settings(
        settings, mode=mode, for_schedule=for_schedule, start_lr=start_lr, end_lr=end_lr,
        num_steps=num_steps, training_steps=training_steps, budget_steps=budget_steps,
    )
    loss = loss_computation(model, loss_fn, step_fn)
    backend = TorchBackend(model, optimizer, train_data, loss, val_data, options)
    return run_finder(backend, chosen, has_validation=val_data is not None, plot_path=plot_path)


__all__ = ["lr_find"]
