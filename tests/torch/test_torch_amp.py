"""A real GradScaler with float16 autocast on the CPU: skipped steps and scaler restore."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch_helpers import assert_restored, batches, capture, cross_entropy, f32, tiny_mlp

from lrfind_core import make_config
from lrfind_torch import lr_find
from lrfind_torch.finder import MAX_CONSECUTIVE_SKIPS

SWEEP = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 12, "progress": False}
INIT_SCALE = 2.0**30  # float16 gradients overflow until the scale has halved ~13 times


def amp_setup(init_scale: float = INIT_SCALE) -> tuple[nn.Module, Any, Any, list[Any]]:
    torch.manual_seed(0)
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return model, optimizer, scaler, batches(40)


def reference_amp_sweep(
    model: nn.Module, optimizer: Any, scaler: Any, data: list[Any], lrs: np.ndarray
) -> tuple[list[int], list[float]]:
    """Independent loop: skipped updates (by LR index) and recorded losses."""
    stream = itertools.cycle(data)
    skipped, losses = [], []
    index = 0
    model.train()
    while index < len(lrs):
        optimizer.param_groups[0]["lr"] = f32(lrs[index])
        optimizer.zero_grad(set_to_none=True)
        inputs, target = next(stream)
        with torch.autocast("cpu", dtype=torch.float16):
            loss = cross_entropy(model(inputs), target)
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scaler.get_scale() < scale:
            skipped.append(index)
            continue
        losses.append(loss.item())
        index += 1
    return skipped, losses


def test_skipped_steps_are_listed_and_do_not_advance_the_lr() -> None:
    model, optimizer, scaler, data = amp_setup()
    reference = copy.deepcopy((model, optimizer, scaler))
    before = capture(model, optimizer, scaler)

    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, autocast_dtype=torch.float16,
        grad_scaler=scaler, **SWEEP,
    )

    planned = make_config(**{k: v for k, v in SWEEP.items() if k != "progress"}).learning_rates()
    expected_skips, expected_losses = reference_amp_sweep(*reference, data, planned)
    assert len(expected_skips) >= 3  # the setup really overflows at first
    skipped = result.meta["skipped_steps"]
    assert [entry["step"] for entry in skipped] == expected_skips
    assert [entry["lr"] for entry in skipped] == [planned[i] for i in expected_skips]
    assert all(math.isfinite(entry["loss"]) for entry in skipped)
    assert result.meta["steps_run"] == len(result.lrs) + len(skipped)
    assert result.meta["autocast_dtype"] == "torch.float16"
    # Skips don't advance the LR: the curve is the plan from its start, step by step.
    np.testing.assert_array_equal(result.lrs, planned[: len(result.lrs)])
    assert len(result.lrs) == len(expected_losses)
    np.testing.assert_array_equal(result.losses, expected_losses)
    assert_restored(before, model, optimizer, scaler)


def test_used_scaler_is_restored_exactly() -> None:
    model, optimizer, scaler, data = amp_setup(init_scale=2.0**12)
    # Use the scaler first so that it holds tensors (_scale, _growth_tracker).
    for inputs, target in data[:2]:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = cross_entropy(model(inputs), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert isinstance(scaler._scale, torch.Tensor)
    before = capture(model, optimizer, scaler)
    tracker = scaler._growth_tracker
    tracker_value = tracker.clone()

    lr_find(
        model, optimizer, data, loss_fn=cross_entropy, autocast_dtype=torch.float16,
        grad_scaler=scaler, **SWEEP,
    )

    assert_restored(before, model, optimizer, scaler)
    assert scaler._growth_tracker is tracker
    assert torch.equal(tracker, tracker_value)
    # The restored scaler keeps working for the user's own loop.
    inputs, target = data[0]
    with torch.autocast("cpu", dtype=torch.float16):
        loss = cross_entropy(model(inputs), target)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == before.scaler_state["scale"]


def test_consecutive_skips_end_the_sweep() -> None:
    model, optimizer, _, data = amp_setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    before = capture(model, optimizer, scaler)
    calls = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        inputs, target = batch
        loss = cross_entropy(model(inputs), target)
        return loss if len(calls) <= 5 else loss * math.inf  # every later update overflows

    result = lr_find(
        model, optimizer, data, step_fn=step_fn, grad_scaler=scaler, **{**SWEEP, "num_steps": 40}
    )

    assert len(result.lrs) == 5
    assert result.stop_step is None  # the infinite losses were skipped, never recorded
    assert result.stop_reason == f"GradScaler skipped {MAX_CONSECUTIVE_SKIPS} updates in a row"
    assert [entry["step"] for entry in result.meta["skipped_steps"]] == [5] * MAX_CONSECUTIVE_SKIPS
    assert np.all(np.isfinite(result.losses))
    assert_restored(before, model, optimizer, scaler)


def test_a_sweep_whose_every_update_is_skipped_says_why() -> None:
    """No update ever lands: the user must learn it was the GradScaler.

    Either a result whose stop_reason names the GradScaler, or an error that does.
    (An empty curve cannot become an LRFindResult; the core then raises "a curve
    needs at least one recorded step", which hides the cause.)
    """
    model, optimizer, scaler, data = amp_setup(init_scale=2.0**60)
    before = capture(model, optimizer, scaler)
    try:
        result = lr_find(
            model, optimizer, data, loss_fn=cross_entropy, autocast_dtype=torch.float16,
            grad_scaler=scaler, **SWEEP,
        )
    except (ValueError, RuntimeError) as error:
        assert "GradScaler" in str(error), f"the error hides the cause: {error}"
    else:
        assert "GradScaler skipped" in result.stop_reason
    assert_restored(before, model, optimizer, scaler)


def test_disabled_scaler_is_the_same_as_none() -> None:
    model, optimizer, _, data = amp_setup()
    twin_model, twin_optimizer = copy.deepcopy((model, optimizer))
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    with_scaler = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, grad_scaler=disabled, **SWEEP
    )
    without = lr_find(twin_model, twin_optimizer, data, loss_fn=cross_entropy, **SWEEP)
    np.testing.assert_array_equal(with_scaler.losses, without.losses)
    assert with_scaler.meta["skipped_steps"] == []


def test_bfloat16_autocast_runs_and_restores() -> None:
    model, optimizer, _, data = amp_setup()
    before = capture(model, optimizer)
    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, autocast_dtype=torch.bfloat16, **SWEEP
    )
    assert result.meta["autocast_dtype"] == "torch.bfloat16"
    assert len(result.lrs) >= 2
    assert np.all(np.isfinite(result.losses[:2]))
    assert_restored(before, model, optimizer)


@pytest.mark.parametrize("bad", ["float16", 16])
def test_autocast_dtype_must_be_a_torch_dtype(bad: Any) -> None:
    model, optimizer, _, data = amp_setup()
    before = capture(model, optimizer)
    with pytest.raises(TypeError, match=r"autocast_dtype must be a torch\.dtype"):
        lr_find(model, optimizer, data, loss_fn=cross_entropy, autocast_dtype=bad, **SWEEP)
    assert_restored(before, model, optimizer)


def test_grad_scaler_must_look_like_a_grad_scaler() -> None:
    model, optimizer, _, data = amp_setup()
    before = capture(model, optimizer)
    with pytest.raises(TypeError, match=r"grad_scaler must be a torch\.amp\.GradScaler"):
        lr_find(model, optimizer, data, loss_fn=cross_entropy, grad_scaler=object(), **SWEEP)
    assert_restored(before, model, optimizer)
