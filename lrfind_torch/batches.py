"""The user's batches: read by position (:class:`BatchTape`) and moved to the device."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
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


@contextlib.contextmanager
def kept_loader_positions(sources: Iterable[Any]) -> Iterator[None]:
    """Put back where each loader that remembers its passes stands, once lr_find has read
    it part way. An ``accelerate``-prepared loader (duck-typed: nothing is imported)
    counts its finished passes in ``iteration``, which seeds a seedable sampler's next
    shuffle, and lists a pass still open in its accelerator's ``gradient_state``;
    lr_find leaves its last pass open."""
    saved = [
        (source, source.iteration, list(source.gradient_state.dataloader_references))
        for source in sources
        if isinstance(getattr(source, "iteration", None), int)
        and hasattr(source, "set_epoch")
        and hasattr(getattr(source, "gradient_state", None), "dataloader_references")
    ]
    try:
        yield
    finally:
        for source, iteration, references in saved:
            source.set_epoch(iteration)
            source.gradient_state.dataloader_references = references


def loader_generators(sources: Iterable[Any]) -> list[torch.Generator]:
    """The ``torch.Generator`` objects the loaders among ``sources`` draw from (each
    once): a DataLoader's ``generator=`` and its sampler's or batch sampler's, which
    shuffling and worker seeds advance."""
    found: dict[int, torch.Generator] = {}
    for source in sources:
        sampler = getattr(source, "sampler", None)
        batch_sampler = getattr(source, "batch_sampler", None)
        for owner in (source, sampler, batch_sampler, getattr(batch_sampler, "sampler", None)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                found.setdefault(id(generator), generator)
    return list(found.values())


@contextlib.contextmanager
def kept_loader_generators(sources: Iterable[Any]) -> Iterator[None]:
    """Put back the state of every generator the loaders among ``sources`` own, once
    lr_find has drawn batches (and so shuffles) from them, and the persistent iterator
    a DataLoader keeps (the one lr_find made is shut down)."""
    saved = [(generator, generator.get_state()) for generator in loader_generators(sources)]
    # a DataLoader with persistent_workers keeps the iterator lr_find made (its workers
    # and their shuffle): the user's next epoch must start from the one it had
    iterators = [(source, source._iterator) for source in sources
                 if isinstance(source, torch.utils.data.DataLoader)]
    try:
        yield
    finally:
        for generator, state in saved:
            generator.set_state(state)
        for loader, iterator in iterators:
            made = loader._iterator
            loader._iterator = iterator
            if made is not None and made is not iterator:
                shutdown = getattr(made, "_shutdown_workers", None)
                if shutdown is not None:
                    shutdown()


class BatchTape:
    """Micro-batches by position in the user's stream, for runs that start at a block.

    Positions count micro-batches drawn from ``source`` (a
    :class:`~lrfind_core.batch_source.BatchSource`). :meth:`seek` moves to a run's
    first position: forward by drawing and dropping batches, or, with ``replay``,
    back to a position drawn before, whose batches were kept (as yielded, on the
    host if the loader yields host tensors) so that every run of a block reads the
    very same batches. Batches before the latest seek are dropped.

    With ``wrap_from`` (and ``replay``), the data is read once: when it runs out at
    position ``L``, positions from ``L`` on wrap around to
    ``wrap_from + (p - wrap_from) % (L - wrap_from)``, so the batches before
    ``wrap_from`` (held out as validation data) are never trained on.
    """

    def __init__(self, source: Any, replay: bool, wrap_from: int | None = None) -> None:
        self.source = source
        self.replay = replay
        self.wrap_from = wrap_from
        self.data_end: int | None = None
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

    def _wrapped(self, position: int) -> int:
        if self.data_end is None or position < self.data_end or self.wrap_from is None:
            return position
        span = self.data_end - self.wrap_from
        return self.wrap_from + (position - self.wrap_from) % span

    def __next__(self) -> Any:
        position = self.position if self.data_end is None else self._wrapped(self.position)
        if self.kept and position in self.kept:
            batch = self.kept[position]
        else:
            try:
                while self.source.produced < position:
                    next(self.source)
                batch = next(self.source)
            except DataExhausted:
                if self.wrap_from is None or self.source.produced <= self.wrap_from:
                    raise
                self.data_end = self.source.produced
                return next(self)
            if self.replay:
                self.kept[position] = batch
        self.position += 1
        return batch

    def __iter__(self) -> BatchTape:
        return self
