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
from torch_helpers import (
    assert_restored,
    batches,
    capture,
    cross_entropy,
    f32,
    keywords,
    tiny_mlp,
)

from lrfind_torch import Settings, TorchOptions, lr_find
from lrfind_torch.recording import MAX_CONSECUTIVE_SKIPS

SWEEP = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 12}
QUIET = TorchOptions(progress=False)
INIT_SCALE = 2.0**20  # float16 gradients overflow until the scale has halved a few times


def amp_setup(init_scale: float = INIT_SCALE) -> tuple[nn.Module, Any, Any, list[Any]]:
    torch.manual_seed(0)
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return model, optimizer, scaler, batches(40)


def reference_amp_sweep(
    model: nn.Module,
    optimizer: Any,
    scaler: Any,
    data: list[Any],
    lrs: np.ndarray,
    *,
    accumulation_steps: int = 1,
    max_grad_norm: float | None = None,
    val_data: list[Any] | None = None,
    val_every: int = 1,
) -> tuple[list[int], list[float], list[float]]:
    """Independent loop: the steps whose update was skipped, every step's training
    loss, and the curve's points (the training losses, or the validation losses)."""
    stream = itertools.cycle(data)
    skipped, losses, points = [], [], []
    model.train()
    for index, lr in enumerate(lrs):
        optimizer.param_groups[0]["lr"] = f32(lr)
        optimizer.zero_grad(set_to_none=True)
        total = None
        for _ in range(accumulation_steps):
            inputs, target = next(stream)
            with torch.autocast("cpu", dtype=torch.float16):
                loss = cross_entropy(model(inputs), target)
            loss = loss if accumulation_steps == 1 else loss / accumulation_steps
            scaler.scale(loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        if max_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), max_grad_norm)
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if scaler.get_scale() < scale:
            skipped.append(index)
        losses.append(total.item())
        if val_data is None:
            points.append(losses[-1])
        elif (index + 1) % val_every == 0:
            model.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
                values = [cross_entropy(model(x), y).float() for x, y in val_data]
            points.append((sum(values[1:], values[0]) / len(values)).item())
            model.train()
    return skipped, losses, points


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sync_every": 5},  # flags read in batches, as on a GPU
        {"accumulation_steps": 2, "sync_every": 3},
        {"max_grad_norm": 0.5},
        {"val_every": 3, "sync_every": 4},  # validation points between skip flags
    ],
    ids=["every_step", "sync_5", "accumulation", "clipping", "validation"],
)
def test_skipped_updates_use_up_their_lr_and_match_a_reference_loop(options: dict) -> None:
    """A skipped update keeps its LR and its loss (measured before it) on the curve."""
    model, optimizer, scaler, data = amp_setup()
    reference = copy.deepcopy((model, optimizer, scaler))
    before = capture(model, optimizer, scaler)
    val_data = data[-2:] if "val_every" in options else None

    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, val_data=val_data,
        **keywords(autocast_dtype=torch.float16, grad_scaler=scaler, **SWEEP, **options),
    )

    planned = Settings(**SWEEP).learning_rates()
    kept = {k: v for k, v in options.items() if k != "sync_every"}
    expected_skips, expected_losses, expected_points = reference_amp_sweep(
        *reference, data, planned, val_data=val_data, **kept
    )
    assert 3 <= len(expected_skips) < len(planned) // 2  # overflows at first, then trains
    skipped = result.meta["skipped_steps"]
    assert [entry["step"] for entry in skipped] == expected_skips
    assert [entry["lr"] for entry in skipped] == [planned[i] for i in expected_skips]
    assert [entry["loss"] for entry in skipped] == [expected_losses[i] for i in expected_skips]
    assert {entry["sweep"] for entry in skipped} == {0}
    assert result.meta["steps_trained"] == len(planned)
    assert result.meta["autocast_dtype"] == "torch.float16"
    every = options.get("val_every", 1)
    np.testing.assert_array_equal(result.lrs, planned[every - 1 :: every])
    np.testing.assert_array_equal(result.losses, expected_points)
    assert_restored(before, model, optimizer, scaler)


def test_skip_detection_reads_the_device_only_at_sync_points(monkeypatch) -> None:
    """A fused optimizer lets GradScaler.step skip its own per-step read; then the
    whole sweep reads the device once per sync point (and once for the curve seeds)."""
    model, _, scaler, data = amp_setup()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    reads = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, original=original: reads.append(1) or original(self)
        )
    monkeypatch.setattr(scaler, "get_scale", lambda: pytest.fail("the scale was read"))
    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy,
        **keywords(
            autocast_dtype=torch.float16, grad_scaler=scaler, **{**SWEEP, "num_steps": 20},
            sync_every=5,
        ),
    )
    monkeypatch.undo()
    assert len(result.lrs) == 20 and result.meta["skipped_steps"]
    assert len(reads) == 20 // 5 + 1


