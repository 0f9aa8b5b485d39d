"""Recording raw losses on the device and reading them to the host in batches.

Losses stay on the device as detached 0-d tensors; every ``sync_every`` steps the
queue is read with one transfer (and, under ``torch.distributed``, averaged over
ranks with one ``all_reduce``), and the core's online stop rule is applied to
each value on the host. Every rank sees the same averaged values, so every rank
stops at the same step.
"""

from __future__ import annotations

from typing import Any

import torch

from lrfind_core import FinderConfig, MonitorSettings
from lrfind_core.monitor import monitor_init, monitor_update


def read_losses(pending: list[torch.Tensor], group: Any = None) -> list[float]:
    """The queued losses as floats: one transfer, averaged over ``group``'s ranks if set."""
    if group is None:
        if len(pending) == 1:
            return [pending[0].item()]
        return torch.stack(pending).tolist()
    import torch.distributed as dist

    stacked = torch.stack([loss.float() for loss in pending])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM, group=group)
    return (stacked / dist.get_world_size(group)).tolist()


class LossRecorder:
    """Recorded (lr, raw loss) pairs, read from the device in batches, with the stop rule."""

    def __init__(self, config: FinderConfig, sync_every: int, group: Any = None) -> None:
        self.settings = MonitorSettings(config.beta, config.debias, config.diverge_factor)
        self.monitor = monitor_init()
        self.sync_every = sync_every
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.pending: list[torch.Tensor] = []
        self.pending_lrs: list[float] = []
        self.stopped = False
        self.group = group

    def add(self, lr: float, loss: torch.Tensor) -> int:
        """Queue one point; at a sync point, read the queue. Returns points read."""
        self.pending.append(loss)
        self.pending_lrs.append(lr)
        return self.flush() if len(self.pending) >= self.sync_every else 0

    def flush(self) -> int:
        """Read every queued loss to the host and apply the stop rule to each."""
        if not self.pending:
            return 0
        count = len(self.pending)
        for lr, value in zip(self.pending_lrs, read_losses(self.pending, self.group), strict=True):
            self.lrs.append(lr)
            self.losses.append(value)
            self.monitor, _, code = monitor_update(self.monitor, value, self.settings)
            if code:
                self.stopped = True
                break
        self.pending.clear()
        self.pending_lrs.clear()
        return count
