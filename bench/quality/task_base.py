"""What every task module shares: the :class:`Task` record, loaders, optimizers, losses.

Loaders are real ``DataLoader``s that hand out whole shuffled batches (a
``BatchSampler`` as the sampler, no per-sample collation), so a step costs the
model's time, not the loader's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

BATCH_SIZE = 64
DEFAULT_BUDGET = 300
"""Planned optimizer steps of a task unless it sets its own."""

ModelFactory = Callable[[int], nn.Module]
OptimizerFactory = Callable[[Iterator[nn.Parameter], float], torch.optim.Optimizer]
LoaderFactory = Callable[[int], DataLoader]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""``(train inputs, train targets, validation inputs, validation targets)``."""


@dataclass(frozen=True)
class Task:
    """One training problem of the benchmark.

    Attributes:
      name: the task's name (``<data>_<model>_<optimizer>``).
      model: ``model(seed)``: a fresh model, its weights drawn from ``seed``.
      optimizer: ``optimizer(params, lr)``: a fresh optimizer at ``lr``.
      train_loader: ``train_loader(seed)``: shuffled batches of 64, order from ``seed``,
        the last partial batch dropped; re-iterable (each pass is a new epoch).
      val_inputs, val_targets: the whole validation set, scored in one forward pass.
      loss_fn: ``loss_fn(outputs, targets)``, a mean over the batch.
      description: one line for the report.
      step_ms: CPU milliseconds per training step on one thread, measured (orders the
        work, longest first).
      budget: optimizer steps of every oracle and suggestion run of the task.
    """

    name: str
    model: ModelFactory
    optimizer: OptimizerFactory
    train_loader: LoaderFactory
    val_inputs: torch.Tensor
    val_targets: torch.Tensor
    loss_fn: LossFn
    description: str
    step_ms: float = 1.0
    budget: int = DEFAULT_BUDGET


def batch_loader(inputs: torch.Tensor, targets: torch.Tensor) -> LoaderFactory:
    """A factory of loaders over ``(inputs, targets)``: whole batches, order from the seed."""
    dataset = TensorDataset(inputs, targets)

    def make(seed: int) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        sampler = BatchSampler(
            RandomSampler(dataset, generator=generator), BATCH_SIZE, drop_last=True
        )
        # batch_size=None: the sampler's index lists go straight to TensorDataset's
        # fancy indexing, one gather per batch instead of 64 item reads and a stack.
        return DataLoader(dataset, sampler=sampler, batch_size=None)

    return make


def seeded(build: Callable[[], nn.Module]) -> ModelFactory:
    """``build`` with its weights drawn from ``torch.manual_seed(seed)``."""

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build()

    return make


def adam(params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with torch's defaults."""
    return torch.optim.Adam(params, lr=lr)


def adamw(params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """AdamW, weight decay 1e-2 (torch's default)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)


def sgd_momentum(params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """SGD with momentum 0.9."""
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def split(inputs: np.ndarray, targets: np.ndarray, train: int) -> Split:
    """The first ``train`` rows for training, the rest for validation, as tensors."""
    return (
        torch.from_numpy(inputs[:train]),
        torch.from_numpy(targets[:train]),
        torch.from_numpy(inputs[train:]),
        torch.from_numpy(targets[train:]),
    )


def relabeled(
    labels: np.ndarray, classes: int, rate: float, rng: np.random.Generator
) -> np.ndarray:
    """``labels`` with a ``rate`` fraction moved to another class drawn uniformly, int64."""
    move = rng.random(len(labels)) < rate
    shift = rng.integers(1, classes, len(labels))
    return np.where(move, (labels + shift) % classes, labels).astype(np.int64)


def mlp(sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Module:
    """Linear layers of ``sizes`` with ReLU (then dropout, if any) between them."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(sizes)):
        if index:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width_in, width_out))
    return nn.Sequential(*layers)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return nn.functional.mse_loss(outputs, targets)


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(batch, classes)`` logits against class indices."""
    return nn.functional.cross_entropy(outputs, targets)


def make_task(
    name: str,
    data: Callable[[], Split],
    build: Callable[[], nn.Module],
    optimizer: OptimizerFactory,
    loss_fn: LossFn,
    description: str,
    step_ms: float = 0.5,
    budget: int = DEFAULT_BUDGET,
) -> Task:
    """A task whose model is ``build()`` under the case seed, on the ``data()`` split."""
    x_train, y_train, x_val, y_val = data()
    return Task(
        name=name,
        model=seeded(build),
        optimizer=optimizer,
        train_loader=batch_loader(x_train, y_train),
        val_inputs=x_val,
        val_targets=y_val,
        loss_fn=loss_fn,
        description=description,
        step_ms=step_ms,
        budget=budget,
    )