def test_found_inf_flags_join_the_loss_on_its_device() -> None:
    """Flags of a model split over devices are summed on the loss's device."""
    from lrfind_torch.step import found_inf_flag

    class Scaler:
        def __init__(self, flags: dict) -> None:
            self.flags = flags

        def _found_inf_per_device(self, optimizer: Any) -> dict:
            return self.flags

    one = found_inf_flag(Scaler({"cpu": torch.tensor(0.0)}), None, torch.device("meta"))
    assert one.device.type == "meta"
    two = Scaler({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    assert found_inf_flag(two, None, torch.device("cpu")).item() == 3.0


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
        model, optimizer, data, loss_fn=cross_entropy,
        options=TorchOptions(progress=False, autocast_dtype=torch.float16, grad_scaler=scaler),
        **SWEEP,
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


class InfiniteGradient(torch.autograd.Function):
    """The identity forward; an infinite gradient backward (a finite loss, overflowing grads)."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor) -> torch.Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * math.inf


@pytest.mark.parametrize("sync_every", [1, 7])
def test_consecutive_skips_end_the_curve_where_they_began(sync_every: int) -> None:
    model, optimizer, _, data = amp_setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    before = capture(model, optimizer, scaler)
    calls = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        inputs, target = batch
        loss = cross_entropy(model(inputs), target)
        return loss if len(calls) <= 5 else InfiniteGradient.apply(loss)  # overflows from here

    with pytest.warns(UserWarning, match="the sweep ended early: GradScaler skipped 20 updates"):
        result = lr_find(
            model, optimizer, data, step_fn=step_fn,
            **keywords(grad_scaler=scaler, **{**SWEEP, "num_steps": 40, "sync_every": sync_every}),
        )

    assert len(result.lrs) == 5
    assert result.stop_step is None
    assert result.stop_reason == f"GradScaler skipped {MAX_CONSECUTIVE_SKIPS} updates in a row"
    steps = [entry["step"] for entry in result.meta["skipped_steps"]]
    assert steps == list(range(5, 5 + MAX_CONSECUTIVE_SKIPS))
    # Steps queued after the 20th skip (up to the sync point) ran but are not on the curve.
    last_skip = 5 + MAX_CONSECUTIVE_SKIPS
    assert last_skip <= result.meta["steps_trained"] < last_skip + sync_every
    assert np.all(np.isfinite(result.losses))
    assert_restored(before, model, optimizer, scaler)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            SWEEP, r"lr_find recorded no point: GradScaler skipped every update \(12 of 12\)",
            id="sweep",
        ),
        pytest.param(
            {"start_lr": 1e-4, "end_lr": 1.0, "mode": "independent", "independent_lrs": 3,
             "steps_per_lr": 6, "average_last": 2},
            r"recorded no trained run: GradScaler skipped every update of 3 of 3",
            id="independent",
        ),
    ],
)
def test_a_finder_whose_every_update_is_skipped_says_why(options: dict, message: str) -> None:
    """No update ever lands: the error names the GradScaler rather than a flat curve."""
    model, optimizer, scaler, data = amp_setup(init_scale=2.0**60)
    before = capture(model, optimizer, scaler)
    with pytest.raises(RuntimeError, match=message):
        lr_find(
            model, optimizer, data, loss_fn=cross_entropy,
            **keywords(autocast_dtype=torch.float16, grad_scaler=scaler, **options),
        )
    assert_restored(before, model, optimizer, scaler)


def test_skipped_updates_are_listed_in_independent_mode() -> None:
    model, optimizer, scaler, data = amp_setup()
    reference = copy.deepcopy((model, optimizer, scaler))
    settings = Settings(mode="independent", independent_lrs=3, steps_per_lr=6, average_last=2)
    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, settings=settings,
        options=TorchOptions(progress=False, autocast_dtype=torch.float16, grad_scaler=scaler),
    )
    grid = settings.independent_grid()
    expected_skips, expected_losses, _ = reference_amp_sweep(*reference, data, [grid[0]] * 6)
    assert expected_skips  # the first run starts from the overflowing scale
    runs_made = int(np.count_nonzero(~np.isnan(result.runs.run_losses[0, :, 0])))
    assert runs_made >= 2
    # Every run starts from the same restored scaler and weights, so until its first
    # update lands each run skips as run 0 does; run 0 is the reference loop.
    skipped = result.meta["skipped_steps"]
    assert [e["step"] for e in skipped if e["run"] == 0] == expected_skips
    assert expected_skips == list(range(len(expected_skips)))  # no update lands before
    for run in range(runs_made):
        run_skips = [e["step"] for e in skipped if e["run"] == run]
        assert run_skips[: len(expected_skips)] == expected_skips
    assert [e["lr"] for e in skipped if e["run"] == 0] == [grid[0]] * len(expected_skips)
    assert [e["loss"] for e in skipped if e["run"] == 0] == [
        expected_losses[i] for i in expected_skips
    ]


def test_an_independent_run_whose_every_update_is_skipped_is_named_in_a_warning() -> None:
    """Only the run at the grid's top LR overflows at every update: the other runs make
    the result, and a warning names the untrained run."""
    model, optimizer, _, data = amp_setup()
    scaler = torch.amp.GradScaler("cpu")
    before = capture(model, optimizer, scaler)

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        loss = cross_entropy(model(batch[0]), batch[1])
        return InfiniteGradient.apply(loss) if optimizer.param_groups[0]["lr"] > 1.0 else loss

    settings = Settings(mode="independent", independent_lrs=3, steps_per_lr=6, average_last=2)
    with pytest.warns(UserWarning, match=r"GradScaler skipped every update of 1 of 3 "
                      r"independent run\(s\).*\(sweep, run\) \[\(0, 2\)\]"):
        result = lr_find(
            model, optimizer, data, step_fn=step_fn, settings=settings,
            options=TorchOptions(progress=False, grad_scaler=scaler),
        )
    assert [entry["run"] for entry in result.meta["skipped_steps"]] == [2] * 6
    assert_restored(before, model, optimizer, scaler)


def test_k_sweeps_list_skips_per_sweep_and_say_which_sweep_was_cut() -> None:
    """Sweep 1 overflows at every update: its curve is cut to nothing, a warning says
    so, and the other sweeps make the result; sweep 0 is the single sweep."""
    model, optimizer, scaler, _ = amp_setup()
    data = batches(75)
    twin = copy.deepcopy((model, optimizer, scaler))
    before = capture(model, optimizer, scaler)
    steps = 25
    calls = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        inputs, target = batch
        with torch.autocast("cpu", dtype=torch.float16):
            loss = cross_entropy(model(inputs), target)
        return InfiniteGradient.apply(loss) if steps < len(calls) <= 2 * steps else loss

    sweep = {**SWEEP, "num_steps": steps}
    with pytest.warns(UserWarning, match=r"sweep 1 of 3: GradScaler skipped 20 updates in a "
                      r"row; its curve ends after 0 point\(s\)"):
        result = lr_find(model, optimizer, data, step_fn=step_fn,
                         **keywords(grad_scaler=scaler, num_sweeps=3, **sweep))
    calls.clear()
    single = lr_find(twin[0], twin[1], data, step_fn=step_fn,
                     **keywords(grad_scaler=twin[2], **sweep))
    first = [entry for entry in result.meta["skipped_steps"] if entry["sweep"] == 0]
    assert first == single.meta["skipped_steps"] and first
    cut = [entry["step"] for entry in result.meta["skipped_steps"] if entry["sweep"] == 1]
    assert cut == list(range(MAX_CONSECUTIVE_SKIPS))
    assert result.meta["end_reasons"][0] is None
    assert "GradScaler skipped 20" in result.meta["end_reasons"][1]
    assert result.ensemble.num_sweeps == 2
    np.testing.assert_array_equal(result.ensemble.sweep_losses[0], single.losses)
    assert_restored(before, model, optimizer, scaler)


@pytest.mark.parametrize("error", [ValueError("bad batch"), KeyboardInterrupt()])
def test_a_failure_mid_sweep_restores_a_used_scaler(error: BaseException) -> None:
    model, optimizer, scaler, data = amp_setup()
    before = capture(model, optimizer, scaler)
    calls = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 8:  # after skipped and applied updates
            raise error
        inputs, target = batch
        with torch.autocast("cpu", dtype=torch.float16):
            return cross_entropy(model(inputs), target)

    with pytest.raises(type(error)):
        lr_find(model, optimizer, data, step_fn=step_fn, **keywords(grad_scaler=scaler, **SWEEP))
    assert_restored(before, model, optimizer, scaler)


def test_disabled_scaler_is_the_same_as_none() -> None:
    model, optimizer, _, data = amp_setup()
    twin_model, twin_optimizer = copy.deepcopy((model, optimizer))
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    with_scaler = lr_find(
        model, optimizer, data, loss_fn=cross_entropy, **keywords(grad_scaler=disabled, **SWEEP)
    )
    without = lr_find(
        twin_model, twin_optimizer, data, loss_fn=cross_entropy, options=QUIET, **SWEEP
    )
    np.testing.assert_array_equal(with_scaler.losses, without.losses)
    assert with_scaler.meta["skipped_steps"] == []


def test_bfloat16_autocast_runs_and_restores() -> None:
    model, optimizer, _, data = amp_setup()
    before = capture(model, optimizer)
    result = lr_find(
        model, optimizer, data, loss_fn=cross_entropy,
        **keywords(autocast_dtype=torch.bfloat16, **SWEEP),
    )
    assert result.meta["autocast_dtype"] == "torch.bfloat16"
    assert len(result.lrs) >= 2
    assert np.all(np.isfinite(result.losses[:2]))
    assert_restored(before, model, optimizer)


@pytest.mark.parametrize("bad", ["float16", 16])
def test_autocast_dtype_must_be_a_torch_dtype(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"autocast_dtype must be a torch\.dtype"):
        TorchOptions(autocast_dtype=bad)


def test_grad_scaler_must_look_like_a_grad_scaler() -> None:
    with pytest.raises(TypeError, match=r"grad_scaler must be a torch\.amp\.GradScaler"):
        TorchOptions(grad_scaler=object())
