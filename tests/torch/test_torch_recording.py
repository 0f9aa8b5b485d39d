"""The loss recorder reads the same curve whether each step is read at once or queued."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lrfind_core.monitor import MonitorSettings
from lrfind_torch.recording import LossRecorder

RULE = MonitorSettings(beta=0.9, debias=True, diverge_factor=4.0)


def _record(values: list[float], sync_every: int, points_every: int = 1) -> LossRecorder:
    recorder = LossRecorder(RULE, sync_every)
    for index, value in enumerate(values):
        if recorder.stopped:
            break
        loss = torch.tensor(value, dtype=torch.float32)
        point = loss if (index + 1) % points_every == 0 else None
        recorder.add(index, 1e-3 * 1.1**index, loss, None, point)
    recorder.finish()
    return recorder


@pytest.mark.parametrize("points_every", [1, 3])
@pytest.mark.parametrize(
    "values",
    [
        [3.0, 2.5, 2.0, 1.8, 1.7, 2.0, 4.0, 9.0, 30.0, 100.0, 1.0, 1.0],  # diverges
        [3.0, 2.0, math.nan, 1.0, 1.0],  # non-finite
        [2.0, 1.9, 1.8, 1.7],  # runs to the end
    ],
)
def test_immediate_reads_equal_queued_reads(values, points_every):
    immediate = _record(values, sync_every=1, points_every=points_every)
    for sync_every in (2, 5):
        queued = _record(values, sync_every, points_every)
        assert queued.stopped == immediate.stopped
        assert queued.lrs == immediate.lrs
        # the same bits (repr is exact for floats and equal for NaNs)
        assert repr(queued.losses) == repr(immediate.losses)
        assert repr(queued.monitor) == repr(immediate.monitor)
        # the queued recorder may have trained (and read) steps past the stop
        read = len(immediate.step_losses)
        assert repr(queued.step_losses[:read]) == repr(immediate.step_losses)


def test_immediate_reads_stop_at_the_divergence():
    recorder = _record([3.0, 2.5, 2.0, 1.8, 1.7, 2.0, 4.0, 9.0, 30.0, 100.0, 1.0], 1)
    assert recorder.stopped
    assert recorder.end_reason is None
    assert len(recorder.step_losses) == len(recorder.losses) == recorder.steps_read
    assert recorder.losses[-1] in (30.0, 100.0, 9.0)
    assert len(recorder.losses) < 11


def test_a_run_longer_than_an_lr_block_sets_every_planned_lr():
    # the backend turns LRs into floats LR_BLOCK steps at a time
    from lrfind_core.schedules import exponential_schedule
    from lrfind_torch import Settings, TorchOptions, lr_find
    from lrfind_torch.backend import LR_BLOCK

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    seen: list[list[float]] = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen.append([group["lr"] for group in self.param_groups])
            return super().step(closure)

    optimizer = Recording([{"params": [model.weight], "lr": 1.0},
                           {"params": [model.bias], "lr": 0.5}], lr=1.0)
    steps = 2 * LR_BLOCK + 7
    data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(8)]
    with pytest.warns(UserWarning, match="cycling through it again"):
        result = lr_find(model, optimizer, data, torch.nn.functional.mse_loss, num_steps=steps,
                         start_lr=1e-9, end_lr=1e-6, settings=Settings(diverge_factor=1e12),
                         options=TorchOptions(progress=False))
    planned = exponential_schedule(1e-9, 1e-6, steps)
    applied = planned.astype(np.float32).astype(np.float64)  # LRs are applied in float32
    assert len(seen) == steps
    assert [row[0] for row in seen] == applied.tolist()
    assert [row[1] for row in seen] == (planned * 0.5).astype(np.float32).astype(float).tolist()
    assert result.lrs.tolist() == planned.tolist()
    assert [group["lr"] for group in optimizer.param_groups] == [1.0, 0.5]
