"""``lrfind demo``: the classic sweep and the search on scikit-learn's bundled digits,
then training at each answer.

No download: the 1,797 8x8 digit images ship with scikit-learn, split into training,
validation (what the search scores its candidates on) and test images (what this
demo reports, seen by neither finder). A small CNN with BatchNorm and dropout is
swept with :func:`lrfind_torch.lr_find`, then searched with ``mode="search"`` for a
one-cycle training of ``EPOCHS`` epochs, within one training's worth of steps; the
plots and results are saved; then fresh copies of the model train with torch's
``OneCycleLR`` peaking at the classic suggestion, at the search's LR and at 3x
below and above it, and the test losses and accuracies are printed side by side.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrfind_core.digits_demo import (
    BATCH_SIZE,
    EPOCHS,
    digits_splits,
    missing_demo_needs,
    run_digits_demo,
    search_budget,
)
from lrfind_core.result import LRFindResult
from lrfind_torch import lr_find


def digits_loaders(seed: int) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, validation and test loaders over the bundled digits (60/15/25%), images
    as (N, 1, 8, 8) in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)

    def dataset(split: tuple[np.ndarray, np.ndarray]) -> TensorDataset:
        images, labels = split
        return TensorDataset(torch.from_numpy(images[:, None]), torch.from_numpy(labels))

    splits = digits_splits(seed)
    return (
        DataLoader(dataset(splits["train"]), batch_size=BATCH_SIZE, shuffle=True,
                   generator=generator),
        DataLoader(dataset(splits["val"]), batch_size=64),
        DataLoader(dataset(splits["test"]), batch_size=256),
    )


def small_cnn() -> nn.Module:
    """Two 3x3 conv blocks with BatchNorm, max-pooling, dropout and a linear head."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(32 * 4 * 4, 10),
    )


def evaluate(model: nn.Module, loader: DataLoader) -> tuple[float, float]:
    """Mean cross-entropy and the fraction of correctly classified images."""
    model.eval()
    loss = correct = total = 0.0
    with torch.no_grad():
        for inputs, target in loader:
            logits = model(inputs)
            loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(1) == target).sum())
            total += len(target)
    return loss / total, correct / total


def train_one_cycle(model: nn.Module, loader: DataLoader, max_lr: float) -> None:
    """Train ``EPOCHS`` epochs with AdamW under OneCycleLR peaking at ``max_lr``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=EPOCHS * len(loader)
    )
    model.train()
    for _ in range(EPOCHS):
        for inputs, target in loader:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(inputs), target).backward()
            optimizer.step()
            scheduler.step()


def main(out_dir: str = "lrfind_demo_out", seed: int = 0) -> int:
    """Run the demo; write ``lr_find.png``/``.json`` and ``lr_search.png``/``.json``
    into ``out_dir``.

    Returns 2, saying what to install, when scikit-learn (its data) is missing.
    """
    if missing_demo_needs("torch", "'lrfind[demo]'"):
        return 2
    torch.manual_seed(seed)
    train_loader, val_loader, test_loader = digits_loaders(seed)
    model = small_cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)

    def find(search: bool, plot_path: str) -> LRFindResult:
        training_steps = EPOCHS * len(train_loader)
        more = {"mode": "search", "val_data": val_loader, "training_steps": training_steps,
                "budget_steps": search_budget(training_steps)} if search else {}
        return lr_find(model, optimizer, train_loader, nn.functional.cross_entropy,
                       plot_path=plot_path, **more)

    def train_and_test(lr: float) -> tuple[float, float]:
        torch.manual_seed(seed)
        trained = copy.deepcopy(model)
        train_one_cycle(trained, train_loader, lr)
        return evaluate(trained, test_loader)

    return run_digits_demo(find, train_and_test, EPOCHS * len(train_loader), out_dir)
