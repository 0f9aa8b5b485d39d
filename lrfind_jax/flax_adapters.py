"""Flax models in :func:`lrfind_jax.lr_find`: nnx modules, linen ``apply`` and ``TrainState``.

The nnx and linen adapters turn the model into the generic stateful form
``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)``: the
trained parameters are the ``params`` pytree, everything else the model updates
while training (BatchNorm statistics, nnx RNG counters) is ``model_state``. The
TrainState adapter passes ``state.apply_fn`` to the loss and trains
``state.params`` with ``state.tx``. The user's module, ``nnx.Optimizer``,
variables or train state are never changed. They take the same keywords as
``lr_find``.

Flax is imported only when an adapter is called.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jax

from lrfind_core.arguments import check_callable
from lrfind_core.result import LRFindResult
from lrfind_jax.checks import (
    LossForm,
    check_loss_form,
    check_same_structure,
    refuse_keywords,
    refuse_tuple_loss,
    validates,
)
from lrfind_jax.finder import lr_find
from lrfind_jax.injection import check_held_transformation
from lrfind_jax.options import JaxOptions, checked_options

NNX_FORMS = (
    LossForm("without rng=", 2, "loss_fn(module, batch) -> loss"),
    LossForm("with rng=", 3, "loss_fn(module, batch, rngs) -> loss"),
)
"""How :func:`lr_find_nnx` calls ``loss_fn``, without and with call-time RNGs."""

AUX_HINT = (
    "a loss written for nnx.value_and_grad(..., has_aux=True) returns (loss, aux): pass "
    "lambda module, batch, rngs: loss_fn(module, rngs, batch)[0] (with the argument order "
    "of Flax's tutorials) or return the loss alone"
)


@dataclass(frozen=True)
class NnxLoss:
    """``loss_fn(module, batch)``, or with ``call_rngs`` ``loss_fn(module, batch, rngs)``,
    as a stateful loss over ``(params, rest)`` states.

    With ``call_rngs`` every micro-batch gets ``rngs = nnx.Rngs(key)``, a fresh
    ``nnx.Rngs`` whose default stream starts from the step's key (every stream
    name, ``dropout`` included, falls back to it). Frozen and hashable (graphdef,
    function, filter), so a second sweep of the same model reuses the compiled program.
    """

    graphdef: Any
    loss_fn: Callable[..., Any]
    wrt: Any
    call_rngs: bool = False

    def __call__(self, params: Any, rest: Any, batch: Any, key: Any) -> tuple[Any, Any]:
        from flax import nnx

        # copy=True: fresh Variables owned by this trace, so the module may update them.
        module = nnx.merge(self.graphdef, params, rest, copy=True)
        call_rngs = (nnx.Rngs(key),) if self.call_rngs else ()
        loss = refuse_tuple_loss(self.loss_fn(module, batch, *call_rngs), AUX_HINT)
        _, _, new_rest = nnx.split(module, self.wrt, ...)
        return loss, new_rest


@dataclass(frozen=True)
class NnxValidationLoss:
    """``loss_fn(module, batch)`` on the module in eval mode, as ``(params, rest, batch)``;
    with ``call_rngs`` ``loss_fn(module, batch, None)`` (eval mode draws no random
    numbers, as in Flax's tutorials, which evaluate with ``model(x, None)``)."""

    graphdef: Any
    loss_fn: Callable[..., Any]
    call_rngs: bool = False

    def __call__(self, params: Any, rest: Any, batch: Any) -> Any:
        from flax import nnx

        module = nnx.merge(self.graphdef, params, rest, copy=True)
        no_rngs = (None,) if self.call_rngs else ()
        return refuse_tuple_loss(self.loss_fn(module, batch, *no_rngs), AUX_HINT)


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


def _held_optimizer(optimizer: Any, model: Any, wrt: Any) -> tuple[Any, Any]:
    """An ``nnx.Optimizer``'s ``tx`` and the filter to train (``wrt``, else the
    optimizer's). The optimizer is only read: its tx must have an injected LR and its
    state must be that of ``model``'s parameters (else it belongs to another model)."""
    from flax import nnx

    held_wrt = getattr(optimizer, "wrt", nnx.Param)
    params = nnx.state(model, held_wrt)
    check_held_transformation(
        optimizer.tx, params, "the nnx.Optimizer's tx",
        "pass the optax factory instead of the nnx.Optimizer: lr_find_nnx(model, optax.adamw, "
        "...) (or functools.partial(optax.adamw, weight_decay=1e-4))",
    )
    as_pure = getattr(nnx, "as_pure", None)  # Flax >= 0.11
    if as_pure is not None:
        check_same_structure(
            "the nnx.Optimizer's state", as_pure(jax.eval_shape(optimizer.tx.init, params)),
            as_pure(optimizer.opt_state),
            "the optimizer was built for another model",
        )
    return optimizer.tx, held_wrt if wrt is None else wrt


def lr_find_nnx(
    model: Any,
    optimizer: Any,
    train_data: Any,
    loss_fn: Callable[..., Any] | None = None,
    *,
    wrt: Any = None,
    rng: Any = None,
    **keywords: Any,
) -> LRFindResult:
    """``lrfind_jax.lr_find`` for a Flax nnx module; the module is left untouched.

    The module is split into the trained state (``nnx.Param`` by default) and the
    rest (``BatchStat``, RNG counters, other variables). Inside the compiled
    program, every micro-batch merges a fresh module from the two, calls
    ``loss_fn`` and splits it again, so BatchNorm statistics update and the
    module's own dropout RNG streams advance step by step, as in an nnx training
    loop; none of it is written back to ``model``.

    Args:
      model: an ``nnx.Module``.
      optimizer: an optax transformation with an injected learning rate, a factory
        ``lr -> GradientTransformation`` (see :func:`lrfind_jax.lr_find`), or an
        ``nnx.Optimizer`` of ``model`` built on a transformation with an injected
        learning rate: its ``tx`` and ``wrt`` are used, and the sweep starts from a
        fresh ``tx.init(params)``, as a newly built ``nnx.Optimizer`` holds. The
        optimizer (its state, step, and the model an ``nnx.ModelAndOptimizer``
        holds) is only read.
      train_data: stacked arrays or a sequence of batches (see :func:`lr_find`).
      loss_fn: ``loss_fn(module, batch) -> scalar loss``; with ``rng=``
        ``loss_fn(module, batch, rngs)``, for models that take their RNGs at call
        time (``def __call__(self, x, rngs: nnx.Rngs | None = None)``, dropout fed
        by ``self.dropout(x, rngs=rngs)``), as in Flax's MNIST tutorial.
      wrt: the nnx filter of what is trained (default: the ``nnx.Optimizer``'s, else
        ``nnx.Param``).
      rng: a PRNG key (``jax.random.key(0)``). Each micro-batch ``m`` then gets
        ``rngs = nnx.Rngs(jax.random.fold_in(rng, m))``, a fresh ``nnx.Rngs`` (its
        default stream serves every stream name), so dropout masks differ from
        step to step, the same key gives the same losses, and the independent runs
        of one curve see the same masks (curve k > 0 folds k into ``rng`` first).
        Never build ``nnx.Rngs(0)`` inside ``loss_fn``: it would repeat one mask
        every step.
      **keywords: the keywords of :func:`lrfind_jax.lr_find` (``mode``, ``num_steps``,
        ``val_data``, ``settings``, ``options``...). ``options.train_mode`` (default
        True) runs the module as after ``model.train()``; validation points use it
        as after ``model.eval()``, with ``options.val_loss_fn(module, batch)`` if
        given, else ``loss_fn(module, batch)`` (with ``rng=``:
        ``loss_fn(module, batch, None)``: eval mode draws no random numbers). With
        several curves, curve k > 0 also folds k into the module's own RNG keys.
    """
    from flax import nnx

    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax nnx.Module, got {type(model).__name__}")
    if isinstance(optimizer, nnx.Optimizer):
        optimizer, wrt = _held_optimizer(optimizer, model, wrt)
    check_callable("loss_fn", loss_fn)
    call_rngs = rng is not None
    _refuse_rngs_second(loss_fn)
    check_loss_form("lr_find_nnx", loss_fn, NNX_FORMS[call_rngs], NNX_FORMS)
    refuse_keywords(keywords, ("model_state",), "lr_find_nnx", "the module's own state is used")
    options = checked_options(keywords.pop("options", None))
    wrt = nnx.Param if wrt is None else wrt
    node = _view(model, True) if options.train_mode else model
    graphdef, params, rest = nnx.split(node, wrt, ...)
    eval_graphdef, _, _ = nnx.split(_view(model, False), wrt, ...)
    if options.val_loss_fn is None:
        val_loss = NnxValidationLoss(eval_graphdef, loss_fn, call_rngs)
    else:
        val_loss = NnxValidationLoss(eval_graphdef, options.val_loss_fn)
    options = dataclasses.replace(options, train_mode=True, val_loss_fn=val_loss)
    with _explained_rng_errors(call_rngs, loss_fn):
        return lr_find(params, optimizer, train_data, NnxLoss(graphdef, loss_fn, wrt, call_rngs),
                       model_state=rest, rng=rng, options=options, **keywords)


def _tutorial_hint(loss_fn: Callable[..., Any]) -> str:
    """How to pass a loss of Flax's tutorials, ``(model, rngs, batch) -> (loss, logits)``."""
    name = getattr(loss_fn, "__name__", "loss_fn")
    name = "loss_fn" if name == "<lambda>" else name
    return (
        f"lr_find_nnx calls loss_fn(module, batch, rngs) -> loss (with rng=), so a loss of Flax's "
        f"tutorials, loss_fn(model, rngs, batch) -> (loss, logits) for nnx.value_and_grad(..., "
        f"has_aux=True), goes in as lambda model, batch, rngs: {name}(model, rngs, batch)[0] "
        "(without [0] if it returns the loss alone), with rng=jax.random.key(0)"
    )


def _refuse_rngs_second(loss_fn: Callable[..., Any]) -> None:
    """A TypeError, before any work, for a loss that takes ``rngs`` second (Flax's
    tutorials): lr_find_nnx would pass the batch as its ``rngs``."""
    try:
        parameters = inspect.signature(loss_fn).parameters.values()
    except (TypeError, ValueError):
        return
    names = [parameter.name for parameter in parameters
             if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)]
    if len(names) >= 3 and names[1] in ("rngs", "rng"):
        raise TypeError(f"loss_fn{inspect.signature(loss_fn)} takes {names[1]} second; "
                        + _tutorial_hint(loss_fn))


