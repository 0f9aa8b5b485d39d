"""Batches for the sweep: iterate (cycling when allowed) and move them to the device."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch


class DataExhausted(Exception):
    """A one-shot iterator ran out before the sweep's planned steps."""


class BatchStream:
    """Endless batches from ``data``.

    A re-iterable (a DataLoader, a list, any Iterable that is not an Iterator) is
    iterated again when it runs out, with one notice. A one-shot iterator
    (a generator, ``iter(loader)``) cannot be replayed: :class:`DataExhausted`
    is raised when it runs out, and the sweep ends there.

    Notices for the user (cycling) are appended to ``notices``; the caller warns
    with them once the sweep is over, so the warning points at the user's call.
    """

    def __init__(self, data: Iterable[Any], name: str, notices: list[str] | None = None) -> None:
        if not isinstance(data, Iterable):
            raise TypeError(f"{name} must be an iterable of batches, got {type(data).__name__}")
        self._data = data
        self._name = name
        self._one_shot = isinstance(data, Iterator)
        self._iterator = iter(data)
        self._produced = 0
        self._warned = False
        self.notices = [] if notices is None else notices

    def __next__(self) -> Any:
        try:
            batch = next(self._iterator)
        except StopIteration:
            if self._produced == 0:
                raise ValueError(f"{self._name} is empty: it yielded no batch") from None
            if self._one_shot:
                raise DataExhausted(
                    f"{self._name} ran out after {self._produced} batches"
                ) from None
            if not self._warned:
                self.notices.append(
                    f"{self._name} has {self._produced} batches, fewer than the sweep needs; "
                    "cycling through it again"
                )
                self._warned = True
            self._iterator = iter(self._data)
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ValueError(f"{self._name} yielded no batch when iterated again") from None
        self._produced += 1
        return batch

    def __iter__(self) -> BatchStream:
        return self


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
