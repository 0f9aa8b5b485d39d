"""What ``lr_find`` needs from ``torch.distributed``: the group, the rank, shared facts.

Under DDP or FSDP every rank runs the same sweep on its own shard of the data.
The recorded losses are averaged over ranks at each sync point (one
``all_reduce``), so every rank applies the stop rule to the same numbers and
stops at the same step; rank 0's run facts are broadcast at the end so every rank
returns an identical result.
"""

from __future__ import annotations

from typing import Any

import torch


def active_group(process_group: Any = None) -> Any:
    """The process group to average losses over, or None when not distributed."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    group = process_group if process_group is not None else torch.distributed.group.WORLD
    return group if torch.distributed.get_world_size(group) > 1 else None


def rank(group: Any) -> int:
    """This process's rank in ``group`` (0 when not distributed)."""
    return 0 if group is None else torch.distributed.get_rank(group)


def world_size(group: Any) -> int:
    """Ranks in ``group`` (1 when not distributed)."""
    return 1 if group is None else torch.distributed.get_world_size(group)


def share_from_rank0(value: Any, group: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if group is None:
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(
        holder, src=torch.distributed.get_global_rank(group, 0), group=group
    )
    return holder[0]


def is_collective_failure(error: BaseException) -> bool:
    """True for errors raised by a failed or timed-out collective (another rank failed)."""
    distributed_error = getattr(torch.distributed, "DistError", None)
    if distributed_error is not None and isinstance(error, distributed_error):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        word in text for word in ("gloo", "nccl", "timed out", "connection closed", "peer")
    )