@contextlib.contextmanager
def _explained_rng_errors(call_rngs: bool, loss_fn: Callable[..., Any]) -> Iterator[None]:
    """Flax's errors about RNGs in a traced loss, turned into what to do in lr_find_nnx."""
    from flax.errors import TraceContextError

    try:
        yield
    except TypeError as error:  # the nnx.Rngs used as data: rngs and batch swapped
        said = str(error)
        if not call_rngs or "Rng" not in said or "not a valid JAX array type" not in said:
            raise
        raise TypeError("loss_fn used the nnx.Rngs it was given as an array, as a loss that "
                        "takes (model, rngs, batch) does; " + _tutorial_hint(loss_fn)) from error
    except TraceContextError as error:
        raise ValueError(
            "loss_fn changed an nnx object made outside lr_find (for example an nnx.Rngs it "
            "closes over), which the compiled sweep cannot do. Pass rng=jax.random.key(0) and "
            "write loss_fn(module, batch, rngs): each step then gets a fresh nnx.Rngs. "
            f"Flax said: {str(error).splitlines()[0]}"
        ) from error
    except ValueError as error:
        if call_rngs or "rngs" not in str(error):
            raise
        said = " ".join(str(error).split()).rstrip(". ")
        raise ValueError(
            f"{said}. If the model takes its RNGs at call time, pass rng=jax.random.key(0) to "
            "lr_find_nnx and write loss_fn(module, batch, rngs): each step then gets a fresh "
            "nnx.Rngs"
        ) from error


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
      **keywords: the keywords of :func:`lrfind_jax.lr_find`. With ``val_data`` or
        ``mode="search"``, ``options.val_loss_fn(apply, batch)`` is required: the loss in
        eval mode
        (``apply`` then passes nothing mutable and no RNG streams; call it with
        your model's eval flag, e.g. ``train=False``).
    """
    from flax.core import unfreeze
    from flax.errors import InvalidRngError

    apply_fn = getattr(apply_fn, "apply", apply_fn)
    check_callable("apply_fn", apply_fn)
    check_callable("loss_fn", loss_fn)
    refuse_keywords(keywords, ("model_state",), "lr_find_linen",
                    "the non-params collections are")
    if isinstance(mutable, str) or isinstance(rng_streams, str):
        raise TypeError("mutable and rng_streams must be sequences of collection names")
    variables = unfreeze(variables)
    if not isinstance(variables, dict) or "params" not in variables:
        raise ValueError("variables must be a dict with a 'params' collection")
    options = checked_options(keywords.pop("options", None))
    if validates(keywords):
        if options.val_loss_fn is None:
            raise ValueError(
                "lr_find_linen with val_data or mode='search' needs "
                "options=JaxOptions(val_loss_fn=...): val_loss_fn(apply, batch) -> the loss "
                "in eval mode, e.g. with train=False"
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


TRAIN_STATE_FORMS = (
    LossForm("without model_state= or rng=", 3, "loss_fn(apply_fn, params, batch) -> loss"),
    LossForm("with model_state= or rng=", 5,
             "loss_fn(apply_fn, params, model_state, batch, key) -> (loss, new_model_state)"),
)
"""How :func:`lr_find_train_state` calls ``loss_fn``: lr_find's forms, ``apply_fn`` first."""


@dataclass(frozen=True)
class ApplyFnLoss:
    """``loss_fn(apply_fn, *args)`` as a loss of lr_find's forms: ``(params, batch)`` or
    ``(params, model_state, batch, key)`` (validation: ``(params, batch)`` or
    ``(params, model_state, batch)``). Frozen and hashable when ``apply_fn`` is, so a
    second sweep reuses the compiled program."""

    apply_fn: Callable[..., Any]
    loss_fn: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.loss_fn(self.apply_fn, *args)


def lr_find_train_state(
    state: Any,
    train_data: Any,
    loss_fn: Callable[..., Any] | None = None,
    *,
    optimizer: Any = None,
    model_state: Any = None,
    rng: Any = None,
    **keywords: Any,
) -> LRFindResult:
    """``lrfind_jax.lr_find`` for a ``flax.training.train_state.TrainState``: trains
    ``state.params`` with ``state.tx`` through ``state.apply_fn``; ``state`` is left
    untouched (nothing in it is donated).

    The sweep starts from a fresh ``state.tx.init(state.params)``, which is what
    ``TrainState.create(...)`` holds; to continue from the state's own optimizer
    state (e.g. Adam moments mid-training) pass
    ``options=JaxOptions(opt_state=state.opt_state)``. ``state.step`` is not used.

    Args:
      state: a ``TrainState`` (or any object with ``apply_fn``, ``params`` and
        ``tx``, such as a subclass with a ``batch_stats`` field).
      train_data: stacked arrays or a sequence of batches (see :func:`lr_find`).
      loss_fn: ``loss_fn(apply_fn, params, batch) -> scalar loss``, the body of the
        usual ``loss_fn(params)`` of a train step, e.g.
        ``xent(apply_fn({"params": params}, batch["image"]), batch["label"])``.
        With ``model_state=`` and/or ``rng=``: ``loss_fn(apply_fn, params,
        model_state, batch, key) -> (loss, new_model_state)`` (``key`` as in
        :func:`lr_find`: ``jax.random.fold_in(rng, micro_step)``, e.g. for
        ``rngs={"dropout": key}``; None without ``rng=``).
      optimizer: overrides ``state.tx``, e.g. the factory ``optax.adam`` when
        ``state.tx`` was built with a fixed learning rate (``optax.adam(1e-3)``),
        which lr_find cannot change. By default ``state.tx``, which must have an
        injected learning rate (``optax.inject_hyperparams``).
      model_state: non-trained state passed to and returned by ``loss_fn``, e.g.
        ``state.batch_stats`` for BatchNorm (``apply_fn({"params": params,
        "batch_stats": model_state}, x, train=True, mutable=["batch_stats"])``).
      rng: a PRNG key for the per-step keys (dropout).
      **keywords: the keywords of :func:`lrfind_jax.lr_find`. ``options.val_loss_fn``
        (for ``val_data``) takes ``apply_fn`` first too: ``(apply_fn, params, batch)``,
        or ``(apply_fn, params, model_state, batch)`` (required with ``model_state=``
        or ``rng=``). Without it the plain ``loss_fn`` scores validation batches.
    """
    missing = [name for name in ("apply_fn", "params", "tx") if not hasattr(state, name)]
    if missing:
        raise TypeError(
            "state must be a flax TrainState (apply_fn, params, tx); "
            f"{type(state).__name__} has no {', '.join(missing)}"
        )
    check_callable("state.apply_fn", state.apply_fn)
    check_callable("loss_fn", loss_fn)
    refuse_keywords(keywords, ("params",), "lr_find_train_state", "state.params is trained")
    stateful = model_state is not None or rng is not None
    check_loss_form("lr_find_train_state", loss_fn, TRAIN_STATE_FORMS[stateful],
                    TRAIN_STATE_FORMS)
    if optimizer is None:
        optimizer = state.tx
        check_held_transformation(
            optimizer, state.params, "state.tx",
            "pass a factory lr -> GradientTransformation instead of it: "
            "lr_find_train_state(state, train_data, loss_fn, optimizer=optax.adam)",
        )
    options = checked_options(keywords.pop("options", None))
    if options.val_loss_fn is not None:
        options = dataclasses.replace(
            options, val_loss_fn=ApplyFnLoss(state.apply_fn, options.val_loss_fn)
        )
    return lr_find(state.params, optimizer, train_data, ApplyFnLoss(state.apply_fn, loss_fn),
                   model_state=model_state, rng=rng, options=options, **keywords)


__all__ = [
    "ApplyFnLoss",
    "JaxOptions",
    "LinenLoss",
    "LinenValidationLoss",
    "NnxLoss",
    "NnxValidationLoss",
    "lr_find_linen",
    "lr_find_nnx",
    "lr_find_train_state",
]
