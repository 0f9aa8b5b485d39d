"""Training with the result: optax's own one-cycle schedule at the suggested peak LR."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
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


PROBE_STEPS = 1000


def check_one_cycle_keywords(options: dict[str, Any]) -> None:
    """``options`` build an ``optax.cosine_onecycle_schedule`` that reaches its peak and
    stays finite and >= 0 (probed over :data:`PROBE_STEPS` steps on the host, before
    any run): a TypeError or ValueError that names them otherwise."""
    if not options:
        return
    try:
        schedule = optax.cosine_onecycle_schedule(PROBE_STEPS, 1.0, **options)
        values = np.asarray(jax.vmap(schedule)(jnp.arange(PROBE_STEPS + 1)))
    except TypeError as error:
        raise TypeError(f"one_cycle_options {options!r} are not keywords of "
                        f"optax.cosine_onecycle_schedule: {error}") from error
    except (ValueError, ArithmeticError) as error:
        raise ValueError(f"one_cycle_options {options!r}: optax.cosine_onecycle_schedule "
                         f"refused them: {error}") from error
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.max() < 0.99:
        raise ValueError(
            f"one_cycle_options {options!r} give a schedule that does not rise to its peak "
            "and stay finite and >= 0 (e.g. pct_start must be in (0, 1)); the search's "
            "candidates would not train at their LRs"
        )
