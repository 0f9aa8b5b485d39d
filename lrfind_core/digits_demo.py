"""What every backend's ``lrfind demo`` shares: scikit-learn's bundled digits, split
the same way, and the run and report around the backend's own finder and training.

A backend's demo supplies two functions, ``find(search, plot_path)`` (its
``lr_find`` on its model and data: the classic sweep, or ``mode="search"``) and
``train_and_test(lr)`` (a fresh copy of its model trained under a one-cycle
schedule peaking at ``lr``, scored on the test images), and
:func:`run_digits_demo` does the rest: it runs both finders, saves their plots
and results, trains at the classic suggestion, at the search's LR and at 3x
below and above it, and prints everything. Numpy only at import; scikit-learn
is imported when the digits are loaded.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from lrfind_core.result import LRFindResult

EPOCHS = 8
"""Epochs of each one-cycle training, the plan the search is for."""
BATCH_SIZE = 64
DEMO_NEEDS = ("sklearn",)
"""Modules the demos need beyond their backend: scikit-learn ships the digits."""


def missing_demo_needs(backend: str, install: str) -> bool:
    """Whether a module of :data:`DEMO_NEEDS` is missing; if so, say on stderr what
    to install (``install``: the pip arguments that bring it with ``backend``)."""
    missing = [name for name in DEMO_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"the {backend} demo trains on scikit-learn's bundled digits: pip install "
            f"{install} (missing: {', '.join(missing)})",
            file=sys.stderr,
        )
    return bool(missing)


def digits_splits(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The 1,797 digits as ``{"train", "val", "test": (images, labels)}``: 60/15/25%,
    stratified by label; images ``(N, 8, 8)`` float32 in [0, 1], labels int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=seed, stratify=labels
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, random_state=seed, stratify=y_rest
    )
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


SEARCH_BUDGET_TRAININGS = 3
"""The demo's search budget, in trainings (``budget_steps = 3 * training_steps``): on
lrfind's benchmark the search lands within 10% of a grid search in 41 of 45 cases
at 3 trainings, 29 of 45 at one (bench/RESULTS.md)."""


def search_budget(training_steps: int) -> int:
    """The demo search's ``budget_steps``: :data:`SEARCH_BUDGET_TRAININGS` trainings,
    or the least a search accepts when that is less (a shortened demo)."""
    from lrfind_core.search import minimum_budget

    return max(SEARCH_BUDGET_TRAININGS * training_steps, minimum_budget())


def run_digits_demo(
    find: Callable[[bool, str], LRFindResult],
    train_and_test: Callable[[float], tuple[float, float]],
    training_steps: int,
    out_dir: str,
    epochs: int = EPOCHS,
) -> int:
    """Run the classic sweep and the search, save and print them, then train at each
    answer and print the test losses and accuracies; returns 0.

    Args:
      find: ``find(search, plot_path)``: the backend's finder, the classic sweep
        (``search=False``) or the search for ``training_steps`` steps within
        :data:`SEARCH_BUDGET_TRAININGS` trainings, saving its plot at ``plot_path``.
      train_and_test: ``train_and_test(lr) -> (mean test cross-entropy, test
        accuracy)`` after a one-cycle training peaking at ``lr``.
      training_steps: optimizer steps of one training (``epochs`` epochs).
      out_dir: the folder for ``lr_find.png``/``.json`` and ``lr_search.png``/``.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(out_dir, exist_ok=True)

    started = time.perf_counter()
    classic = find(False, os.path.join(out_dir, "lr_find.png"))
    print(f"classic sweep: {len(classic.lrs)} steps in {time.perf_counter() - started:.1f} s, "
          f"stopped: {classic.stop_reason}")
    for detail in classic.suggestions.values():
        lr = "None" if detail.lr is None else f"{detail.lr:.2e}"
        print(f"  {detail.method:>8}: {lr}  ({detail.reason})")
    classic.save(os.path.join(out_dir, "lr_find.json"))

    started = time.perf_counter()
    searched = find(True, os.path.join(out_dir, "lr_search.png"))
    search = searched.search
    print(f"search: {searched.meta['steps_trained']} steps (budget {search.budget_steps}; "
          f"one training: {training_steps}) in {time.perf_counter() - started:.1f} s")
    print(f"  {search.lr:.2e}: {search.reason}")
    print(f"  LRs within {search.tolerance:.0%} of the best: {search.near_best[0]:.2e} to "
          f"{search.near_best[1]:.2e}")
    searched.save(os.path.join(out_dir, "lr_search.json"))
    print(f"plots and results saved in {out_dir}/")

    print(f"one-cycle training, {epochs} epochs, AdamW; test images (seen by neither finder):")
    rows = (("classic suggestion", classic.suggestion), ("search / 3", search.lr / 3),
            ("search", search.lr), ("search x 3", search.lr * 3))
    for label, lr in rows:
        if lr is None:
            print(f"  {label:>18}: no suggestion")
            continue
        loss, correct = train_and_test(lr)
        print(f"  {label:>18} ({lr:.2e}): loss {loss:.4f}, accuracy {correct:.3f}")
    return 0


__all__ = ["BATCH_SIZE", "DEMO_NEEDS", "EPOCHS", "SEARCH_BUDGET_TRAININGS", "digits_splits",
           "missing_demo_needs", "run_digits_demo", "search_budget"]
