"""Checks of the user's model, optimizer and options, before any state changes."""

from __future__ import annotations

from typing import Any

import torch

from lrfind_core._checks import check_choice, check_int, check_positive_float
from lrfind_torch.state import SNAPSHOT_MODES


def check_model_and_optimizer(model: Any, optimizer: Any) -> None:
    """The model has trainable parameters and owns every parameter the optimizer updates."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    model_params = {id(p) for p in model.parameters()}
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters (none with requires_grad=True)")
    foreign = sum(
        1 for group in optimizer.param_groups for p in group["params"] if id(p) not in model_params
    )
    if foreign:
        raise ValueError(
            f"optimizer updates {foreign} parameter(s) that are not in model; pass the model "
            "that owns the optimizer's parameters"
        )
    reference = optimizer.param_groups[0]["lr"]
    if float(reference) <= 0:
        raise ValueError(
            "the optimizer's first param group has lr <= 0; lrfind keeps every group's ratio to "
            "it, so it must be > 0"
        )


def check_loss_options(loss_fn: Any, step_fn: Any) -> None:
    """Exactly one of ``loss_fn`` and ``step_fn``, and it is callable."""
    if (loss_fn is None) == (step_fn is None):
        raise TypeError(
            "pass exactly one of loss_fn (for (inputs, target) batches) or step_fn "
            "(step_fn(model, batch) -> loss, for any other batch)"
        )
    function = loss_fn if loss_fn is not None else step_fn
    if not callable(function):
        name = "loss_fn" if loss_fn is not None else "step_fn"
        raise TypeError(f"{name} must be callable, got {type(function).__name__}")


def check_loss(loss: Any, source: str) -> None:
    """The loss is a floating scalar tensor that requires grad."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{source} must return a torch.Tensor loss, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"{source} must return a scalar loss, got shape {tuple(loss.shape)}")
    if not loss.is_floating_point():
        raise TypeError(f"{source} must return a floating-point loss, got {loss.dtype}")
    if not loss.requires_grad:
        raise ValueError(
            f"{source} returned a loss that does not require grad: it is not connected to "
            "the model's trainable parameters (was it computed under torch.no_grad() or detached?)"
        )


def check_sweep_options(
    *,
    accumulation_steps: Any,
    sync_every: Any,
    val_every: Any,
    val_batches: Any,
    max_grad_norm: Any,
    snapshot: Any,
    autocast_dtype: Any,
    grad_scaler: Any,
) -> None:
    """Range and type checks of the torch-specific options."""
    check_int("accumulation_steps", accumulation_steps, minimum=1)
    if sync_every is not None:
        check_int("sync_every", sync_every, minimum=1)
    check_int("val_every", val_every, minimum=1)
    check_int("val_batches", val_batches, minimum=1)
    if max_grad_norm is not None:
        check_positive_float("max_grad_norm", max_grad_norm)
    check_choice("snapshot", snapshot, SNAPSHOT_MODES)
    if autocast_dtype is not None and not isinstance(autocast_dtype, torch.dtype):
        raise TypeError(
            f"autocast_dtype must be a torch.dtype (torch.float16 or torch.bfloat16), got "
            f"{autocast_dtype!r}"
        )
    scaler_methods = ("scale", "step", "update", "get_scale", "_found_inf_per_device")
    if grad_scaler is not None and not all(hasattr(grad_scaler, name) for name in scaler_methods):
        raise TypeError(
            f"grad_scaler must be a torch.amp.GradScaler, got {type(grad_scaler).__name__}"
        )
