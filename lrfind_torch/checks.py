"""Checks of the user's model, optimizer and options, before any state changes."""

from __future__ import annotations

import inspect
import math
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


LR_FREE_PACKAGES = {
    "prodigyopt": "Prodigy estimates the step size itself; its lr is a multiplier of that "
    "estimate, best left near 1",
    "dadaptation": "D-Adaptation estimates the step size itself; its lr is a multiplier of "
    "that estimate, best left at 1",
    "dog": "DoG sets its own step size; it takes no learning rate to tune",
    "schedulefree": "a schedule-free optimizer needs optimizer.train() and optimizer.eval() "
    "around training and evaluation, and its lr comes with its own warmup; tune it by "
    "training, not with a range test",
}
"""Packages of learning-rate-free optimizers (by top-level module), and what their LR means."""


def check_optimizer_kind(optimizer: torch.optim.Optimizer) -> None:
    """Refuse optimizers a range test cannot drive: those whose ``step`` needs a closure
    (``LBFGS``), and learning-rate-free ones."""
    package = type(optimizer).__module__.split(".")[0]
    if package in LR_FREE_PACKAGES:
        raise ValueError(
            f"{type(optimizer).__name__} is learning-rate-free: {LR_FREE_PACKAGES[package]}. "
            "A range test has no LR to find for it"
        )
    try:
        closure = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise TypeError(
            f"{type(optimizer).__name__}.step needs a closure (it evaluates the loss several "
            "times per step, as torch.optim.LBFGS does); lr_find drives optimizers whose "
            "step() takes none. Find the LR with a first-order optimizer, or tune this one "
            "by training"
        )


def check_model_and_optimizer(model: Any, optimizer: Any) -> None:
    """The model has trainable parameters and owns every parameter the optimizer updates."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if any(isinstance(module, torch.jit.ScriptModule) for module in model.modules()):
        raise TypeError(
            "model is (or holds) a torch.jit ScriptModule, whose parameters lr_find cannot "
            "put back in place: pass the eager module before torch.jit.script/trace"
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
    if not any(p.requires_grad for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(
            "none of the optimizer's parameters has requires_grad=True, so no step would "
            "change the model; build the optimizer on the trainable parameters"
        )
    check_optimizer_kind(optimizer)
    check_not_mid_accumulation(optimizer)
    for index, group in enumerate(optimizer.param_groups):
        lr = float(group["lr"])
        if index == 0 and not (math.isfinite(lr) and lr > 0):
            raise ValueError(
                f"the optimizer's first param group has lr={lr}; lrfind keeps every group's "
                "ratio to it, so it must be a finite number > 0"
            )
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(
                f"param group {index} has lr={lr}; every group's lr must be a finite number "
                ">= 0 (lrfind keeps its ratio to group 0's)"
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


def check_not_mid_accumulation(optimizer: Any) -> None:
    """An ``accelerate``-prepared optimizer (duck-typed: nothing is imported) is not
    between the micro-batches of ``accelerator.accumulate()``, where its ``step()``
    does nothing and the sweep would train nothing."""
    state = getattr(optimizer, "gradient_state", None)
    if state is not None and getattr(state, "sync_gradients", True) is False:
        raise ValueError(
            "the accelerate optimizer is between micro-batches of accelerator.accumulate() "
            "(gradient_state.sync_gradients is False), where its step() does nothing: call "
            "lr_find outside the accumulation loop, or after a step that synced"
        )


def check_gradients_reach(optimizer: torch.optim.Optimizer) -> None:
    """After the first backward, some parameter of the optimizer has a gradient: else
    the loss does not depend on them and no step would change the model."""
    if all(p.grad is None for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(
            "after the first backward no parameter of the optimizer has a gradient: the loss "
            "does not depend on them (is it computed from another model, or from outputs "
            "taken under torch.no_grad?), so no step would change them"
        )


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
