"""One optimizer step of the sweep: forward, backward (scaled, accumulated), step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lrfind_torch.batches import move_to_device
from lrfind_torch.checks import check_gradients_reach, check_loss


@dataclass
class TrainStep:
    """Everything one optimizer step needs; built once per call. ``batches`` yields
    the next micro-batch (a :class:`~lrfind_torch.batches.BatchTape`)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    compute_loss: Callable[[Any], torch.Tensor]
    loss_source: str
    batches: Any
    device: torch.device
    non_blocking: bool
    accumulation_steps: int
    autocast_dtype: torch.dtype | None
    grad_scaler: Any
    max_grad_norm: float | None
    checked: bool = False
    reshape: bool = False
    gradients_checked: bool = False

    def forward_loss(self, batch: Any) -> torch.Tensor:
        """The loss of one batch already on the device, under autocast if set."""
        if self.autocast_dtype is None:
            return self.compute_loss(batch)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            return self.compute_loss(batch)

    def micro_loss(self) -> torch.Tensor:
        """The loss of the next training batch (checked once)."""
        batch = move_to_device(next(self.batches), self.device, self.non_blocking)
        loss = self.compute_loss(batch) if self.autocast_dtype is None else self.forward_loss(batch)
        if not self.checked:
            check_loss(loss, self.loss_source)
            self.checked = True
            self.reshape = loss.ndim != 0
        return loss.reshape(()) if self.reshape else loss

    def run(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step (``accumulation_steps`` micro-batches).

        Returns the mean loss, detached, and with a GradScaler its found-inf flag
        (> 0 when the scaler skipped this update), both left on the device.
        """
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
        if not self.gradients_checked:
            check_gradients_reach(self.optimizer)
            self.gradients_checked = True
        if self.max_grad_norm is not None:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if scaler is None:
            self.optimizer.step()
            return total, None
        scaler.step(self.optimizer)
        found_inf = found_inf_flag(scaler, self.optimizer, total.device)  # update() clears it
        scaler.update()
        return total, found_inf

    @torch.no_grad()
    def validation_loss(self, batches: list[Any]) -> torch.Tensor:
        """Mean loss over the fixed validation batches, in eval mode (each submodule's
        mode is put back afterwards)."""
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            total = None
            for batch in batches:
                loss = self.forward_loss(batch).detach().reshape(()).float()
                total = loss if total is None else total + loss
            assert total is not None
            return total / len(batches)
        finally:
            for module, training in modes:
                module.training = training


def found_inf_flag(
    scaler: Any, optimizer: torch.optim.Optimizer, device: torch.device
) -> torch.Tensor:
    """The scaler's found-inf count of its last ``step`` (> 0: skipped), on ``device``
    (the loss's, so that both are read in one transfer).

    Read from the scaler's per-device flags before ``update()``, so that knowing
    whether an update was skipped costs no host sync (a copy from an accelerator to
    a loss on the CPU is the one exception).
    """
    to_accelerator = device.type != "cpu"  # a copy to the host must complete before a read
    flags = [
        flag.to(device, non_blocking=to_accelerator)
        for flag in scaler._found_inf_per_device(optimizer).values()
    ]
    return flags[0] if len(flags) == 1 else torch.stack(flags).sum()


def loss_computation(
    model: torch.nn.Module, loss_fn: Callable | None, step_fn: Callable | None
) -> tuple[Callable[[Any], torch.Tensor], str]:
    """``batch -> loss`` for ``loss_fn`` on (inputs, target) batches, or for ``step_fn``."""
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
