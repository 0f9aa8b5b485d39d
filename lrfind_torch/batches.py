"""Moving the user's batches to the device (iteration itself: :mod:`lrfind_core.batch_source`)."""

from __future__ import annotations

from typing import Any

import torch


def move_to_device(batch: Any, device: torch.device, non_blocking: bool) -> Any:
    """``batch`` with every tensor moved to ``device`` (tuples, lists, dicts, namedtuples)."""
    if isinstance(batch, torch.Tensor):
        if batch.device == device:
            return batch
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, tuple):
        moved = [move_to_device(item, device, non_blocking) for item in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else tuple(moved)
    if isinstance(batch, list):
        return [move_to_device(item, device, non_blocking) for item in batch]
    if isinstance(batch, dict):
        return type(batch)((k, move_to_device(v, device, non_blocking)) for k, v in batch.items())
    return batch
