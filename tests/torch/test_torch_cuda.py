"""On a CUDA device: the CUDA RNG and the model come back exactly, the in-memory
snapshot holds no GPU memory, and a GradScaler sweep does not sync every step.
Skipped without a GPU (none in CI)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch_helpers import assert_restored, batches, capture, cross_entropy, tiny_mlp

from lrfind_torch import TorchOptions, lr_find
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
                     num_steps=16, options=TorchOptions(progress=False))
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


def test_grad_scaler_sweep_syncs_only_at_sync_points() -> None:
    """A fused optimizer lets GradScaler step without a sync; lr_find adds none per step.

    CUDA's sync debug mode warns at every synchronizing call. 100 steps with a
    per-step read would warn 100 times or more; reads every 25 steps, the snapshot
    and the restore warn far fewer times.
    """
    torch.manual_seed(0)
    model = tiny_mlp().cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**20)
    data = [(x.cuda(), y.cuda()) for x, y in batches(16)]
    before = capture(model, optimizer, scaler)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = lr_find(
                model, optimizer, data, loss_fn=cross_entropy, start_lr=1e-5, end_lr=1e-2,
                num_steps=100,
                options=TorchOptions(
                    autocast_dtype=torch.float16, grad_scaler=scaler, sync_every=25,
                    progress=False,
                ),
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(result.lrs) == 100
    assert len(syncs) < 40, [str(w.message) for w in syncs[:5]]
    assert_restored(before, model, optimizer, scaler)
