"""Equinox models in :func:`lrfind_jax.lr_find`: ``lr_find_equinox``.

An ``eqx.Module`` holds its trained arrays beside everything else (activation
functions, sizes, the ``inference`` flags of ``Dropout`` and ``BatchNorm``), so
it cannot be differentiated whole. The adapter splits it as equinox's own
``filter_grad`` does, ``eqx.partition(model, eqx.is_inexact_array)``: the
floating-point arrays are lrfind's ``params``, the rest is combined back in
every step. BatchNorm statistics live in an ``eqx.nn.State`` (from
``eqx.nn.make_with_state``), passed as ``state=`` and carried step by step as
lrfind's model state. The user's model and state are never changed.

Equinox is imported only when :func:`lr_find_equinox` is called.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lrfind_core.arguments import check_callable
from lrfind_core.result import LRFindResult
from lrfind_jax.checks import (
    LossForm,
    check_loss_form,
    refuse_keywords,
    refuse_tuple_loss,
    validates,
)
from lrfind_jax.finder import lr_find
from lrfind_jax.options import JaxOptions, checked_options

FORMS = {
    "plain": LossForm("without state= or rng=", 2, "loss_fn(model, batch) -> loss"),
    "key": LossForm("with rng= alone", 3, "loss_fn(model, batch, key) -> loss"),
    "state": LossForm("with state=", 4,
                      "loss_fn(model, state, batch, key) -> (loss, new_state)"),
}
"""How :func:`lr_find_equinox` calls ``loss_fn``, by what is given."""

STATE_HINT = ("a loss that returns the model's new state takes the form with state=: "
              + FORMS["state"].call)

DATA_NAMES = ("y", "ys", "label", "labels", "target", "targets")
"""Third parameter names of a ``loss(model, x, y)``, which takes the batch in two arguments."""


def _equinox() -> Any:
    try:
        import equinox
    except ImportError as error:
        raise ImportError(
            "lr_find_equinox needs equinox, which is not installed: pip install "
            "'lrfind[equinox]'"
        ) from error
    return equinox


@dataclass(frozen=True)
class EquinoxLoss:
    """The user's loss on ``eqx.combine(params, static)`` as a loss of lr_find's forms:
    ``(params, batch)`` for the ``"plain"`` form, ``(params, state, batch, key) ->
    (loss, new_state)`` otherwise (the state is None in the ``"key"`` form).

    Frozen and hashable when ``static`` is (it is, unless the model holds
    non-float arrays), so a second sweep of the same model reuses the program."""

    static: Any
    loss_fn: Callable[..., Any]
    form: str

    def __call__(self, params: Any, *args: Any) -> Any:
        import equinox as eqx

        model = eqx.combine(params, self.static)
        if self.form == "plain":
            (batch,) = args
            return refuse_tuple_loss(self.loss_fn(model, batch), STATE_HINT)
        state, batch, key = args
        if self.form == "key":
            return refuse_tuple_loss(self.loss_fn(model, batch, key), STATE_HINT), state
        return self.loss_fn(model, state, batch, key)


@dataclass(frozen=True)
class EquinoxValidationLoss:
    """The eval-mode loss on ``eqx.combine(params, static)`` (``static`` from the model
    in inference mode), as ``(params, batch)`` or ``(params, state, batch)``.

    ``user_form``: the user's ``val_loss_fn(model, batch)`` or ``val_loss_fn(model,
    state, batch)``; otherwise the training loss with ``key=None`` (only without
    ``rng=``, where training passes None too: with ``rng=`` lr_find_equinox requires
    ``val_loss_fn``), its loss only in the ``"state"`` form.
    """

    static: Any
    loss_fn: Callable[..., Any]
    form: str
    user_form: bool

    def __call__(self, params: Any, *args: Any) -> Any:
        import equinox as eqx

        model = eqx.combine(params, self.static)
        batch = args[-1]
        state = args[0] if len(args) == 2 else None
        if self.user_form:
            if self.form == "state":
                return self.loss_fn(model, state, batch)
            return self.loss_fn(model, batch)
        if self.form == "plain":
            return self.loss_fn(model, batch)
        if self.form == "key":
            return self.loss_fn(model, batch, None)
        return self.loss_fn(model, state, batch, None)[0]


def lr_find_equinox(
    model: Any,
    optimizer: Any,
    train_data: Any,
    loss_fn: Callable[..., Any] | None = None,
    *,
    state: Any = None,
    rng: Any = None,
    filter_spec: Any = None,
    **keywords: Any,
) -> LRFindResult:
    """``lrfind_jax.lr_find`` for an equinox model; ``model`` and ``state`` are left
    untouched.

    Args:
      model: an ``eqx.Module``.
      optimizer: an optax transformation with an injected learning rate, or a
        factory ``lr -> GradientTransformation`` such as ``optax.adam`` (see
        :func:`lrfind_jax.lr_find`). Its state is initialised on the trained arrays,
        ``eqx.filter(model, filter_spec)``, as in equinox's own training loops (so
        ``options=JaxOptions(opt_state=...)`` takes the state such a loop holds).
      train_data: stacked arrays or a sequence of batches (see :func:`lr_find`).
      loss_fn: one of three forms, by what is passed:
        ``loss_fn(model, batch) -> loss`` (neither ``state=`` nor ``rng=``);
        ``loss_fn(model, batch, key) -> loss`` (``rng=`` alone: dropout);
        ``loss_fn(model, state, batch, key) -> (loss, new_state)`` (``state=``:
        BatchNorm; ``key`` is None without ``rng=``).
        ``key`` is ``jax.random.fold_in(rng, micro_step)``: a new key every
        micro-batch (split it for several layers or per example under ``jax.vmap``),
        the same for the independent runs of one curve, folded with k for curve
        k > 0.
      state: the model's ``eqx.nn.State`` (``model, state =
        eqx.nn.make_with_state(Model)(...)``), updated step by step.
      rng: a PRNG key (``jax.random.key(0)``) for the per-step keys.
      filter_spec: what is trained: a filter function or a pytree of bools, as for
        ``eqx.partition`` (default ``eqx.is_inexact_array``: every floating-point
        array).
      **keywords: the keywords of :func:`lrfind_jax.lr_find` (``mode``, ``num_steps``,
        ``val_data``, ``settings``, ``options``...). ``options.train_mode`` (default
        True) runs the model as after ``eqx.nn.inference_mode(model, False)``
        (dropout on, batch statistics); False runs it as it is. Validation points
        use ``eqx.nn.inference_mode(model)``, with ``options.val_loss_fn(model,
        batch)`` (``(model, state, batch)`` with ``state=``) if given, else
        ``loss_fn`` with ``key=None``. With ``rng=``, ``val_data`` or
        ``mode="search"`` (which always validates) requires ``val_loss_fn``: a
        loss that takes a key may split it, and None cannot be split.
    """
    eqx = _equinox()
    if not isinstance(model, eqx.Module):
        raise TypeError(f"model must be an equinox Module, got {type(model).__name__}")
    check_callable("loss_fn", loss_fn)
    refuse_keywords(keywords, ("model_state",), "lr_find_equinox",
                    "pass the eqx.nn.State as state=")
    form = "state" if state is not None else "key" if rng is not None else "plain"
    _check_loss(loss_fn, form)
    options = checked_options(keywords.pop("options", None))
    _check_validation(keywords, options, rng, form)
    filter_spec = eqx.is_inexact_array if filter_spec is None else filter_spec
    training = eqx.nn.inference_mode(model, False) if options.train_mode else model
    params, static = eqx.partition(training, filter_spec)
    _, eval_static = eqx.partition(eqx.nn.inference_mode(model), filter_spec)
    user_val = options.val_loss_fn
    val_loss = EquinoxValidationLoss(eval_static, user_val or loss_fn, form, user_val is not None)
    options = dataclasses.replace(options, train_mode=True, val_loss_fn=val_loss)
    try:
        return lr_find(params, optimizer, train_data, EquinoxLoss(static, loss_fn, form),
                       model_state=state, rng=rng, options=options, **keywords)
    except RuntimeError as error:  # equinox's Dropout without a key
        if rng is not None or "requires a key" not in str(error):
            raise
        raise ValueError(
            f"{str(error).rstrip('. ')}: pass rng=jax.random.key(0) to lr_find_equinox and take "
            f"the step's key in loss_fn ({FORMS['key'].call}, or {FORMS['state'].call})"
        ) from error


def _check_loss(loss_fn: Callable[..., Any], form: str) -> None:
    """``check_loss_form``, but equinox's usual ``loss(model, x, y)`` (the batch in two
    arguments) is told how to take the batch whole, not that it fits the key form
    (``rng=`` would pass the key as ``y``)."""
    try:
        check_loss_form("lr_find_equinox", loss_fn, FORMS[form], tuple(FORMS.values()))
    except TypeError:
        if not _takes_x_y(loss_fn, strict=False):
            raise
    else:
        if form != "key" or not _takes_x_y(loss_fn, strict=True):
            return
    name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
    name = "loss" if name == "<lambda>" else name
    forms = "; ".join(f"{value.call} {value.given}" for value in FORMS.values())
    raise TypeError(
        f"{FORMS[form].given}, lr_find_equinox calls {FORMS[form].call}, but "
        f"{name}{inspect.signature(loss_fn)} seems to take the batch in two arguments, as "
        f"loss(model, x, y) does. lr_find_equinox passes the batch whole, in one of the forms "
        f"{forms}. Adapt a loss(model, x, y) with lambda model, batch: {name}(model, *batch) "
        "(without state= or rng=)"
    )


def _takes_x_y(loss_fn: Callable[..., Any], strict: bool) -> bool:
    """Whether ``loss_fn`` has three positional parameters and the third is not a key:
    named as a label (``strict``), or with no "key"/"rng" in its name."""
    try:
        parameters = inspect.signature(loss_fn).parameters.values()
    except (TypeError, ValueError):
        return False
    names = [parameter.name.lower() for parameter in parameters
             if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)]
    if len(names) != 3:
        return False
    if strict:
        return names[2] in DATA_NAMES
    return names[2] != "k" and "key" not in names[2] and "rng" not in names[2]


def _check_validation(keywords: dict[str, Any], options: JaxOptions, rng: Any, form: str) -> None:
    """With ``rng=``, validation (``val_data``, or a search, which always validates) needs
    the user's eval-mode ``val_loss_fn``: ``loss_fn`` would get ``key=None``, which a loss
    that splits its key cannot take."""
    validating = validates(keywords)
    if not validating or rng is None or options.val_loss_fn is not None:
        return
    call = "val_loss_fn(model, state, batch)" if form == "state" else "val_loss_fn(model, batch)"
    raise ValueError(
        "lr_find_equinox with rng= and val_data or mode='search' (a search always validates) "
        f"needs options=JaxOptions(val_loss_fn=...): {call} -> the loss in eval mode, without a "
        "key (it gets the model as after eqx.nn.inference_mode(model), so Dropout is off). "
        "loss_fn is not called with key=None, which a loss that splits its key cannot take"
    )


__all__ = ["FORMS", "EquinoxLoss", "EquinoxValidationLoss", "lr_find_equinox"]
