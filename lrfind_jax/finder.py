"""``lr_find`` for JAX/optax: check the JAX objects, then run the shared shell."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

import jax

from lrfind_core.arguments import check_callable
from lrfind_core.notices import warn_user
from lrfind_core.result import LRFindResult
from lrfind_core.settings import Settings
from lrfind_core.shell import call_settings, run_finder
from lrfind_jax.backend import JaxBackend, JaxModel, PlainValidationLoss
from lrfind_jax.checks import check_opt_state, check_params, check_rng
from lrfind_jax.injection import (
    check_multi_steps_placement,
    check_optimizer_kind,
    find_lr_groups,
    initial_opt_state,
    low_precision_hyperparams,
    prepare_optimizer,
)
from lrfind_jax.options import JaxOptions, checked_options

NEW_ORDER = "lr_find(params, optimizer, train_data, loss_fn)"


def lr_find(
    params: Any,
    optimizer: Any,
    train_data: Any,
    loss_fn: Callable[..., Any] | None = None,
    *,
    model_state: Any = None,
    rng: Any = None,
    mode: str | None = None,
    for_schedule: str | None = None,
    start_lr: float | None = None,
    end_lr: float | None = None,
    num_steps: int | None = None,
    val_data: Any = None,
    training_steps: int | None = None,
    budget_steps: int | None = None,
    settings: Settings | str | None = None,
    options: JaxOptions | None = None,
    plot_path: str | os.PathLike[str] | None = None,
) -> LRFindResult:
    """Find the LR for a JAX model: every run is one compiled program; your arrays
    (params, model state, optimizer state, data) are never modified or donated.

    Args:
      params: the parameters to train (a pytree of arrays).
      optimizer: an optax ``GradientTransformation`` whose learning rate is injected,
        ``optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)`` (also inside
        ``optax.chain``, ``optax.multi_transform``, or an outermost
        ``optax.MultiSteps``), or a factory ``lr -> GradientTransformation`` such as
        ``optax.adam``, which lrfind injects itself. With several injected LRs the
        first in ``jax.tree_util`` order follows the plan and every other keeps its
        ratio to it. Only the ``learning_rate`` hyperparameter is changed, in its
        stored dtype (set as float32 values, like the torch backend).
      train_data: stacked data, a tuple, dict or array whose leaves have the step
        as their leading axis (fastest; best already on the device), or a sequence
        of batches: a list, iterator, generator or DataLoader (stacked into chunks
        on the host). Data shorter than needed is cycled with a warning; a one-shot
        iterator that runs out ends the run.
      loss_fn: ``loss_fn(params, batch) -> scalar loss``, as for ``jax.grad``; with
        ``model_state=`` and/or ``rng=``: ``loss_fn(params, model_state, batch, key)
        -> (loss, new_model_state)``, where ``key`` is ``jax.random.fold_in(rng, m)``
        for micro-batch ``m`` (None without ``rng``).
      model_state: non-trained model state (BatchNorm statistics...) passed to and
        returned by ``loss_fn``.
      rng: a PRNG key (``jax.random.key(0)``) for the per-step keys.
      mode, for_schedule, start_lr, end_lr, num_steps, val_data, training_steps,
        budget_steps, settings, plot_path: as in ``lrfind_torch.lr_find`` (the same
        names and meanings in both backends). ``val_data`` needs an eval-mode
        loss for the stateful form: ``options.val_loss_fn``.
      options: :class:`~lrfind_jax.options.JaxOptions`: a starting optimizer state,
        the validation loss, progress bar, chunking and execution.

    Returns:
      An :class:`~lrfind_core.result.LRFindResult`; ``result.lrs`` are the float64
      plan values of the reference group.

    A second call with the same functions, optimizer object, shapes and mode reuses
    the compiled program; the LR range is data, not part of the program.
    """
    _check_model_kind(params)
    _check_argument_order(params, loss_fn)
    check_callable("loss_fn", loss_fn)
    options = checked_options(options)
    if not options.train_mode:
        raise ValueError("train_mode=False applies to nnx modules (lr_find_nnx); a loss_fn "
                         "decides its own mode")
    chosen = call_settings(
        settings, mode=mode, for_schedule=for_schedule, start_lr=start_lr, end_lr=end_lr,
        num_steps=num_steps, training_steps=training_steps, budget_steps=budget_steps,
    )
    validating = val_data is not None or chosen.mode == "search"  # a search always validates
    model, chosen = _prepare(loss_fn, params, optimizer, model_state, rng, options, chosen,
                             validating)
    backend = JaxBackend(model, train_data, val_data, options)
    return run_finder(backend, chosen, has_validation=val_data is not None, plot_path=plot_path)


def _check_model_kind(params: Any) -> None:
    """``params`` is not a model object that an adapter takes: an nnx module, a Flax
    ``TrainState``, or a whole equinox module (one with leaves other than float
    arrays; a partition such as ``eqx.filter(model, eqx.is_inexact_array)`` is
    plain params). Their libraries are looked up among the loaded modules, never
    imported here."""
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(params, nnx.Module):
        raise TypeError("params is a Flax nnx module: use lrfind_jax.lr_find_nnx(model, "
                        "optimizer, train_data, loss_fn)")
    train_state = sys.modules.get("flax.training.train_state")
    if train_state is not None and isinstance(params, train_state.TrainState):
        raise TypeError("params is a Flax TrainState: use lrfind_jax.lr_find_train_state(state, "
                        "train_data, loss_fn) with loss_fn(apply_fn, params, batch)")
    equinox = sys.modules.get("equinox")
    if equinox is not None and isinstance(params, equinox.Module) and not all(
        equinox.is_inexact_array(leaf) for leaf in jax.tree_util.tree_leaves(params)
    ):
        raise TypeError(
            "params is an equinox Module with fields that are not float arrays: use "
            "lrfind_jax.lr_find_equinox(model, optimizer, train_data, loss_fn), which trains "
            "its floating-point arrays (eqx.partition(model, eqx.is_inexact_array)) and keeps "
            "the rest as it is"
        )


def _check_argument_order(params: Any, loss_fn: Any) -> None:
    """A function first (the order before 0.2: ``loss_fn, params, ...``)."""
    has_arrays = any(hasattr(leaf, "shape") for leaf in jax.tree_util.tree_leaves(params))
    if callable(params) and not has_arrays:
        raise TypeError(
            "the first argument is a function, but lr_find takes the parameters first and "
            f"the loss fourth: {NEW_ORDER} (or loss_fn=...)"
        )
    if loss_fn is None:
        raise TypeError(f"loss_fn is missing: {NEW_ORDER}")


def _prepare(
    loss_fn: Callable[..., Any],
    params: Any,
    optimizer: Any,
    model_state: Any,
    rng: Any,
    options: JaxOptions,
    settings: Settings,
    validating: bool,
) -> tuple[JaxModel, Settings]:
    """The checked model and optimizer, and the settings with the effective accumulation."""
    rng = check_rng(rng)
    check_params(params)
    accumulation = None if settings.accumulation_steps == 1 else settings.accumulation_steps
    prepared = prepare_optimizer(optimizer, accumulation)
    opt_state = options.opt_state
    if opt_state is None:
        opt_state = initial_opt_state(prepared.transformation, params)
    else:
        check_opt_state(prepared.transformation, params, opt_state)
    check_multi_steps_placement(opt_state, prepared)
    check_optimizer_kind(opt_state)
    _warn_low_precision(opt_state)
    stateful = model_state is not None or rng is not None
    val_loss_fn = options.val_loss_fn
    if validating and val_loss_fn is None:
        if stateful:
            raise ValueError(
                "validation (val_data, or mode='search') with model_state= or rng= needs "
                "options=JaxOptions(val_loss_fn=...): val_loss_fn(params, model_state, batch) "
                "-> the loss in eval mode (lr_find_train_state: val_loss_fn(apply_fn, params, "
                "model_state, batch))"
            )
        val_loss_fn = loss_fn
    if val_loss_fn is not None and not stateful:
        val_loss_fn = PlainValidationLoss(val_loss_fn)
    model = JaxModel(
        loss_fn=loss_fn, stateful=stateful, params=params, model_state=model_state, rng=rng,
        transformation=prepared.transformation, opt_state=opt_state,
        # lrfind's own state may be donated to the program, unless a search's later plans
        # start from it again
        opt_state_is_new=options.opt_state is None and settings.mode != "search",
        groups=find_lr_groups(opt_state),
        val_loss_fn=val_loss_fn,
    )
    if prepared.accumulation_steps != settings.accumulation_steps:
        settings = dataclasses.replace(settings, accumulation_steps=prepared.accumulation_steps)
    return model, settings


def _warn_low_precision(opt_state: Any) -> None:
    low_precision = low_precision_hyperparams(opt_state)
    if low_precision:
        warn_user([
            "the optimizer keeps hyperparameters in low precision ("
            + "; ".join(low_precision)
            + "): optax.inject_hyperparams stores them in the params' dtype, where Adam's "
            "b2=0.999 rounds to 1.0 and the first update divides by zero. Build it with "
            "optax.inject_hyperparams(..., hyperparam_dtype=jnp.float32), or pass the "
            "factory (e.g. optax.adam), which lrfind injects with float32 hyperparameters"
        ])


__all__ = ["lr_find"]
