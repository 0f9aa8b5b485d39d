"""Training with the result: optax's own one-cycle schedule at the suggested peak LR."""

from __future__ import annotations

from typing import Any

import optax

from lrfind_core.arguments import check_int
from lrfind_core.result import LRFindResult


def one_cycle_schedule(
    result: LRFindResult, total_steps: int, *, method: str | None = None, **kwargs: Any
) -> optax.Schedule:
    """``optax.cosine_onecycle_schedule`` peaking at the result's one-cycle LR.

    ``kwargs`` go to ``cosine_onecycle_schedule`` (``pct_start``, ``div_factor``,
    ``final_div_factor``; its defaults, the same as torch's ``OneCycleLR``,
    otherwise). Use it as ``optax.adam(one_cycle_schedule(result, steps))``.
    """
    check_int("total_steps", total_steps, minimum=1)
    detail = result.suggest(method, for_schedule="one_cycle")
    if detail.lr is None:
        raise ValueError(f"no one-cycle LR to build a schedule from: {detail.reason}")
    return optax.cosine_onecycle_schedule(
        transition_steps=total_steps, peak_value=detail.lr, **kwargs
    )
