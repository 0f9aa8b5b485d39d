"""Same seed, same curve; and because the RNG is restored, back-to-back runs agree."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch_helpers import cross_entropy, tiny_cnn

from lrfind_torch import TorchOptions, lr_find

SWEEP = {
    "start_lr": 1e-4, "end_lr": 1.0, "num_steps": 12, "options": TorchOptions(progress=False)
}


def shuffled_setup(generator_seed: int | None = None) -> tuple:
    """CNN with dropout and a shuffling loader (its own generator or the global RNG)."""
    torch.manual_seed(0)
    model = tiny_cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data_generator = torch.Generator().manual_seed(123)
    dataset = TensorDataset(
        torch.randn(96, 1, 6, 6, generator=data_generator),
        torch.randint(0, 3, (96,), generator=data_generator),
    )
    loader_generator = (
        None if generator_seed is None else torch.Generator().manual_seed(generator_seed)
    )
    loader = DataLoader(dataset, batch_size=8, shuffle=True, generator=loader_generator)
    return model, optimizer, loader


def test_same_seed_same_curve_with_global_rng_shuffling() -> None:
    results = []
    for _ in range(2):
        model, optimizer, loader = shuffled_setup()
        torch.manual_seed(42)
        results.append(lr_find(model, optimizer, loader, loss_fn=cross_entropy, **SWEEP))
    first, second = results
    np.testing.assert_array_equal(first.losses, second.losses)
    np.testing.assert_array_equal(first.lrs, second.lrs)
    assert first.suggestions == second.suggestions


def test_same_seed_same_curve_with_seeded_loader() -> None:
    results = []
    for _ in range(2):
        model, optimizer, loader = shuffled_setup(generator_seed=5)
        torch.manual_seed(42)  # dropout
        results.append(lr_find(model, optimizer, loader, loss_fn=cross_entropy, **SWEEP))
    np.testing.assert_array_equal(results[0].losses, results[1].losses)
    np.testing.assert_array_equal(results[0].lrs, results[1].lrs)


def test_different_seed_different_curve() -> None:
    """The seed matters (dropout and shuffling), so the tests above can fail."""
    results = []
    for seed in (42, 43):
        model, optimizer, loader = shuffled_setup()
        torch.manual_seed(seed)
        results.append(lr_find(model, optimizer, loader, loss_fn=cross_entropy, **SWEEP))
    assert not np.array_equal(results[0].losses, results[1].losses)


def test_back_to_back_runs_without_reseeding_are_identical() -> None:
    model, optimizer, loader = shuffled_setup()
    torch.manual_seed(42)
    first = lr_find(model, optimizer, loader, loss_fn=cross_entropy, **SWEEP)
    second = lr_find(model, optimizer, loader, loss_fn=cross_entropy, **SWEEP)
    np.testing.assert_array_equal(first.losses, second.losses)
    np.testing.assert_array_equal(first.lrs, second.lrs)
    assert first.stop_step == second.stop_step
    assert first.suggestions == second.suggestions
