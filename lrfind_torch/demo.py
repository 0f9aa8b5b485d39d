"""``lrfind demo``: an LR find on scikit-learn's bundled digits, then training at the suggestion.

No download: the 1,797 8x8 digit images ship with scikit-learn. A small CNN with
BatchNorm and dropout is swept with :func:`lrfind_torch.lr_find`; the plot and the
result are saved; then fresh copies of the model train for a few epochs with
torch's ``OneCycleLR`` peaking at the suggestion, at 10x below and at 10x above
it, and the validation accuracies are printed side by side.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrfind_torch import lr_find

EPOCHS = 8
BATCH_SIZE = 64


def digits_loaders(seed: int) -> tuple[DataLoader, DataLoader]:
    """Train/validation loaders over the bundled digits, images as (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_val, y_train, y_val = train_test_split(
        images, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    generator = torch.Generator().manual_seed(seed)
    train = TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
    val = TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val))
    return (
        DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, generator=generator),
        DataLoader(val, batch_size=256),
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


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Fraction of correctly classified validation images."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, target in loader:
            correct += int((model(inputs).argmax(1) == target).sum())
            total += len(target)
    return correct / total


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


DEMO_NEEDS = ("sklearn",)


def main(out_dir: str = "lrfind_demo_out", seed: int = 0) -> int:
    """Run the demo; write ``lr_find.png`` and ``lr_find.json`` into ``out_dir``.

    Returns 2, saying what to install, when scikit-learn (its data) is missing.
    """
    missing = [name for name in DEMO_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        print(
            "the torch demo trains on scikit-learn's bundled digits: pip install "
            f"'lrfind[demo]' (missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        return 2
    import matplotlib

    matplotlib.use("Agg")
    torch.manual_seed(seed)
    train_loader, val_loader = digits_loaders(seed)
    model = small_cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    started = time.perf_counter()
    result = lr_find(model, optimizer, train_loader, nn.functional.cross_entropy)
    print(
        f"lr_find: {len(result.lrs)} steps in {time.perf_counter() - started:.1f} s, "
        f"stopped: {result.stop_reason}"
    )
    for detail in result.suggestions.values():
        lr = "None" if detail.lr is None else f"{detail.lr:.2e}"
        print(f"  {detail.method:>8}: {lr}  ({detail.reason})")
    if result.suggestion is None:
        print("no suggestion could be made; see the plot")
        return 1
    os.makedirs(out_dir, exist_ok=True)
    plot_path = os.path.join(out_dir, "lr_find.png")
    result.plot(path=plot_path)
    result.save(os.path.join(out_dir, "lr_find.json"))
    print(
        f"suggested peak LR for a one-cycle schedule ({result.settings.method} rule): "
        f"{result.suggestion:.2e}; for a constant LR: "
        f"{result.suggest(for_schedule='constant').lr:.2e}; plot saved to {plot_path}"
    )

    print(f"one-cycle training, {EPOCHS} epochs, AdamW; validation accuracy:")
    for label, factor in (("suggestion / 10", 0.1), ("suggestion", 1.0), ("suggestion x 10", 10.0)):
        torch.manual_seed(seed)
        trained = copy.deepcopy(model)
        train_one_cycle(trained, train_loader, result.suggestion * factor)
        print(
            f"  {label:>16} ({result.suggestion * factor:.2e}): {accuracy(trained, val_loader):.3f}"
        )
    return 0
