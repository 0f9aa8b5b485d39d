"""Flax models in :func:`lrfind_jax.lr_find`: nnx modules and linen ``apply``.

Both adapters turn the model into the generic stateful form
``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)``: the
trained parameters are the ``params`` pytree, everything else the model updates
while training (BatchNorm statistics, nnx RNG counters) is ``model_state``. The
user's module or variables are never changed.

Flax is imported only when an adapter is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax

from lrfind_core import LRFindResult
from lrfind_jax.checks import check_callable
from lrfind_jax.finder import lr_find


@dataclass(frozen=True)
class NnxLoss:
    """``loss_fn(module, batch)`` as a stateful loss over ``(params, rest)`` states.

    Frozen and hashable (graphdef, function, filter), so a second sweep of the
    same model reuses the compiled program.
    """

    graphdef: Any
    loss_fn: Callable[[Any, Any], Any]
    wrt: Any

    def __call__(self, params: Any, rest: Any, batch: Any, key: Any) -> tuple[Any, Any]:
        from flax import nnx

        # copy=True: fresh Variables owned by this trace, so the module may update them.
        module = nnx.merge(self.graphdef, params, rest, copy=True)
        loss = self.loss_fn(module, batch)
        _, _, new_rest = nnx.split(module, self.wrt, ...)
        return loss, new_rest


def _training_view(model: Any) -> Any:
    """``model`` with ``deterministic=False`` and ``use_running_average=False`` (what
    ``model.train()`` sets), without changing ``model`` itself."""
    from flax import nnx

    attributes = {"deterministic": False, "use_running_average": False}
    if hasattr(nnx, "view"):
        return nnx.view(model, raise_if_not_found=False, **attributes)
    copy = nnx.clone(model)  # older flax: no views, train a clone's settings instead
    copy.set_attributes(raise_if_not_found=False, **attributes)
    return copy


def lr_find_nnx(
    model: Any,
    optimizer: Any,
    train_data: Any,
    loss_fn: Callable[[Any, Any], Any],
    *,
    wrt: Any = None,
    train_mode: bool = True,
    **options: Any,
) -> LRFindResult:
    """The LR range test for a Flax nnx module; the module is left untouched.

    The module is split into the trained state (``nnx.Param`` by default) and the
    rest (``BatchStat``, RNG counters, other variables). Inside the compiled
    sweep, every micro-batch merges a fresh module from the two, calls
    ``loss_fn(module, batch) -> loss`` and splits it again, so BatchNorm
    statistics update and dropout RNG streams advance step by step, as in an nnx
    training loop; none of it is written back to ``model``.

    Args:
      model: an ``nnx.Module``.
      optimizer: an optax transformation with an injected learning rate, or a
        factory ``lr -> GradientTransformation`` (see :func:`lrfind_jax.lr_find`).
        Pass the optax transformation, not an ``nnx.Optimizer``.
      train_data: stacked arrays or a sequence of batches (see :func:`lr_find`).
      loss_fn: ``loss_fn(module, batch) -> scalar loss``.
      wrt: the nnx filter of what is trained (default ``nnx.Param``).
      train_mode: run the sweep as after ``model.train()`` (``deterministic=False``
        and ``use_running_average=False`` wherever a submodule has them), without
        changing ``model``; False runs the module as it is configured.
      **options: keyword options of :func:`lrfind_jax.lr_find` (``num_steps``,
        ``start_lr``, ``accumulation_steps``, ``progress``, ``num_sweeps``,
        ``mode``, ``steps_per_lr``, ``average_last``...). With ``num_sweeps=K``,
        sweep k > 0 folds k into the module's RNG keys (its own dropout masks);
        in independent mode every run of a curve sees the same masks.

    Returns:
      An :class:`lrfind_core.LRFindResult`.
    """
    from flax import nnx

    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax nnx.Module, got {type(model).__name__}")
    if isinstance(optimizer, nnx.Optimizer):
        raise TypeError(
            "pass the optax transformation (the tx of nnx.Optimizer(model, tx)), not the "
            "nnx.Optimizer: lr_find builds and discards its own optimizer state"
        )
    check_callable("loss_fn", loss_fn)
    for name in ("model_state", "rng"):
        if name in options:
            raise TypeError(f"lr_find_nnx takes no {name}=: the module's own state is used")
    wrt = nnx.Param if wrt is None else wrt
    node = _training_view(model) if train_mode else model
    graphdef, params, rest = nnx.split(node, wrt, ...)
    return lr_find(NnxLoss(graphdef, loss_fn, wrt), params, optimizer, train_data,
                   model_state=rest, **options)


@dataclass(frozen=True)
class LinenLoss:
    """``loss_fn(apply, batch)`` as a stateful loss over ``(params, collections)``.

    ``apply(*args, **kwargs)`` calls ``apply_fn({"params": params, **collections},
    *args, mutable=..., rngs=..., **kwargs)`` and keeps the updated collections.
    """

    apply_fn: Callable[..., Any]
    loss_fn: Callable[[Any, Any], Any]
    mutable: tuple[str, ...]
    rng_streams: tuple[str, ...]

    def __call__(self, params: Any, state: Any, batch: Any, key: Any) -> tuple[Any, Any]:
        from flax.core import unfreeze

        collections = dict(state)
        calls = [0]

        def apply(*args: Any, **kwargs: Any) -> Any:
            options: dict[str, Any] = {}
            if key is not None:
                call_key = jax.random.fold_in(key, calls[0])
                options["rngs"] = {
                    name: jax.random.fold_in(call_key, index)
                    for index, name in enumerate(self.rng_streams)
                }
            calls[0] += 1
            options.update(kwargs)
            variables = {"params": params, **collections}
            if not self.mutable:
                return self.apply_fn(variables, *args, **options)
            out, updates = self.apply_fn(variables, *args, mutable=list(self.mutable), **options)
            for name, value in unfreeze(updates).items():
                if name in collections:
                    collections[name] = value
            return out

        loss = self.loss_fn(apply, batch)
        return loss, collections


def lr_find_linen(
    apply_fn: Any,
    variables: Any,
    optimizer: Any,
    train_data: Any,
    loss_fn: Callable[[Callable[..., Any], Any], Any],
    *,
    rng: Any = None,
    mutable: Sequence[str] = ("batch_stats",),
    rng_streams: Sequence[str] = ("dropout",),
    **options: Any,
) -> LRFindResult:
    """The LR range test for a Flax linen model; ``variables`` are left untouched.

    ``variables["params"]`` is trained; every other collection (e.g.
    ``batch_stats``) is model state, updated step by step inside the sweep where
    it is listed in ``mutable``.

    Args:
      apply_fn: ``module.apply`` (or the module itself).
      variables: the model's variables, ``{"params": ..., "batch_stats": ...}``.
      optimizer: an optax transformation with an injected learning rate, or a
        factory ``lr -> GradientTransformation`` (see :func:`lrfind_jax.lr_find`).
      train_data: stacked arrays or a sequence of batches (see :func:`lr_find`).
      loss_fn: ``loss_fn(apply, batch) -> scalar loss``. ``apply(*args, **kwargs)``
        runs ``apply_fn(variables, *args, mutable=mutable, rngs=rngs, **kwargs)``
        with the current variables and returns the model's output only (the
        updated collections are kept), e.g.
        ``lambda apply, batch: xent(apply(batch["x"], train=True), batch["y"])``.
      rng: a PRNG key for the ``rng_streams`` (dropout). Each micro-batch, and each
        ``apply`` call within it, gets its own key derived from it. Without it no
        ``rngs`` are passed.
      mutable: collections the model updates in training (only those present in
        ``variables`` are used; none: ``apply_fn`` is called without ``mutable``).
      rng_streams: names of the RNG streams to feed.
      **options: keyword options of :func:`lrfind_jax.lr_find` (``num_steps``,
        ``num_sweeps``, ``mode``, ``progress``...); sweep k > 0 of ``num_sweeps``
        uses the key ``jax.random.fold_in(rng, k)``.

    Returns:
      An :class:`lrfind_core.LRFindResult`.
    """
    from flax.core import unfreeze
    from flax.errors import InvalidRngError

    apply_fn = getattr(apply_fn, "apply", apply_fn)
    check_callable("apply_fn", apply_fn)
    check_callable("loss_fn", loss_fn)
    if "model_state" in options:
        raise TypeError("lr_find_linen takes no model_state=: the non-params collections are")
    if isinstance(mutable, str) or isinstance(rng_streams, str):
        raise TypeError("mutable and rng_streams must be sequences of collection names")
    variables = unfreeze(variables)
    if not isinstance(variables, dict) or "params" not in variables:
        raise ValueError("variables must be a dict with a 'params' collection")
    state = {name: value for name, value in variables.items() if name != "params"}
    used = tuple(name for name in mutable if name in state)
    loss = LinenLoss(apply_fn, loss_fn, used, tuple(rng_streams))
    try:
        return lr_find(loss, variables["params"], optimizer, train_data,
                       model_state=state, rng=rng, **options)
    except InvalidRngError as error:
        if rng is not None:
            raise
        raise ValueError(
            f"{error}; pass rng=jax.random.key(0) to lr_find_linen to feed the "
            f"{list(rng_streams)} stream(s)"
        ) from error


__all__ = ["LinenLoss", "NnxLoss", "lr_find_linen", "lr_find_nnx"]
