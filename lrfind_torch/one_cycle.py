"""Training with the result: torch's own ``OneCycleLR`` at the suggested peak LR."""

from __future__ import annotations

from typing import Any

import torch

from lrfind_core.arguments import check_int
from lrfind_core.result import LRFindResult


def one_cycle_scheduler(
    optimizer: torch.optim.Optimizer,
    result: LRFindResult,
    total_steps: int,
    *,
    method: str | None = None,
    **kwargs: Any,
) -> torch.optim.lr_scheduler.OneCycleLR:
    """``torch.optim.lr_scheduler.OneCycleLR`` peaking at the result's one-cycle LR.

    Group 0 peaks at ``result.suggest(method, for_schedule="one_cycle").lr``; every
    other param group keeps its current LR ratio to group 0 (as during the sweep).
    ``kwargs`` go to ``OneCycleLR`` (``pct_start``, ``div_factor``, ...; its
    defaults otherwise).
    """
    check_int("total_steps", total_steps, minimum=1)
    detail = result.suggest(method, for_schedule="one_cycle")
    if detail.lr is None:
        raise ValueError(f"no one-cycle LR to build a schedule from: {detail.reason}")
    bases = [float(group["lr"]) for group in optimizer.param_groups]
    if bases[0] <= 0:
        raise ValueError("the optimizer's first param group has lr <= 0; its ratio is undefined")
    peaks = [detail.lr * base / bases[0] for base in bases]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peaks, total_steps=total_steps, **kwargs
    )


def one_cycle_for_run(
    optimizer: torch.optim.Optimizer,
    peaks: list[float],
    total_steps: int,
    options: dict[str, Any] | None = None,
) -> torch.optim.lr_scheduler.OneCycleLR:
    """torch's ``OneCycleLR`` with its defaults over ``total_steps`` steps, group g
    peaking at ``peaks[g]``: the schedule a search candidate trains under, as a
    training loop with ``OneCycleLR``'s defaults runs it (momentum or beta1 cycled
    too), or with ``options`` (``OneCycleLR`` keywords) where given. An optimizer
    with neither gets ``cycle_momentum=False`` (torch refuses to cycle what is not
    there). Build it after the run's start state is in place: it writes the groups'
    ``lr``, ``initial_lr``, ``max_lr``, ``min_lr``."""
    defaults = optimizer.defaults
    keywords = {"cycle_momentum": "momentum" in defaults or "betas" in defaults,
                **(options or {})}
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peaks, total_steps=total_steps, **keywords
    )


def check_one_cycle_keywords(options: dict[str, Any]) -> None:
    """``options`` are keywords ``OneCycleLR`` accepts (tried on a throwaway optimizer
    with momentum, before any run): a TypeError or ValueError that names them
    otherwise."""
    if not options:
        return
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    try:
        torch.optim.lr_scheduler.OneCycleLR(probe, max_lr=1.0, total_steps=1000, **options)
    except TypeError as error:
        raise TypeError(f"one_cycle_options {options!r} are not OneCycleLR keywords: "
                        f"{error}") from error
    except ValueError as error:
        raise ValueError(f"one_cycle_options {options!r}: OneCycleLR refused them: "
                         f"{error}") from error
