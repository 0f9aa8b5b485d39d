"""What the framework adapters share: the keywords they pass on to ``lr_find``,
recognising a framework's class without importing the framework, the schedule a
suggestion is for, and LRs a scheduler set to 0."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

import torch

from lrfind_core.settings import Settings

PEAK_NOTE = "so the suggestion is a peak LR"
PLATEAU_NOTE = "the suggestion is the LR it holds until a plateau"
DECAY_NOTE = (
    "it decays from its first LR without a warmup: the suggestion is a constant LR, the one "
    "to start from"
)

TORCH_SCHEDULERS: dict[str, tuple[str, str | None]] = {
    "OneCycleLR": ("one_cycle", None),
    "ReduceLROnPlateau": ("constant", PLATEAU_NOTE),
    **dict.fromkeys(
        ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
         "CosineAnnealingWarmRestarts", "PolynomialLR"),
        ("constant", DECAY_NOTE),
    ),
}
"""The class name of one of torch's own schedulers -> (lrfind's ``for_schedule``, why
that is approximate, or None where it is exact); both adapters read them so."""


class SweepKeywords(TypedDict, total=False):
    """The keywords of :func:`lrfind_torch.lr_find` an adapter passes on as they are."""

    start_lr: float
    end_lr: float
    num_steps: int
    budget_steps: int
    plot_path: str | os.PathLike[str]


def check_sweep_keywords(adapter: str, keywords: dict[str, Any]) -> None:
    """A ``TypeError`` naming the allowed keywords for any other (``loss_fn``, ``step_fn``:
    the framework supplies the loss)."""
    unknown = sorted(set(keywords) - set(SweepKeywords.__annotations__))
    if unknown:
        raise TypeError(
            f"{adapter} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}: "
            "the model, optimizer, data and loss come from the framework; it passes on "
            f"{', '.join(SweepKeywords.__annotations__)} to lr_find"
        )


def package_of(value: Any, base: str, packages: tuple[str, ...]) -> str | None:
    """The package (one of ``packages``) whose class named ``base`` ``value`` is an
    instance of, found in its class hierarchy; None if none (nothing is imported)."""
    for cls in type(value).__mro__:
        root = cls.__module__.split(".")[0]
        if cls.__name__ == base and root in packages:
            return root
    return None


def suggestion_schedule(
    for_schedule: str | None, settings: Settings, configured: str
) -> tuple[str, bool]:
    """The ``for_schedule`` of a call and whether it came from the framework's training
    (``configured``): ``for_schedule`` if given, else a non-default one the settings
    chose (the fastai preset's ``"curve"``), else ``configured``."""
    if for_schedule is not None:
        return for_schedule, False
    if settings.for_schedule != Settings.for_schedule:
        return settings.for_schedule, False
    return configured, True


@contextmanager
def usable_lrs(optimizer: torch.optim.Optimizer, notices: list[str]) -> Iterator[None]:
    """Run with each param group's ``initial_lr`` as its LR when a scheduler built with
    the optimizer set group 0's LR to 0 (a warmup from 0): lr_find needs it > 0 for the
    ratios between groups. The LRs are put back afterwards."""
    groups = optimizer.param_groups
    if float(groups[0]["lr"]) > 0 or not all(
        float(group.get("initial_lr", 0)) > 0 for group in groups
    ):
        yield
        return
    saved = [group["lr"] for group in groups]
    for group in groups:
        group["lr"] = group["initial_lr"]
    notices.append(
        "the optimizer's LR was 0 (its scheduler's first step): lr_find used each param "
        "group's initial_lr for the ratios between groups"
    )
    try:
        yield
    finally:
        for group, lr in zip(groups, saved, strict=True):
            group["lr"] = lr


__all__ = [
    "DECAY_NOTE",
    "PEAK_NOTE",
    "PLATEAU_NOTE",
    "TORCH_SCHEDULERS",
    "SweepKeywords",
    "check_sweep_keywords",
    "package_of",
    "suggestion_schedule",
    "usable_lrs",
]
