"""The one host loop of the JAX backend: call the compiled program until every run ends.

Each call advances every live run by up to ``steps_per_call`` updates (a run that
stopped stays frozen); after it the host reads every run's step, stop code,
losses and points in one transfer. The core's float64 stop rule is then applied,
incrementally, to the new points of each run that the float32 in-loop rule
stopped or that has updates left (a run that made every update is judged by the
result): the run stops where the rule fires; a run the in-loop hint stopped
where the float64 rule does not is resumed. With a sequence of batches and one
run, the data comes in chunks, the next stacked while the device runs this one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrfind_core.batch_source import exhausted_reason
from lrfind_core.monitor import monitor_fold, monitor_init
from lrfind_core.plan import RunPlan
from lrfind_core.progress import ProgressBar
from lrfind_jax.data import BatchSequence
from lrfind_jax.sweep import SweepCarry, SweepInputs

logger = logging.getLogger("lrfind_jax")


class ChunkFeed:
    """The data of one run drawn from a sequence of batches a chunk at a time.

    ``chunk_end`` is the first update the current chunk does not cover; the next
    chunk is stacked (:meth:`prefetch`) while the device runs this one.
    """

    def __init__(self, sequence: BatchSequence, chunk_steps: int, k: int, total: int) -> None:
        self.sequence, self.chunk_steps, self.k, self.total = sequence, chunk_steps, k, total
        self.chunk_end = 0
        self.prefetched: tuple[Any, int] | None = None

    def first(self) -> tuple[Any, int]:
        """The first chunk (its data and real micro-batches), before compiling."""
        self.prefetched = self.sequence.next_chunk(min(self.chunk_steps, self.total) * self.k)
        return self.prefetched

    def advance(self, step: int) -> tuple[Any, int] | None:
        """The chunk that starts at update ``step``: ``(data, data_offset)``, or None
        when the data ran out before one more update."""
        wanted = min(self.chunk_steps, self.total - step) * self.k
        data, count = self.prefetched or self.sequence.next_chunk(wanted)
        self.prefetched = None
        if count < self.k:
            return None
        self.chunk_end = step + count // self.k
        return data, step * self.k

    def prefetch(self) -> None:
        """Stack the next chunk now, while the device works on this one."""
        if self.prefetched is None and self.chunk_end < self.total:
            wanted = min(self.chunk_steps, self.total - self.chunk_end) * self.k
            self.prefetched = self.sequence.next_chunk(wanted)


@dataclass
class Drive:
    """What the host loop saw of R runs.

    Attributes:
      losses: (R, n) raw training losses (loss dtype); NaN where not run.
      points: (R, P) validation points, or None.
      steps: (R,) updates each run made.
      stops: (R,) the point where the host's float64 rule fired, -1 where it did not.
      limits: (R,) updates each run could make (fewer where the data ran out).
      calls, resumes: program calls, and runs resumed after an unconfirmed in-loop stop.
    """

    losses: np.ndarray
    points: np.ndarray | None
    steps: np.ndarray
    stops: np.ndarray
    limits: np.ndarray
    calls: int = 0
    resumes: int = 0
    run_time_s: float = 0.0

    def made(self, plan: RunPlan) -> np.ndarray:
        """Points kept per run: up to and including the host stop, else every one made."""
        recorded = self.steps if plan.val_every is None else self.steps // plan.val_every
        return np.where(self.stops >= 0, self.stops + 1, recorded)


def drive(
    run: Callable[[SweepCarry, SweepInputs], SweepCarry],
    carry: SweepCarry,
    inputs: SweepInputs,
    plan: RunPlan,
    steps_per_call: int,
    limits: np.ndarray,
    feed: ChunkFeed | None,
    bar: ProgressBar,
) -> Drive:
    """Call ``run`` until every run has stopped (host rule) or reached its limit."""
    count = plan.num_runs
    seen = Drive(np.full((count, plan.num_steps), np.nan), None, np.zeros(count, np.int64),
                 np.full(count, -1), np.asarray(limits, np.int64).copy())
    monitors = [monitor_init() for _ in range(count)]
    checked = np.zeros(count, np.int64)
    started = time.perf_counter()
    bar.grow(int(seen.limits.sum()))
    try:
        while np.any(live := (seen.stops < 0) & (seen.steps < seen.limits)):
            if feed is not None and int(seen.steps[0]) >= feed.chunk_end:
                window = feed.advance(int(seen.steps[0]))
                if window is None:
                    seen.limits[0] = seen.steps[0]
                    break
                inputs = inputs._replace(data=window[0],
                                         data_offset=np.full(1, window[1], np.int32))
            ends = np.minimum(seen.steps + steps_per_call, seen.limits)
            if feed is not None:
                ends = np.minimum(ends, feed.chunk_end)
            end = np.where(live, ends, seen.steps).astype(np.int32)
            carry = run(carry, inputs._replace(end=end))
            if feed is not None:
                feed.prefetch()
            carry = _read(carry, seen, plan, monitors, checked, bar)
    finally:
        seen.run_time_s = time.perf_counter() - started
    return seen


def _read(
    carry: SweepCarry,
    seen: Drive,
    plan: RunPlan,
    monitors: list[Any],
    checked: np.ndarray,
    bar: Any,
) -> SweepCarry:
    """One transfer of every run's progress; the float64 rule on the new points."""
    steps, codes, seen.losses, points, made = jax.device_get(
        (carry.step, carry.code, carry.losses, carry.points, carry.points_made)
    )
    seen.calls += 1
    validating = plan.val_every is not None
    if validating:
        seen.points = points
    curve, recorded = (points, made) if validating else (seen.losses, steps)
    check = (seen.stops < 0) & ((codes != 0) | (steps < plan.num_steps))
    for r in np.flatnonzero(check):
        first = int(checked[r])
        values = curve[r, first : recorded[r]].tolist()
        monitors[r], stop_offset = monitor_fold(monitors[r], values, plan.stop)
        checked[r] = recorded[r]
        if stop_offset is not None:
            seen.stops[r] = first + stop_offset
    bar.update(int(np.sum(steps - seen.steps)))
    seen.steps = steps.astype(np.int64)
    resume = (codes != 0) & (seen.stops < 0) & (seen.steps < seen.limits)
    if np.any(resume):  # the float32 hint fired where the float64 rule did not: go on
        seen.resumes += int(resume.sum())
        logger.debug("lr_find: in-loop stop of run(s) %s not confirmed; resuming",
                     np.flatnonzero(resume).tolist())
        carry = carry._replace(code=jnp.asarray(np.where(resume, 0, codes), jnp.int32))
    return carry


def end_reasons(seen: Drive, plan: RunPlan) -> list[str | None]:
    """Per run, why it ended before its planned updates (the data ran out), or None."""
    short = (seen.stops < 0) & (seen.steps < plan.num_steps) & (seen.steps >= seen.limits)
    return [exhausted_reason(int(steps)) if cut else None
            for steps, cut in zip(seen.steps, short, strict=True)]


__all__ = ["ChunkFeed", "Drive", "drive", "end_reasons"]
