"""The JAX backend's own options, in one typed object: ``lr_find(..., options=JaxOptions(...))``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lrfind_core.arguments import (
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_one_cycle_options,
)
from lrfind_jax.one_cycle import check_one_cycle_keywords

EXECUTIONS = ("auto", "while_loop", "per_step")
DEFAULT_CHUNK_SIZE = 20
"""Updates per compiled call in chunked mode (progress bar or streamed data)."""


@dataclass(frozen=True)
class JaxOptions:
    """How the JAX backend compiles and drives its runs.

    Attributes:
      opt_state: start from this optimizer state instead of ``optimizer.init(params)``.
      val_loss_fn: the eval-mode loss of a validation batch, for ``val_data``:
        ``val_loss_fn(params, batch)``, or with ``model_state=``
        ``val_loss_fn(params, model_state, batch)`` (required then: lrfind cannot
        switch your stateful loss to eval mode); ``lr_find_linen``:
        ``val_loss_fn(apply, batch)``. Default for a plain ``loss_fn(params,
        batch)``: ``loss_fn`` itself; for nnx: ``loss_fn`` on the module in eval mode.
      train_mode: nnx only: run the module as after ``model.train()`` (True, default)
        or as it is configured (False).
      one_cycle_options: keywords for ``optax.cosine_onecycle_schedule`` when search
        candidates train under a one-cycle schedule (``pct_start``, ``div_factor``,
        ``final_div_factor``): pass your training's. ``peak_value`` and
        ``transition_steps`` are the search's.
      progress: show a tqdm progress bar, updated once per chunk; False runs
        stacked data in a single call (the fastest).
      chunk_size: updates per compiled call in chunked mode (and per transferred
        chunk of a sequence of batches).
      execution: ``"while_loop"`` (all updates of a call in one compiled
        ``lax.while_loop``), ``"per_step"`` (one compiled update dispatched per
        step, asynchronously), or ``"auto"`` (default): ``per_step`` for models
        with convolutions on the CPU, where XLA compiles convolutions inside a
        loop into slow layouts (jax-ml/jax#12868), else ``while_loop``. Results
        are the same.
    """

    opt_state: Any = None
    val_loss_fn: Callable[..., Any] | None = None
    train_mode: bool = True
    one_cycle_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    progress: bool = True
    chunk_size: int = DEFAULT_CHUNK_SIZE
    execution: str = "auto"

    def __post_init__(self) -> None:
        if self.val_loss_fn is not None:
            check_callable("val_loss_fn", self.val_loss_fn)
        check_bool("train_mode", self.train_mode)
        check_one_cycle_options(self.one_cycle_options, ("peak_value", "transition_steps"))
        check_one_cycle_keywords(self.one_cycle_options)
        check_bool("progress", self.progress)
        check_int("chunk_size", self.chunk_size, minimum=1)
        check_choice("execution", self.execution, EXECUTIONS)


def checked_options(options: Any) -> JaxOptions:
    """``options``, or the defaults for None; a TypeError for anything else."""
    if options is None:
        return JaxOptions()
    if not isinstance(options, JaxOptions):
        raise TypeError(f"options must be lrfind_jax.JaxOptions, got {type(options).__name__}")
    return options


__all__ = ["DEFAULT_CHUNK_SIZE", "EXECUTIONS", "JaxOptions", "checked_options"]
