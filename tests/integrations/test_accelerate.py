"""An ``accelerate``-prepared model, optimizer and dataloader go to lrfind_torch.lr_find
as they are (CPU): everything comes back exactly, the prepared loader included, so the
training that follows is the training without lr_find."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import GradientState
from accelerate.utils import DataLoaderConfiguration
from torch_helpers import assert_restored, capture

from lrfind_torch import TorchOptions, lr_find

pytestmark = pytest.mark.filterwarnings("ignore:train_data has:UserWarning")


def prepared(seedable: bool) -> tuple[Accelerator, torch.nn.Module, Any, Any]:
    """A fresh Accelerator (CPU) with a small MLP, AdamW and a shuffling loader, seeded."""
    GradientState._reset_state()
    torch.manual_seed(0)
    accelerator = Accelerator(
        cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=seedable)
    )
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randn(512, 4)
    data = torch.utils.data.TensorDataset(inputs, inputs.sum(dim=1, keepdim=True))
    loader = torch.utils.data.DataLoader(data, batch_size=128, shuffle=True)
    return accelerator, *accelerator.prepare(model, optimizer, loader)


def train_one_epoch(accelerator: Accelerator, model: Any, optimizer: Any, loader: Any) -> None:
    for inputs, target in loader:
        loss = torch.nn.functional.mse_loss(model(inputs), target)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("seedable", [True, False])
def test_prepared_objects_work_as_they_are_and_come_back_exactly(seedable: bool) -> None:
    accelerator, model, optimizer, loader = prepared(seedable)
    train_one_epoch(accelerator, model, optimizer, loader)  # optimizer state, loader pass 1
    before = capture(model, optimizer)
    iteration = loader.iteration
    references = accelerator.gradient_state.dataloader_references
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = lr_find(model, optimizer, loader, torch.nn.functional.mse_loss,
                         start_lr=1e-4, end_lr=10.0, num_steps=20,
                         options=TorchOptions(progress=False))
    assert math.isfinite(result.suggestion) and 1e-4 < result.suggestion < 10.0
    assert_restored(before, model, optimizer)
    assert loader.iteration == iteration == 1
    assert accelerator.gradient_state.dataloader_references == references == [None]
    train_one_epoch(accelerator, model, optimizer, loader)

    # The same two epochs without lr_find in between end with the same weights.
    accelerator, plain_model, plain_optimizer, plain_loader = prepared(seedable)
    train_one_epoch(accelerator, plain_model, plain_optimizer, plain_loader)
    train_one_epoch(accelerator, plain_model, plain_optimizer, plain_loader)
    for name, value in plain_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_a_call_between_micro_batches_of_accumulate_is_refused_before_any_step() -> None:
    GradientState._reset_state()
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    inputs = torch.randn(64, 4)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, inputs.sum(dim=1, keepdim=True)), batch_size=16)
    model, optimizer, loader = accelerator.prepare(
        model, torch.optim.AdamW(model.parameters(), lr=1e-3), loader)
    batch = next(iter(loader))
    with accelerator.accumulate(model):  # the first micro-batch of a window of two
        accelerator.backward(torch.nn.functional.mse_loss(model(batch[0]), batch[1]))
        optimizer.step()
        optimizer.zero_grad()
    assert accelerator.gradient_state.sync_gradients is False
    before = capture(model, optimizer)
    with pytest.raises(ValueError, match=r"between micro-batches of accelerator\.accumulate\(\) "
                                         r"\(gradient_state\.sync_gradients is False\)"):
        lr_find(model, optimizer, loader, torch.nn.functional.mse_loss, num_steps=8,
                options=TorchOptions(progress=False))
    assert_restored(before, model, optimizer)
