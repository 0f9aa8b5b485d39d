"""one_cycle_scheduler: torch's OneCycleLR at the result's one-cycle LR."""

import numpy as np
import pytest
import torch

from lrfind_core import LRFindResult
from lrfind_core.schedules import exponential_schedule
from lrfind_torch import TorchOptions, one_cycle_scheduler

LRS = exponential_schedule(1e-6, 10.0, 100)
STEPS = np.arange(100, dtype=np.float64)
RESULT = LRFindResult.from_curve(
    LRS, 2.0 - 1.5 / (1.0 + np.exp(-(STEPS - 40) / 5)) + np.maximum(0, STEPS - 70) ** 2 / 20
)


def lr_sequence(optimizer, scheduler, steps):
    seen = []
    for _ in range(steps):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_the_scheduler_equals_onecycle_by_hand_and_keeps_group_ratios():
    def make():
        layer = torch.nn.Linear(3, 2)
        return torch.optim.SGD(
            [{"params": [layer.weight], "lr": 1.0}, {"params": [layer.bias], "lr": 0.25}]
        )

    optimizer = make()
    scheduler = one_cycle_scheduler(optimizer, RESULT, 40, pct_start=0.25)
    peak = RESULT.suggest(for_schedule="one_cycle").lr
    reference_optimizer = make()
    reference = torch.optim.lr_scheduler.OneCycleLR(
        reference_optimizer, max_lr=[peak, peak * 0.25], total_steps=40, pct_start=0.25
    )
    ours, theirs = (
        lr_sequence(optimizer, scheduler, 40),
        lr_sequence(reference_optimizer, reference, 40),
    )
    assert ours == theirs
    assert max(lr[0] for lr in ours) == pytest.approx(peak)
    assert all(lr[1] == pytest.approx(lr[0] * 0.25) for lr in ours)


def test_lr_find_suggests_for_the_schedule_it_is_asked_for():
    from lrfind_torch import lr_find

    torch.manual_seed(0)
    data = [(torch.randn(16, 4), torch.randint(0, 2, (16,))) for _ in range(40)]

    def run(**options):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return lr_find(
            model,
            optimizer,
            data,
            loss_fn=torch.nn.functional.cross_entropy,
            num_steps=40,
            start_lr=1e-4,
            end_lr=10.0,
            options=TorchOptions(progress=False),
            **options,
        )

    constant, default = run(for_schedule="constant"), run()
    assert constant.settings.for_schedule == "constant"
    assert default.settings.for_schedule == "one_cycle"
    np.testing.assert_array_equal(constant.losses, default.losses)
    assert constant.suggestion == default.suggest(for_schedule="constant").lr
    assert constant.suggestion < default.suggestion
