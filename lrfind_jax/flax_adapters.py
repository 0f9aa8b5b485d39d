"""Flax models in :func:`lrfind_jax.lr_find`: nnx modules and linen ``apply``.

Both adapters turn the model into the generic stateful form
``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)``: the
trained parameters are the ``params`` pytree, everything else the model updates
while training (BatchNorm statistics, nnx RNG counters) is ``model_state``. The
user's module or variables are never changed. Both take the same arguments as
``lr_find`` (the model first, then the optimizer, the data and ``loss_fn``; the
same keywords).

Flax is imported only when an adapter is called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax

from lrfind_core.arguments import check_callable
from lrfind_core.result import LRFindResult
from lrfind_jax.finder import lr_find
from lrfind_jax.options import JaxOptions, checked_options


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


@dataclass(frozen=True)
class NnxValidationLoss:
    """``loss_fn(module, batch)`` on the module in eval mode, as ``(params, rest, batch)``."""

    graphdef: Any
    loss_fn: Callable[[Any, Any], Any]

    def __call__(self, params: Any, rest: Any, batch: Any) -> Any:
        from flax import nnx

        return self.loss_fn(nnx.merge(self.graphdef, params, rest, copy=True), batch)


def _view(model: Any, training: bool) -> Any:
    """``model`` as after ``model.train()`` (``training``) or ``model.eval()``, without
    changing ``model`` itself."""
    from flax import nnx

    attributes = {"deterministic": not training, "use_running_average": not training}
    if hasattr(nnx, "view"):
        return nnx.view(model, raise_if_not_found=False, **attributes)
    copy = nnx.clone(model)  # older flax: no views, set a clone's attributes instead
    copy.set_attributes(raise_if_not_found=False, **attributes)
    return copy


def lr_find_nnx(
    model: Any,
    optimizer: Any,
    train_data: Any,
    loss_fn: Callable[[Any, Any], Any] | None = None,
    *,
    wrt: Any = None,
    **keywords: Any,
) -> LRFindResult:
    """``lrfind_jax.lr_find`` for a Flax nnx module; the module is left untouched.

    The module is split into the trained state (``nnx.Param`` by default) and the
    rest (``BatchStat``, RNG counters, other variables). Inside the compiled
    program, every micro-batch merges a fresh module from the two, calls
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
      **keywords: the keywords of :func:`lrfind_jax.lr_find` (``mode``, ``num_steps``,
        ``val_data``, ``settings``, ``options``...). ``options.train_mode`` (default
        True) runs the module as after ``model.train()``; validation points use it
        as after ``model.eval()``, with ``options.val_loss_fn(module, batch)`` if
        given, else ``loss_fn``. With several curves, curve k > 0 folds k into the
        module's RNG keys (its own dropout masks).
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
    _refuse(keywords, ("model_state", "rng"), "lr_find_nnx", "the module's own state is used")
    options = checked_options(keywords.pop("options", None))
    wrt = nnx.Param if wrt is None else wrt
    node = _view(model, True) if options.train_mode else model
    graphdef, params, rest = nnx.split(node, wrt, ...)
    eval_graphdef, _, _ = nnx.split(_view(model, False), wrt, ...)
    val_loss = NnxValidationLoss(eval_graphdef, options.val_loss_fn or loss_fn)
    options = dataclasses.replace(options, train_mode=True, val_loss_fn=val_loss)
    return lr_find(params, optimizer, train_data, NnxLoss(graphdef, loss_fn, wrt),
                   model_state=rest, options=options, **keywords)


def _refuse(keywords: dict[str, Any], names: Sequence[str], where: str, why: str) -> None:
    for name in names:
        if name in keywords:
            raise TypeError(f"{where} takes no {name}=: {why}")


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


@dataclass(frozen=True)
class LinenValidationLoss:
    """``val_loss_fn(apply, batch)`` with ``apply`` calling ``apply_fn`` on the current
    variables, nothing mutable and no RNG streams, as ``(params, collections, batch)``."""

    apply_fn: Callable[..., Any]
    loss_fn: Callable[[Any, Any], Any]

    def __call__(self, params: Any, state: Any, batch: Any) -> Any:
        variables = {"params": params, **state}
        return self.loss_fn(lambda *args, **kwargs: self.apply_fn(variables, *args, **kwargs),
                            batch)


def lr_find_linen(
    apply_fn: Any,
    variables: Any,
    optimizer: Any,
    train_data: Any,
    loss_fn: Callable[[Callable[..., Any], Any], Any] | None = None,
    *,
    rng: Any = None,
    mutable: Sequence[str] = ("batch_stats",),
    rng_streams: Sequence[str] = ("dropout",),
    **keywords: Any,
) -> LRFindResult:
    """``lrfind_jax.lr_find`` for a Flax linen model; ``variables`` are left untouched.

    ``variables["params"]`` is trained; every other collection (e.g.
    ``batch_stats``) is model state, updated step by step where it is listed in
    ``mutable``.

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
        ``apply`` call within it, gets its own key derived from it.
      mutable: collections the model updates in training (only those present in
        ``variables`` are used; none: ``apply_fn`` is called without ``mutable``).
      rng_streams: names of the RNG streams to feed.
      **keywords: the keywords of :func:`lrfind_jax.lr_find`. With ``val_data``,
        ``options.val_loss_fn(apply, batch)`` is required: the loss in eval mode
        (``apply`` then passes nothing mutable and no RNG streams; call it with
        your model's eval flag, e.g. ``train=False``).
    """
    from flax.core import unfreeze
    from flax.errors import InvalidRngError

    apply_fn = getattr(apply_fn, "apply", apply_fn)
    check_callable("apply_fn", apply_fn)
    check_callable("loss_fn", loss_fn)
    _refuse(keywords, ("model_state",), "lr_find_linen", "the non-params collections are")
    if isinstance(mutable, str) or isinstance(rng_streams, str):
        raise TypeError("mutable and rng_streams must be sequences of collection names")
    variables = unfreeze(variables)
    if not isinstance(variables, dict) or "params" not in variables:
        raise ValueError("variables must be a dict with a 'params' collection")
    options = checked_options(keywords.pop("options", None))
    if keywords.get("val_data") is not None:
        if options.val_loss_fn is None:
            raise ValueError(
                "lr_find_linen with val_data needs options=JaxOptions(val_loss_fn=...): "
                "val_loss_fn(apply, batch) -> the loss in eval mode, e.g. with train=False"
            )
        options = dataclasses.replace(
            options, val_loss_fn=LinenValidationLoss(apply_fn, options.val_loss_fn)
        )
    state = {name: value for name, value in variables.items() if name != "params"}
    used = tuple(name for name in mutable if name in state)
    loss = LinenLoss(apply_fn, loss_fn, used, tuple(rng_streams))
    try:
        return lr_find(variables["params"], optimizer, train_data, loss, model_state=state,
                       rng=rng, options=options, **keywords)
    except InvalidRngError as error:
        if rng is not None:
            raise
        raise ValueError(
            f"{error}; pass rng=jax.random.key(0) to lr_find_linen to feed the "
            f"{list(rng_streams)} stream(s)"
        ) from error


__all__ = [
    "JaxOptions",
    "LinenLoss",
    "LinenValidationLoss",
    "NnxLoss",
    "NnxValidationLoss",
    "lr_find_linen",
    "lr_find_nnx",
]
