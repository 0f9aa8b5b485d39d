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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lrfind_core.arguments import check_callable
from lrfind_core.result import LRFindResult
from lrfind_jax.checks import LossForm, check_loss_form, refuse_keywords, refuse_tuple_loss
from lrfind_jax.finder import lr_find
from lrfind_jax.options import checked_options

FORMS = {
    "plain": LossForm("without state= or rng=", 2, "loss_fn(model, batch) -> loss"),
    "key": LossForm("with rng= alone", 3, "loss_fn(model, batch, key) -> loss"),
    "state": LossForm("with state=", 4,
                      "loss_fn(model, state, batch, key) -> (loss, new_state)"),
}
"""How :func:`lr_find_equinox` calls ``loss_fn``, by what is given."""

STATE_HINT = ("a loss that returns the model's new state takes the form with state=: "
              + FORMS["state"].call)


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
    state, batch)``; otherwise the training loss with ``key=None`` (inference mode
    draws no random numbers), its loss only in the ``"state"`` form.
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
        ``loss_fn`` with ``key=None``.
    """
    eqx = _equinox()
    if not isinstance(model, eqx.Module):
        raise TypeError(f"model must be an equinox Module, got {type(model).__name__}")
    check_callable("loss_fn", loss_fn)
    refuse_keywords(keywords, ("model_state",), "lr_find_equinox",
                    "pass the eqx.nn.State as state=")
    form = "state" if state is not None else "key" if rng is not None else "plain"
    check_loss_form("lr_find_equinox", loss_fn, FORMS[form], tuple(FORMS.values()))
    options = checked_options(keywords.pop("options", None))
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


__all__ = ["FORMS", "EquinoxLoss", "EquinoxValidationLoss", "lr_find_equinox"]
