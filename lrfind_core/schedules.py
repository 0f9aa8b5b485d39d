"""Learning-rate schedules for the range test.

Each schedule maps a step index ``i`` in ``0..num_steps-1`` to a learning rate.
They return float64 arrays so both backends see the same numbers.
"""

from __future__ import annotations

import numpy as np

from lrfind_core.arguments import check_choice, check_int, check_positive_float

SCHEDULES = ("exponential", "linear")


def _check_range(start_lr: float, end_lr: float, num_steps: int) -> tuple[float, float, int]:
    start_lr = check_positive_float("start_lr", start_lr)
    end_lr = check_positive_float("end_lr", end_lr)
    num_steps = check_int("num_steps", num_steps, minimum=2)
    if start_lr >= end_lr:
        raise ValueError(f"start_lr must be < end_lr, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    return start_lr, end_lr, num_steps


def exponential_schedule(
    start_lr: float, end_lr: float, num_steps: int, *, include_end: bool = True
) -> np.ndarray:
    """Geometric sweep: ``lr_i = start_lr * (end_lr / start_lr) ** (i / d)``.

    ``d = num_steps - 1`` when ``include_end`` (the last LR is exactly ``end_lr``,
    torch-lr-finder's and lrfind's convention), else ``d = num_steps`` (fastai's
    convention: the sweep stops one step short of ``end_lr``). LRs are in the
    optimizer's units; the result is float64 with ``result[0] == start_lr``.
    """
    start_lr, end_lr, num_steps = _check_range(start_lr, end_lr, num_steps)
    denominator = num_steps - 1 if include_end else num_steps
    fractions = np.arange(num_steps, dtype=np.float64) / denominator
    lrs = start_lr * (end_lr / start_lr) ** fractions
    lrs[0] = start_lr
    if include_end:
        lrs[-1] = end_lr
    return lrs


def linear_schedule(
    start_lr: float, end_lr: float, num_steps: int, *, include_end: bool = True
) -> np.ndarray:
    """Arithmetic sweep: ``lr_i = start_lr + (i / d) * (end_lr - start_lr)``.

    ``d`` is as in :func:`exponential_schedule`. Returns float64 with exact endpoints.
    """
    start_lr, end_lr, num_steps = _check_range(start_lr, end_lr, num_steps)
    denominator = num_steps - 1 if include_end else num_steps
    fractions = np.arange(num_steps, dtype=np.float64) / denominator
    lrs = start_lr + fractions * (end_lr - start_lr)
    lrs[0] = start_lr
    if include_end:
        lrs[-1] = end_lr
    return lrs


def make_schedule(
    name: str, start_lr: float, end_lr: float, num_steps: int, *, include_end: bool = True
) -> np.ndarray:
    """Build the schedule called ``name`` (one of :data:`SCHEDULES`)."""
    check_choice("schedule", name, SCHEDULES)
    build = exponential_schedule if name == "exponential" else linear_schedule
    return build(start_lr, end_lr, num_steps, include_end=include_end)


def group_learning_rates(schedule: np.ndarray, base_lrs: list[float]) -> np.ndarray:
    """Per step and param group, the LR to apply: ``float32(schedule * base / base_0)``.

    Each group keeps its ratio to group 0, whose LRs are the schedule. The bases
    are taken at float32 precision (as an optimizer state stores them) and the
    result is rounded to float32, the precision update kernels use, so both
    backends apply the very same LRs. Returns float64, shape (steps, groups).
    """
    bases = np.asarray(base_lrs, dtype=np.float32).astype(np.float64)
    if bases.ndim != 1 or len(bases) == 0 or not np.all(np.isfinite(bases)) or bases[0] <= 0:
        raise ValueError(f"base_lrs must be finite with base_lrs[0] > 0, got {list(base_lrs)}")
    ratios = bases / bases[0]
    table = np.asarray(schedule, dtype=np.float64)[:, None] * ratios[None, :]
    return table.astype(np.float32).astype(np.float64)
