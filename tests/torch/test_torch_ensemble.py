"""num_sweeps and mode="independent": every curve starts from the user's state,
and that state is still exactly restored at the end."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch_helpers import (
    assert_restored,
    batches,
    capture,
    cross_entropy,
    f32,
    make_setup,
    tiny_mlp,
)

from lrfind_torch import Settings, TorchOptions, lr_find

SWEEP = {"start_lr": 1e-4, "end_lr": 0.5, "num_steps": 12}
QUIET = TorchOptions(progress=False)


def mlp_setup() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = tiny_mlp()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


@pytest.mark.parametrize("snapshot", ["memory", "disk"])
def test_repeated_sweeps_restore_exactly(snapshot: str, tmp_path: Any) -> None:
    setup = make_setup("adam", "cnn", "param_groups")
    before = capture(setup.model, setup.optimizer)
    result = lr_find(
        setup.model, setup.optimizer, setup.data * 2, loss_fn=cross_entropy,
        settings=Settings(num_sweeps=3),
        options=TorchOptions(progress=False, snapshot=snapshot, snapshot_dir=tmp_path), **SWEEP,
    )
    assert result.ensemble is not None
    assert result.ensemble.num_sweeps == 3
    assert result.meta["num_sweeps"] == 3
    assert_restored(before, setup.model, setup.optimizer)
    assert list(tmp_path.iterdir()) == []


def test_each_sweep_starts_from_the_initial_state_on_the_next_batches() -> None:
    model, optimizer = mlp_setup()
    data = batches(36)
    with torch.no_grad():
        first_losses = [cross_entropy(model(x), y).item() for x, y in data[0:36:12]]
    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, settings=Settings(num_sweeps=3),
        options=QUIET, **SWEEP,
    )
    sweeps = result.ensemble.sweep_losses
    assert sweeps.shape == (3, 12)
    # Step 0 of every sweep sees the initial weights on batch 0, 12 and 24.
    np.testing.assert_array_equal(sweeps[:, 0], first_losses)


def test_the_first_sweep_is_the_single_sweep() -> None:
    """'The first uses yours': with dropout, sweep 0 of K sees the user's RNG state."""
    runs = []
    for count in (1, 3):
        setup = make_setup("adamw", "cnn", "plain")
        torch.manual_seed(21)
        runs.append(
            lr_find(
                setup.model, setup.optimizer, setup.data * 2, loss_fn=cross_entropy,
                settings=Settings(num_sweeps=count), options=QUIET, **SWEEP,
            )
        )
    single, ensemble = runs
    first = ensemble.ensemble.sweep_losses[0][: len(single.losses)]
    np.testing.assert_array_equal(first, single.losses)


def test_independent_runs_start_from_the_same_state_and_restore() -> None:
    setup = make_setup("sgd", "cnn", "plain")
    before = capture(setup.model, setup.optimizer)
    reference_model, reference_optimizer = copy.deepcopy((setup.model, setup.optimizer))
    settings = Settings(
        mode="independent", independent_lrs=5, steps_per_lr=3, average_last=2, start_lr=1e-3,
        end_lr=0.1,
    )
    result = lr_find(
        setup.model, setup.optimizer, setup.data, loss_fn=cross_entropy, settings=settings,
        options=QUIET,
    )

    assert_restored(before, setup.model, setup.optimizer)
    runs = result.runs.run_losses
    assert runs.shape == (1, 5, 3)
    made = ~np.isnan(runs[0, :, 0])
    assert made[0] and made[1]
    # Same weights, same first batch, same dropout masks: the first loss of every run.
    assert np.all(runs[0, made, 0] == runs[0, 0, 0])
    # Runs differ only by their LR, so their later losses differ.
    assert runs[0, 0, 2] != runs[0, 1, 2]

    # Run 1 by hand: three steps at float32(grid[1]) from the initial state.
    grid = settings.independent_grid()
    torch.set_rng_state(before.rng["torch"])
    reference_model.train()
    reference_optimizer.param_groups[0]["lr"] = f32(grid[1])
    expected = []
    for inputs, target in setup.data[:3]:
        reference_optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(reference_model(inputs), target)
        loss.backward()
        reference_optimizer.step()
        expected.append(loss.item())
    torch.set_rng_state(before.rng["torch"])
    np.testing.assert_array_equal(runs[0, 1], expected)
