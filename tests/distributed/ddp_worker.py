"""Worker for the DDP tests: run ``lr_find`` on one rank of a 2-process gloo group.

Run as ``python ddp_worker.py SCENARIO RANK WORLD PORT OUT_DIR``; it writes its
result (or its error) to ``OUT_DIR/rank{RANK}.json``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import traceback
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from lrfind_torch import TorchOptions, lr_find

STEPS = 30
BATCH = 16  # per rank


def full_batches(steps: int = STEPS, world: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The global batches, of world * BATCH rows each (the single-process run's)."""
    generator = torch.Generator().manual_seed(123)
    inputs = torch.randn(steps, world * BATCH, 8, generator=generator)
    targets = torch.randint(0, 3, (steps, world * BATCH), generator=generator)
    return [(inputs[i], targets[i]) for i in range(steps)]


def rank_loader(rank: int, world: int) -> DataLoader:
    """This rank's DataLoader through a DistributedSampler (no shuffling).

    The sampler gives rank r the rows r, r + world, r + 2 world, ... of the dataset,
    so the ranks' i-th batches together are exactly the rows of global batch i.
    """
    inputs, targets = zip(*full_batches(world=world), strict=True)
    dataset = TensorDataset(torch.cat(inputs), torch.cat(targets))
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
    return DataLoader(dataset, batch_size=BATCH, sampler=sampler)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 3))


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of an FSDP2 DTensor, or the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def fingerprint(
    model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None
) -> list:
    """Every parameter, state tensor, LR and scaler setting, as nested lists, for exact
    comparison."""
    params = [
        (p.to_local() if hasattr(p, "to_local") else p).detach().tolist()
        for p in model.parameters()
    ]
    state = [
        {k: local(v).tolist() if torch.is_tensor(v) else v for k, v in s.items()}
        for s in optimizer.state.values()
    ]
    return [
        params,
        state,
        [g["lr"] for g in optimizer.param_groups],
        torch.get_rng_state().tolist(),
        None if scaler is None else scaler.state_dict(),
    ]


def main() -> None:
    scenario, rank, world, port, out_dir = sys.argv[1:6]
    rank, world = int(rank), int(world)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group(
        "gloo",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=5 if scenario == "failure_stay" else 60),
    )
    torch.set_num_threads(1)
    model = make_model()
    if scenario == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        ddp = fully_shard(model)
    else:
        ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=1e-3, momentum=0.9)
    batches = rank_loader(rank, world)
    amp = {}
    if scenario == "ddp_amp":  # float16 autocast and a GradScaler that skips at first
        amp = {
            "autocast_dtype": torch.float16,
            "grad_scaler": torch.amp.GradScaler("cpu", init_scale=2.0**24),
        }
    before = fingerprint(model, optimizer, amp.get("grad_scaler"))
    record: dict = {"rank": rank}

    def failing_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        failing_loss.calls += 1
        if rank == 1 and failing_loss.calls == 5:
            raise ArithmeticError("rank 1 failed on purpose")
        return nn.functional.cross_entropy(output, target)

    failing_loss.calls = 0
    loss_fn = failing_loss if scenario.startswith("failure") else nn.functional.cross_entropy
    try:
        result = lr_find(
            ddp,
            optimizer,
            batches,
            loss_fn=loss_fn,
            num_steps=STEPS,
            start_lr=1e-4,
            end_lr=100.0,
            options=TorchOptions(sync_every=4, progress=True, **amp),
            plot_path=os.path.join(out_dir, f"plot{rank}.png"),
        )
        record["result"] = result.to_dict()
    except BaseException as error:
        record["error_type"] = type(error).__name__
        record["error"] = str(error)
        record["traceback"] = traceback.format_exc()
    record["restored"] = fingerprint(model, optimizer, amp.get("grad_scaler")) == before
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    if scenario == "failure_stay":
        # The failed rank carries on into another collective instead of exiting.
        with contextlib.suppress(Exception):
            dist.barrier()
    if not scenario.startswith("failure"):
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
