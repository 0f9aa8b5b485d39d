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


def digits_loaders(seed: int) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, validation and test loaders over the bundled digits (60/15/25%), images
    as (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, random_state=seed, stratify=y_rest
    )
    generator = torch.Generator().manual_seed(seed)

    def dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    return (
        DataLoader(dataset(x_train, y_train), batch_size=BATCH_SIZE, shuffle=True,
                   generator=generator),
        DataLoader(dataset(x_val, y_val), batch_size=64),
        DataLoader(dataset(x_test, y_test), batch_size=256),
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
    train_loader, val_loader, test_loader = digits_loaders(seed)
    model = small_cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    os.makedirs(out_dir, exist_ok=True)
    training_steps = EPOCHS * len(train_loader)

    started = time.perf_counter()
    classic = lr_find(model, optimizer, train_loader, nn.functional.cross_entropy,
                      plot_path=os.path.join(out_dir, "lr_find.png"))
    print(f"classic sweep: {len(classic.lrs)} steps in {time.perf_counter() - started:.1f} s, "
          f"stopped: {classic.stop_reason}")
    for detail in classic.suggestions.values():
        lr = "None" if detail.lr is None else f"{detail.lr:.2e}"
        print(f"  {detail.method:>8}: {lr}  ({detail.reason})")
    classic.save(os.path.join(out_dir, "lr_find.json"))

    started = time.perf_counter()
    searched = lr_find(model, optimizer, train_loader, nn.functional.cross_entropy,
                       mode="search", val_data=val_loader, training_steps=training_steps,
                       plot_path=os.path.join(out_dir, "lr_search.png"))
    search = searched.search
    print(f"search: {searched.meta['steps_trained']} steps (budget {search.budget_steps}, "
          f"one training of {training_steps}) in {time.perf_counter() - started:.1f} s")
    print(f"  {search.lr:.2e}: {search.reason}")
    print(f"  LRs within {search.tolerance:.0%} of the best: {search.near_best[0]:.2e} to "
          f"{search.near_best[1]:.2e}")
    searched.save(os.path.join(out_dir, "lr_search.json"))
    print(f"plots and results saved in {out_dir}/")

    print(f"one-cycle training, {EPOCHS} epochs, AdamW; test images (seen by neither finder):")
    rows = (("classic suggestion", classic.suggestion), ("search / 3", search.lr / 3),
            ("search", search.lr), ("search x 3", search.lr * 3))
    for label, lr in rows:
        if lr is None:
            print(f"  {label:>18}: no suggestion")
            continue
        torch.manual_seed(seed)
        trained = copy.deepcopy(model)
        train_one_cycle(trained, train_loader, lr)
        loss, correct = evaluate(trained, test_loader)
        print(f"  {label:>18} ({lr:.2e}): loss {loss:.4f}, accuracy {correct:.3f}")
    return 0
