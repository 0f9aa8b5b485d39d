"""Checks of the user's model, optimizer and options, before any state changes."""

from __future__ import annotations

from typing import Any

import torch


def check_device(model: torch.nn.Module, device: Any) -> torch.device:
    """The device batches go to: ``device``, or the model's; it must be where the model is."""
    model_device = next(model.parameters()).device
    chosen = model_device if device is None else torch.device(device)
    if chosen.type != model_device.type or (
        chosen.index is not None and model_device.index is not None and chosen != model_device
    ):
        raise ValueError(
            f"device={chosen} but the model is on {model_device}; move the model first"
        )
    return chosen


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
    if isinstance(loss_fn, type):
        raise TypeError(
            f"loss_fn is the class {loss_fn.__name__}, not a loss: pass an instance "
            f"({loss_fn.__name__}()) or a function such as torch.nn.functional.cross_entropy"
        )
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
