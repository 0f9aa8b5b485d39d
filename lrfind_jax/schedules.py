"""Training with the result: optax's own one-cycle schedule at the suggested LR."""

from __future__ import annotations

from typing import Any

import optax

from lrfind_core import LRFindResult


def one_cycle_schedule(
    result: LRFindResult, total_steps: int, *, method: str | None = None, **kwargs: Any
) -> optax.Schedule:
    """``optax.cosine_onecycle_schedule`` peaking at the result's one-cycle LR.

    ``kwargs`` go to ``cosine_onecycle_schedule`` (``pct_start``, ``div_factor``,
    ``final_div_factor``; its defaults, the same as torch's ``OneCycleLR``,
    otherwise). Use it as ``optax.adam(one_cycle_schedule(result, steps))``.
    """
    return optax.cosine_onecycle_schedule(
        **result.one_cycle(total_steps, framework="optax", method=method), **kwargs
    )
