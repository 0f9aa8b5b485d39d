"""On a CUDA device: the CUDA RNG and the model come back exactly, and the
in-memory snapshot holds no GPU memory. Skipped without a GPU (none in CI)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_helpers import assert_restored, batches, capture, cross_entropy, tiny_mlp

from lrfind_torch import lr_find
from lrfind_torch.state import TrainingSnapshot

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda_setup() -> tuple[nn.Module, torch.optim.Optimizer, list]:
    torch.manual_seed(0)
    model = tiny_mlp(dropout=0.2).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = [(x.cuda(), y.cuda()) for x, y in batches(16)]
    return model, optimizer, data


def test_cuda_rng_model_and_optimizer_come_back_exactly() -> None:
    model, optimizer, data = cuda_setup()
    torch.cuda.manual_seed_all(7)
    torch.rand(3, device="cuda")  # move the CUDA generator off its seed
    rng_before = torch.cuda.get_rng_state_all()
    before = capture(model, optimizer)
    result = lr_find(model, optimizer, data, loss_fn=cross_entropy, start_lr=1e-4, end_lr=10.0,
                     num_steps=16, progress=False)
    assert len(result.losses) >= 2
    after = torch.cuda.get_rng_state_all()
    assert len(after) == len(rng_before)
    assert all(torch.equal(a, b) for a, b in zip(after, rng_before, strict=True))
    assert_restored(before, model, optimizer)


def test_memory_snapshot_lives_on_the_cpu() -> None:
    model, optimizer, _ = cuda_setup()
    torch.cuda.synchronize()
    allocated = torch.cuda.memory_allocated()
    snapshot = TrainingSnapshot([model], [optimizer])
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == allocated
    del snapshot
