"""The user's batches: read by position (:class:`BatchTape`) and moved to the device."""

from __future__ import annotations

from typing import Any

import torch

from lrfind_core.batch_source import DataExhausted


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


class BatchTape:
    """Micro-batches by position in the user's stream, for runs that start at a block.

    Positions count micro-batches drawn from ``source`` (a
    :class:`~lrfind_core.batch_source.BatchSource`). :meth:`seek` moves to a run's
    first position: forward by drawing and dropping batches, or, with ``replay``,
    back to a position drawn before, whose batches were kept (as yielded, on the
    host if the loader yields host tensors) so that every run of a block reads the
    very same batches. Batches before the latest seek are dropped.
    """

    def __init__(self, source: Any, replay: bool) -> None:
        self.source = source
        self.replay = replay
        self.kept: dict[int, Any] = {}
        self.position = 0

    def seek(self, position: int, preload: int = 0) -> None:
        """Make ``position`` the next batch to read; with ``replay``, draw the
        ``preload`` batches from there on now (before the run's steps use the RNG),
        as far as the data goes."""
        self.kept = {index: batch for index, batch in self.kept.items() if index >= position}
        self.position = position
        if not self.replay:
            return
        try:
            for _ in range(preload):
                next(self)
        except DataExhausted:
            pass
        self.position = position

    def __next__(self) -> Any:
        if self.position in self.kept:
            batch = self.kept[self.position]
        else:
            while self.source.produced < self.position:
                next(self.source)
            batch = next(self.source)
            if self.replay:
                self.kept[self.position] = batch
        self.position += 1
        return batch

    def __iter__(self) -> BatchTape:
        return self
