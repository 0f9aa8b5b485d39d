"""Train a fresh model of a task at one LR under one protocol and score its validation loss.

Protocols (the schedule the LR is meant for):

* ``"one_cycle"``: ``torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr,
  total_steps=budget)`` with torch's defaults, stepped after every batch;
* ``"constant"``: the LR itself for every step.

The score is the validation loss after ``budget`` optimizer steps, capped at the
untrained model's validation loss (same seed): a run whose training loss goes
non-finite, or whose validation loss is NaN, infinite or above the cap, has
diverged and scores the cap.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from quality.tasks import Task

PROTOCOLS = ("one_cycle", "constant")


@dataclass(frozen=True)
class RunScore:
    """The outcome of one training run.

    Attributes:
      val_loss: the score: final validation loss, or the cap if the run diverged.
      raw_val_loss: the validation loss as measured (None if training went non-finite).
      diverged: whether the run scored the cap.
      steps: optimizer steps actually run.
      seconds: wall time of the run.
    """

    val_loss: float
    raw_val_loss: float | None
    diverged: bool
    steps: int
    seconds: float


def validation_loss(model: nn.Module, task: Task) -> float:
    """The mean loss over the task's whole validation set, eval mode, no grad."""
    model.eval()
    with torch.no_grad():
        return float(task.loss_fn(model(task.val_inputs), task.val_targets))


def untrained_loss(task: Task, seed: int) -> float:
    """The cap: the validation loss of the seed's freshly initialised model."""
    return validation_loss(task.model(seed), task)


def make_scheduler(
    protocol: str, optimizer: torch.optim.Optimizer, lr: float, budget: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The protocol's per-batch scheduler (None for a constant LR)."""
    if protocol == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=budget)
    if protocol == "constant":
        return None
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def train_and_score(task: Task, seed: int, protocol: str, lr: float, budget: int) -> RunScore:
    """Train ``task.model(seed)`` for ``budget`` steps at ``lr`` under ``protocol``; score it.

    The seed fixes the initial weights, the data order and the dropout masks.
    """
    started = time.perf_counter()
    cap = untrained_loss(task, seed)
    model = task.model(seed)
    optimizer = task.optimizer(model.parameters(), lr)
    scheduler = make_scheduler(protocol, optimizer, lr, budget)
    loader = task.train_loader(seed)
    torch.manual_seed(seed)
    model.train()
    steps = 0
    finite = True
    while steps < budget and finite:
        for inputs, targets in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            steps += 1
            # On CPU a read per step is free; stop a blown-up run at once.
            if not math.isfinite(loss.item()):
                finite = False
                break
            if steps == budget:
                break
    raw = validation_loss(model, task) if finite else None
    diverged = raw is None or not math.isfinite(raw) or raw > cap
    return RunScore(
        val_loss=cap if diverged else float(raw),
        raw_val_loss=raw if raw is None or math.isfinite(raw) else None,
        diverged=diverged,
        steps=steps,
        seconds=time.perf_counter() - started,
    )
