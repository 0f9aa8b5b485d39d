"""Iterating the user's batches: cycle what can be replayed, end what cannot.

Framework-free; both backends draw their batches through :class:`BatchSource`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


class DataExhausted(Exception):
    """A one-shot iterator ran out before the sweep's planned steps."""


class BatchSource:
    """Endless batches from ``data``.

    A re-iterable (a DataLoader, a list, any Iterable that is not an Iterator) is
    iterated again when it runs out, with one notice (with ``cycle=False`` it ends
    after one pass instead). A one-shot iterator (a generator, ``iter(loader)``)
    cannot be replayed: :class:`DataExhausted` is raised when it runs out, and the
    sweep ends there. Data that yields nothing raises ``ValueError``.

    Notices for the user are appended to ``notices``; the backend warns with them
    once the sweep is over, so the warning points at the user's call.
    """

    def __init__(
        self,
        data: Iterable[Any],
        name: str,
        notices: list[str] | None = None,
        cycle: bool = True,
    ) -> None:
        if not isinstance(data, Iterable) or isinstance(data, str | bytes):
            raise TypeError(f"{name} must be an iterable of batches, got {type(data).__name__}")
        self._data = data
        self.name = name
        self._one_shot = isinstance(data, Iterator) or not cycle
        self._iterator = iter(data)
        self.produced = 0
        self.cycled = False
        self.notices = [] if notices is None else notices

    def __next__(self) -> Any:
        try:
            batch = next(self._iterator)
        except StopIteration:
            if self.produced == 0:
                raise ValueError(f"{self.name} is empty: it yielded no batch") from None
            if self._one_shot:
                self._iterator = iter(())
                raise DataExhausted(f"{self.name} ran out after {self.produced} batches") from None
            if not self.cycled:
                self.notices.append(
                    f"{self.name} has {self.produced} batches, fewer than the sweep needs; "
                    "cycling through it again"
                )
                self.cycled = True
            self._iterator = iter(self._data)
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ValueError(f"{self.name} yielded no batch when iterated again") from None
        self.produced += 1
        return batch

    def __iter__(self) -> BatchSource:
        return self


def held_out_error(length: int, count: int) -> ValueError:
    """The error when ``length`` training batches cannot spare ``count`` for validation
    and still leave some to train on."""
    return ValueError(
        f"train_data holds {length} batches; the search holds out {count} as validation "
        "data and needs more to train on: pass val_data, or more training data"
    )


EXHAUSTED = "data exhausted"


def exhausted_reason(steps: int) -> str:
    """The result's stop reason when the data ran out after ``steps`` optimizer steps."""
    return f"{EXHAUSTED} after {steps} steps"


def is_exhausted(reason: str | None) -> bool:
    """Whether ``reason`` (a run's end reason) says that the data ran out."""
    return reason is not None and reason.startswith(EXHAUSTED)
