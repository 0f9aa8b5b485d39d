"""Training with the result: torch's own one-cycle schedule at the suggested LR."""

from __future__ import annotations

from typing import Any

import torch

from lrfind_core import LRFindResult


def one_cycle_scheduler(
    optimizer: torch.optim.Optimizer,
    result: LRFindResult,
    total_steps: int,
    *,
    method: str | None = None,
    **kwargs: Any,
) -> torch.optim.lr_scheduler.OneCycleLR:
    """``torch.optim.lr_scheduler.OneCycleLR`` peaking at the result's one-cycle LR.

    Group 0 peaks at ``result.one_cycle(total_steps)["max_lr"]``; every other param
    group keeps its current LR ratio to group 0 (as during the sweep). ``kwargs``
    go to ``OneCycleLR`` (``pct_start``, ``div_factor``, ...; its defaults otherwise).
    """
    settings = result.one_cycle(total_steps, framework="torch", method=method)
    bases = [float(group["lr"]) for group in optimizer.param_groups]
    if bases[0] <= 0:
        raise ValueError("the optimizer's first param group has lr <= 0; its ratio is undefined")
    peaks = [settings["max_lr"] * base / bases[0] for base in bases]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peaks, total_steps=settings["total_steps"], **kwargs
    )
