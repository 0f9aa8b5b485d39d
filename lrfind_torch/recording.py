"""Recording losses on the device and reading them to the host in batches.

Every optimizer step queues its detached 0-d training loss, its GradScaler
found-inf flag (when a scaler is used) and, when it adds a point to the curve, the
point's loss (the training loss, or a validation loss). Every ``sync_every`` steps
the queue is read with one transfer (under ``torch.distributed``, averaged over
ranks with one ``all_reduce``), and the host applies, step by step, the core's
online stop rule and the GradScaler skip rule. Every rank sees the same averaged
values, so every rank stops at the same step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lrfind_core.monitor import MonitorSettings, host_update, monitor_init

MAX_CONSECUTIVE_SKIPS = 20
"""A GradScaler that skips this many updates in a row ends the sweep."""


def read_values(values: list[torch.Tensor], group: Any = None) -> list[float]:
    """0-d tensors as floats: one transfer, averaged over ``group``'s ranks if set."""
    if group is None:
        if len(values) == 1:
            return [values[0].item()]
        return torch.stack([value.float() for value in values]).tolist()
    import torch.distributed as dist

    stacked = torch.stack([value.float() for value in values])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM, group=group)
    return (stacked / dist.get_world_size(group)).tolist()


def read_steps(
    losses: list[torch.Tensor],
    found_infs: list[torch.Tensor] | None,
    group: Any = None,
    extra: Sequence[torch.Tensor] = (),
) -> tuple[list[float], list[bool] | None, list[float]]:
    """Some steps' losses, "update skipped" flags (None without a scaler) and
    ``extra`` values (validation losses), read with one transfer."""
    flags = found_infs or []
    values = read_values([*losses, *flags, *extra], group)
    count = len(losses)
    flag_values = values[count : count + len(flags)]
    skipped = None if found_infs is None else [flag > 0 for flag in flag_values]
    return values[:count], skipped, values[count + len(flags) :]


@dataclass
class QueuedStep:
    """One optimizer step whose values are still on the device."""

    index: int
    lr: float
    loss: torch.Tensor
    found_inf: torch.Tensor | None
    point: torch.Tensor | None
    """The loss this step adds to the curve (``loss`` itself, a validation loss) or None."""


def _has_own_point(step: QueuedStep) -> bool:
    """Whether the step's point is a value of its own (a validation loss) to read."""
    return step.point is not None and step.point is not step.loss


class LossRecorder:
    """The curve's (lr, loss) points, read from the device in batches, with the stop rules.

    ``losses`` are the curve's points (training or validation losses), ``step_losses``
    every step's training loss as far as the steps were read.

    A step whose update the GradScaler skipped keeps its LR and its point (the loss
    was measured before the skipped update) and is listed in ``skipped``. A run of
    ``MAX_CONSECUTIVE_SKIPS`` skipped updates, or a sweep in which every update was
    skipped, ends the curve where the run began: past it the model did not train.
    """

    def __init__(self, stop_rule: MonitorSettings, sync_every: int, group: Any = None) -> None:
        self.stop_rule = stop_rule
        self.monitor = monitor_init()
        self.sync_every = sync_every
        self.group = group
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.step_losses: list[float] = []
        self.skipped: list[dict[str, Any]] = []
        self.queue: list[QueuedStep] = []
        self.stopped = False
        self.end_reason: str | None = None
        self.steps_read = 0
        self.consecutive_skips = 0
        self.points_before_skips = 0

    def add(
        self,
        index: int,
        lr: float,
        loss: torch.Tensor,
        found_inf: torch.Tensor | None = None,
        point: torch.Tensor | None = None,
    ) -> int:
        """Queue step ``index``; at a sync point, read the queue. Returns steps read.

        Read at once, without the queue, where each step is its own sync point and
        nothing but the loss is read (the CPU default: the fewer Python steps per
        update, the less the sweep costs over the bare loop)."""
        if (self.sync_every == 1 and self.group is None and found_inf is None
                and (point is None or point is loss)):
            value = loss.item()
            self._take(index, lr, value, False, None if point is None else value)
            return 1
        self.queue.append(QueuedStep(index, lr, loss, found_inf, point))
        return self.flush() if len(self.queue) >= self.sync_every else 0

    def flush(self) -> int:
        """Read every queued step to the host and apply the stop rules to each, in order."""
        if not self.queue:
            return 0
        queue, self.queue = self.queue, []
        has_flags = queue[0].found_inf is not None
        losses, flags, own_values = read_steps(
            [step.loss for step in queue],
            [step.found_inf for step in queue] if has_flags else None,
            self.group,
            [step.point for step in queue if _has_own_point(step)],
        )
        next_own_value = iter(own_values).__next__
        for position, step in enumerate(queue):
            loss = losses[position]
            value = None
            if step.point is not None:
                value = loss if step.point is step.loss else next_own_value()
            if self._take(step.index, step.lr, loss, flags is not None and flags[position],
                          value):
                break
        return len(queue)

    def _take(self, index: int, lr: float, loss: float, skipped: bool,
              point: float | None) -> bool:
        """One read step: its loss, the skip rule, its point (if any) and the stop rule.
        True when the curve ends here."""
        self.steps_read += 1
        self.step_losses.append(loss)
        if skipped and self._note_skip(index, lr, loss):
            return True
        if not skipped:
            self.consecutive_skips = 0
        if point is None:
            return False
        self.lrs.append(lr)
        self.losses.append(point)
        self.monitor, code = host_update(self.monitor, point, self.stop_rule)
        if code:
            self.stopped = True
        return self.stopped

    def _note_skip(self, index: int, lr: float, loss: float) -> bool:
        """Count a skipped update (step ``index``); True when a run of them ends the sweep."""
        if self.consecutive_skips == 0:
            self.points_before_skips = len(self.losses)
        self.consecutive_skips += 1
        self.skipped.append({"step": index, "lr": lr, "loss": loss})
        if self.consecutive_skips < MAX_CONSECUTIVE_SKIPS:
            return False
        self._cut_skip_run(f"GradScaler skipped {MAX_CONSECUTIVE_SKIPS} updates in a row")
        return True

    def finish(self) -> None:
        """Read what is queued; a sweep whose every update was skipped keeps no point."""
        if not self.stopped:
            self.flush()
        if not self.stopped and self.steps_read and self.consecutive_skips == self.steps_read:
            self._cut_skip_run(
                f"GradScaler skipped every update ({self.steps_read} of {self.steps_read}): "
                "inf/NaN gradients at every scale it tried"
            )

    def _cut_skip_run(self, reason: str) -> None:
        del self.lrs[self.points_before_skips :]
        del self.losses[self.points_before_skips :]
        self.stopped = True
        self.end_reason = reason
