"""Batches and steps: cycling, exhaustion, dict and multi-input batches, per-group LRs,
gradient accumulation, validation mode and batched host syncs."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch_helpers import (
    FEATURES,
    CountingBatches,
    RecordingSGD,
    assert_restored,
    batches,
    capture,
    cross_entropy,
    f32,
    keywords,
    reference_sweep,
    tiny_mlp,
)

from lrfind_torch import Settings, TorchOptions, lr_find

QUIET = TorchOptions(progress=False)
RANGE = {"start_lr": 1e-4, "end_lr": 0.5, "num_steps": 12}
SWEEP = {**RANGE, "options": QUIET}


def planned_lrs(**overrides: Any) -> np.ndarray:
    return Settings(**{**RANGE, **overrides}).learning_rates()


def mlp_setup(seed: int = 0, lr: float = 0.05) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = tiny_mlp()
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def supervised(model: nn.Module, batch: Any) -> torch.Tensor:
    inputs, target = batch
    return cross_entropy(model(inputs), target)


# ---------------------------------------------------------------- cycling and exhaustion


def test_short_loader_is_cycled_with_exactly_one_warning() -> None:
    model, optimizer = mlp_setup()
    data = batches(5)
    inputs = torch.cat([x for x, _ in data])
    target = torch.cat([y for _, y in data])
    loader = DataLoader(TensorDataset(inputs, target), batch_size=8)
    assert len(loader) == 5
    with pytest.warns(UserWarning) as record:
        result = lr_find(model, optimizer, loader, loss_fn=cross_entropy, **SWEEP)
    cycling = [w for w in record if issubclass(w.category, UserWarning)]
    assert len(cycling) == 1, [str(w.message) for w in cycling]
    assert "cycling" in str(cycling[0].message)
    assert "5 batches" in str(cycling[0].message)
    assert len(result.lrs) == 12
    assert result.stop_reason == "completed"


def test_cycled_list_replays_batches_in_order() -> None:
    data = batches(5)
    model, optimizer = mlp_setup()
    with pytest.warns(UserWarning, match="cycling"):
        cycled = lr_find(model, optimizer, data, loss_fn=cross_entropy, **SWEEP)
    twin_model, twin_optimizer = mlp_setup()
    unrolled = (data * 3)[:12]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough batches: no warning
        expected = lr_find(twin_model, twin_optimizer, unrolled, loss_fn=cross_entropy, **SWEEP)
    np.testing.assert_array_equal(cycled.losses, expected.losses)


@pytest.mark.parametrize("one_shot", ["generator", "iterator"])
def test_one_shot_iterator_that_runs_out_ends_the_sweep(one_shot: str) -> None:
    model, optimizer = mlp_setup()
    data = batches(5)
    stream = (batch for batch in data) if one_shot == "generator" else iter(data)
    before = capture(model, optimizer)
    with pytest.warns(UserWarning) as record:
        result = lr_find(model, optimizer, stream, loss_fn=cross_entropy, **SWEEP)
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert messages == [
        "the sweep ended early: data exhausted after 5 steps",
        "lr_find has no suggestion: too short to judge: 0 points left after trimming "
        "(skip_start=1, skip_end=5, finite points=5)",
    ]
    assert "data exhausted" in result.stop_reason
    assert result.stop_reason == "data exhausted after 5 steps"
    assert len(result.lrs) == 5
    assert result.stop_step is None
    np.testing.assert_array_equal(result.lrs, planned_lrs()[:5])
    assert_restored(before, model, optimizer)


@pytest.mark.parametrize("one_shot", [False, True])
def test_data_warnings_point_at_the_callers_line(one_shot: bool) -> None:
    """The cycling and the ran-out warnings point at the file that called lr_find."""
    model, optimizer = mlp_setup()
    data: Any = iter(batches(5)) if one_shot else batches(5)
    with pytest.warns(UserWarning) as record:
        lr_find(model, optimizer, data, loss_fn=cross_entropy, **SWEEP)
    assert len(record) == (2 if one_shot else 1)  # a one-shot stream ends too early to judge
    assert "data exhausted" in str(record[0].message) or "cycling" in str(record[0].message)
    for warning in record:
        assert warning.filename == __file__, (
            f"the warning points at {warning.filename}:{warning.lineno}"
        )


def test_one_shot_iterator_with_accumulation_counts_whole_steps() -> None:
    model, optimizer = mlp_setup()
    with pytest.warns(UserWarning, match="the sweep ended early: data exhausted after 2 steps"):
        result = lr_find(
            model, optimizer, iter(batches(5)), loss_fn=cross_entropy,
            settings=Settings(accumulation_steps=2), **SWEEP,
        )
    assert len(result.lrs) == 2  # the fifth batch began a third step that never finished
    assert result.stop_reason == "data exhausted after 2 steps"


def test_one_shot_iterator_exhausted_before_the_first_step_says_why() -> None:
    """One batch, two micro-batches per step: no step completes.

    The user must learn that the data ran out (a result saying so, or an error
    that does), not only "a curve needs at least one recorded step".
    """
    model, optimizer = mlp_setup()
    before = capture(model, optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = lr_find(
                model, optimizer, iter(batches(1)), loss_fn=cross_entropy,
                settings=Settings(accumulation_steps=2), **SWEEP,
            )
        except (ValueError, RuntimeError) as error:
            message = str(error)
            assert "ran out" in message or "exhausted" in message, f"hides the cause: {message}"
        else:
            assert "data exhausted" in result.stop_reason
    assert_restored(before, model, optimizer)


# ---------------------------------------------------------------- batch shapes


def test_step_fn_with_dict_batches_matches_tuple_batches() -> None:
    data = batches(12)
    dict_data = [{"x": x, "y": y, "ids": list(range(len(y)))} for x, y in data]

    def step_fn(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        assert isinstance(batch, dict) and batch["ids"] == list(range(8))
        return cross_entropy(model(batch["x"]), batch["y"])

    model, optimizer = mlp_setup()
    from_dicts = lr_find(model, optimizer, dict_data, step_fn=step_fn, **SWEEP)
    twin_model, twin_optimizer = mlp_setup()
    from_tuples = lr_find(twin_model, twin_optimizer, data, loss_fn=cross_entropy, **SWEEP)
    np.testing.assert_array_equal(from_dicts.losses, from_tuples.losses)
    assert len(from_dicts.lrs) == 12


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(FEATURES, 8)
        self.right = nn.Linear(2, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.left(first) + self.right(second)))


def test_step_fn_with_three_part_batches_matches_a_reference_loop() -> None:
    generator = torch.Generator().manual_seed(4)
    data = [
        (torch.randn(8, FEATURES, generator=generator), torch.randn(8, 2, generator=generator),
         torch.randint(0, 3, (8,), generator=generator))
        for _ in range(12)
    ]

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        first, second, target = batch
        return cross_entropy(model(first, second), target)

    torch.manual_seed(0)
    model = TwoInputs()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    reference = copy.deepcopy((model, optimizer))
    result = lr_find(model, optimizer, data, step_fn=step_fn, **SWEEP)
    expected = reference_sweep(*reference, data, step_fn, planned_lrs())
    np.testing.assert_array_equal(result.losses, expected)


def test_three_part_batch_without_step_fn_is_rejected() -> None:
    model, optimizer = mlp_setup()
    before = capture(model, optimizer)
    data = [(x, x, y) for x, y in batches(3)]
    with pytest.raises(TypeError, match="tuple or list, got tuple of length 3"):
        lr_find(model, optimizer, data, loss_fn=cross_entropy, **SWEEP)
    assert_restored(before, model, optimizer)


# ---------------------------------------------------------------- param groups


@pytest.mark.parametrize("ratio", [0.25, 3.0])
def test_param_groups_keep_their_lr_ratio(ratio: float) -> None:
    torch.manual_seed(0)
    model = tiny_mlp()
    optimizer = RecordingSGD(
        [
            {"params": model[0].parameters(), "lr": 0.04},
            {"params": model[2].parameters(), "lr": 0.04 * ratio},
        ],
        momentum=0.9,
    )
    result = lr_find(model, optimizer, batches(12), loss_fn=cross_entropy, **SWEEP)

    assert result.stop_step is None
    recorded = optimizer.recorded_lrs
    assert len(recorded) == len(result.lrs) == 12
    for step, (group0, group1) in enumerate(recorded):
        assert group1 / group0 == pytest.approx(ratio, rel=1e-6), step
        assert group0 == f32(result.lrs[step])
        assert group1 == f32(result.lrs[step] * ratio)
    np.testing.assert_array_equal(result.lrs, planned_lrs())
    assert [group["lr"] for group in optimizer.param_groups] == [0.04, 0.04 * ratio]


def test_tensor_lr_is_swept_and_restored_in_place() -> None:
    torch.manual_seed(0)
    model = tiny_mlp()
    lr = torch.tensor(0.01)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    group_lr = optimizer.param_groups[0]["lr"]
    seen = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        seen.append(float(optimizer.param_groups[0]["lr"]))
        return supervised(model, batch)

    before = capture(model, optimizer)
    result = lr_find(model, optimizer, batches(12), step_fn=step_fn, **SWEEP)
    assert seen == [f32(value) for value in result.lrs]
    assert optimizer.param_groups[0]["lr"] is group_lr
    assert float(group_lr) == f32(0.01)
    assert_restored(before, model, optimizer)


# ---------------------------------------------------------------- accumulation


def test_accumulation_advances_the_lr_per_optimizer_step() -> None:
    torch.manual_seed(0)
    model = tiny_mlp()
    optimizer = RecordingSGD(model.parameters(), lr=0.05, momentum=0.9)
    reference = copy.deepcopy((model, optimizer))
    data = CountingBatches(batches(24))

    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, settings=Settings(accumulation_steps=2),
        **SWEEP,
    )

    assert len(optimizer.recorded_lrs) == 12  # optimizer.step calls
    assert data.served == 24  # micro-batches
    assert [lrs[0] for lrs in optimizer.recorded_lrs] == [f32(lr) for lr in result.lrs]
    assert result.meta["accumulation_steps"] == 2
    expected = reference_sweep(
        *reference, batches(24), supervised, planned_lrs(), accumulation_steps=2
    )
    np.testing.assert_array_equal(result.losses, expected)  # bitwise


def test_accumulated_loss_is_the_mean_of_the_micro_batch_losses() -> None:
    model, optimizer = mlp_setup()
    data = batches(4)
    with torch.no_grad():
        first = [supervised(model, batch).item() for batch in data[:2]]
    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, settings=Settings(accumulation_steps=2),
        **{**SWEEP, "num_steps": 2},
    )
    # Step 0 sees the untouched weights, so its loss is the plain mean of two losses.
    assert result.losses[0] == pytest.approx((first[0] + first[1]) / 2, rel=1e-6)


# ---------------------------------------------------------------- validation mode


def bn_dropout_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)
    )


def test_validation_mode_records_the_mean_val_loss_every_few_steps() -> None:
    torch.manual_seed(0)
    model = bn_dropout_mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    reference_model, reference_optimizer = copy.deepcopy((model, optimizer))
    train = batches(12)
    val = batches(5, seed=9)

    torch.manual_seed(11)  # dropout masks during the training steps
    result = lr_find(
        model, optimizer, train, loss_fn=cross_entropy, val_data=val,
        settings=Settings(val_every=2, val_batches=3), **SWEEP,
    )

    planned = planned_lrs()
    assert len(result.lrs) == 12 // 2
    np.testing.assert_array_equal(result.lrs, planned[1::2])
    assert result.meta["loss_kind"] == "validation"
    assert result.meta["val_every"] == 2
    assert result.planned_points == 6
    assert result.stop_reason == "completed"

    # By hand: train a copy with the same LRs and dropout masks; after steps 1, 3, 5...
    # take the mean loss of the first 3 validation batches in eval mode, without grad.
    expected: list[float] = []

    def validate(index: int) -> None:
        if (index + 1) % 2:
            return
        reference_model.eval()
        with torch.no_grad():
            losses = [supervised(reference_model, batch) for batch in val[:3]]
        reference_model.train()
        expected.append(((losses[0] + losses[1] + losses[2]) / 3).item())

    torch.manual_seed(11)
    reference_sweep(
        reference_model, reference_optimizer, train, supervised, planned, after_step=validate
    )
    assert result.losses[0] == expected[0]
    np.testing.assert_array_equal(result.losses, expected)  # bitwise


def test_validation_runs_in_eval_mode_without_grad() -> None:
    torch.manual_seed(0)
    model = bn_dropout_mlp()
    model.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    calls: list[tuple[bool, bool]] = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls.append((model.training, torch.is_grad_enabled()))
        return supervised(model, batch)

    before = capture(model, optimizer)
    result = lr_find(
        model, optimizer, batches(12), step_fn=step_fn, val_data=batches(4, seed=3),
        settings=Settings(val_every=3, val_batches=2), **SWEEP,
    )
    assert len(result.lrs) == 4
    train_calls = [call for call in calls if call == (True, True)]
    val_calls = [call for call in calls if call == (False, False)]
    assert len(train_calls) == 12
    assert len(val_calls) == 4 * 2
    assert len(calls) == 12 + 8
    assert_restored(before, model, optimizer)


# ---------------------------------------------------------------- sync_every


def diverging_run(sync_every: int) -> Any:
    model, optimizer = mlp_setup(lr=0.1)
    return lr_find(
        model, optimizer, batches(30), loss_fn=cross_entropy, start_lr=1e-3, end_lr=1e3,
        num_steps=30, options=TorchOptions(progress=False, sync_every=sync_every),
    )


def test_sync_every_does_not_change_a_diverging_curve() -> None:
    every_step = diverging_run(1)
    batched = diverging_run(7)

    assert every_step.stop_step is not None
    assert every_step.stop_reason in ("diverged", "non-finite loss")
    stop = every_step.stop_step
    assert 0 < stop < 27
    assert batched.stop_step == stop
    assert batched.stop_reason == every_step.stop_reason
    assert len(every_step.lrs) == len(batched.lrs) == stop + 1
    np.testing.assert_array_equal(every_step.losses, batched.losses)
    np.testing.assert_array_equal(every_step.lrs, batched.lrs)
    assert every_step.suggestions == batched.suggestions
    # Reading every 7 steps runs on to the next sync point; those steps are cut.
    assert every_step.meta["steps_trained"] == stop + 1
    assert batched.meta["steps_trained"] == min(30, 7 * math.ceil((stop + 1) / 7))
    assert batched.meta["sync_every"] == 7


def test_sync_every_does_not_change_a_completed_curve() -> None:
    results = []
    for sync_every in (1, 7):
        model, optimizer = mlp_setup()
        results.append(
            lr_find(
                model, optimizer, batches(12), loss_fn=cross_entropy,
                **{**SWEEP, "options": TorchOptions(progress=False, sync_every=sync_every)},
            )
        )
    assert results[0].stop_reason == results[1].stop_reason == "completed"
    np.testing.assert_array_equal(results[0].losses, results[1].losses)


def test_default_sync_every_on_cpu_is_one() -> None:
    model, optimizer = mlp_setup()
    result = lr_find(model, optimizer, batches(12), loss_fn=cross_entropy, **SWEEP)
    assert result.meta["sync_every"] == 1
    assert result.meta["device"] == "cpu" and result.meta["devices"] == ["cpu"]
    assert result.meta["backend"] == "torch"


def test_meta_holds_the_shared_and_the_torch_keys() -> None:
    model, optimizer = mlp_setup()
    result = lr_find(model, optimizer, batches(12), loss_fn=cross_entropy, **SWEEP)
    shared = {
        "backend", "versions", "device", "devices", "mode", "num_sweeps", "accumulation_steps",
        "loss_kind", "val_every", "runs", "steps_trained", "end_reasons", "skipped_steps",
        "run_time_s", "wall_time_s",
    }
    torch_only = {
        "world_size", "sync_every", "autocast_dtype", "snapshot", "train_mode",
        "snapshot_time_s", "restore_time_s",
    }
    assert set(result.meta) == shared | torch_only
    assert result.meta["mode"] == "sweep"
    assert result.meta["loss_kind"] == "train"
    assert result.meta["val_every"] is None
    assert result.meta["runs"] == 1
    assert result.meta["steps_trained"] == 12
    assert result.meta["end_reasons"] == [None]
    assert result.meta["world_size"] == 1
    assert result.meta["train_mode"] is True


@pytest.mark.parametrize(
    ("options", "reads"),
    [
        ({}, 4),
        ({"accumulation_steps": 2}, 4),
        ({"max_grad_norm": 1.0}, 4),
        ({"val_data": "first_batches", "val_every": 2}, 4),
        ({"num_sweeps": 2}, 8),
    ],
    ids=["plain", "accumulation", "clipping", "validation", "two_sweeps"],
)
def test_host_reads_happen_only_at_sync_points(monkeypatch, options, reads) -> None:
    """What a GPU would wait for: tensors read to the host. 20 steps read every 5 steps
    make 4 reads a sweep (+1 for the sweeps' RNG seeds), whatever the options."""
    model, optimizer = mlp_setup()
    data = batches(80)
    if options.get("val_data") == "first_batches":
        options = {**options, "val_data": data[:2]}
    count = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, original=original: count.append(1) or original(self)
        )
    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, start_lr=1e-4, end_lr=1e-2,
        num_steps=20, **keywords(sync_every=5, **options),
    )
    monkeypatch.undo()
    assert result.meta["steps_trained"] == 20 * options.get("num_sweeps", 1)
    assert len(count) == reads + 1
