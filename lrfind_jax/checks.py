"""Checks of the user's arguments, run before the sweep is compiled.

They raise a ``TypeError`` or ``ValueError`` that names the argument and says what
is allowed. :func:`check_loss_output` traces the loss once (``jax.eval_shape``,
no computation) to catch a non-scalar loss or a changing model state before the
much slower compilation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrfind_core.settings import resolve_settings

try:
    from jax.extend.core import Literal
except ImportError:  # jax before jax.extend.core held it
    from jax.core import Literal


def check_rng(rng: Any) -> Any:
    """``rng`` is None or a PRNG key (``jax.random.key`` or a legacy ``uint32[2]``)."""
    if rng is None:
        return None
    dtype = getattr(rng, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if np.shape(rng) != ():
            raise ValueError(f"rng must be a single key, got a key array of shape {rng.shape}")
        return rng
    if dtype is not None and np.dtype(dtype) == np.uint32 and np.shape(rng) == (2,):
        return jnp.asarray(rng)
    raise TypeError(f"rng must be a PRNG key such as jax.random.key(0), got {rng!r}")


def check_params(params: Any) -> None:
    """``params`` is a pytree of float arrays: everything in it is trained."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    leaves = [leaf for _, leaf in flat]
    for path, leaf in flat:
        where = jax.tree_util.keystr(path) or "<root>"
        if not hasattr(leaf, "dtype") and not isinstance(leaf, int | float):
            raise TypeError(
                f"params must be a pytree of arrays, found params{where} of type "
                f"{type(leaf).__name__}"
            )
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise ValueError(
                f"params{where} has dtype {dtype}: lr_find differentiates and updates every "
                "leaf of params. Keep what is not trained (step counters, integer buffers, "
                "masks) out of them: lr_find: in model_state= (loss_fn(params, model_state, "
                "batch, key) -> (loss, new_model_state)); lr_find_linen: in a collection other "
                "than 'params'; lr_find_nnx: in an nnx.Variable that is not an nnx.Param, or "
                "outside wrt=; or pass only the float parameters"
            )
    if not any(jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in leaves):
        raise ValueError("params has no floating-point array to train")


def committed_devices(tree: Any) -> set[frozenset[Any]]:
    """The device sets that the committed arrays of ``tree`` sit on."""
    found = set()
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and getattr(leaf, "committed", False):
            found.add(frozenset(leaf.sharding.device_set))
    return found


def check_devices(arguments: dict[str, Any]) -> None:
    """Committed arrays of different arguments sit on the same devices (JAX cannot run
    one program over arrays committed to different device sets)."""
    where = {name: committed_devices(tree) for name, tree in arguments.items()}
    distinct = set().union(*where.values())
    if len(distinct) <= 1:
        return

    def shown(devices: frozenset[Any]) -> str:
        names = sorted(str(device) for device in devices)
        return names[0] if len(names) == 1 else f"{len(names)} devices ({', '.join(names)})"

    placed = "; ".join(
        f"{name} on {' and '.join(shown(devices) for devices in sets)}"
        for name, sets in where.items() if sets
    )
    raise ValueError(
        f"the arguments sit on different devices: {placed}. Put them on the same devices, "
        "as for training: e.g. the data with jax.device_put(data, NamedSharding(mesh, "
        "P(None, 'data'))) beside params on that mesh, or everything on one device"
    )


def _describe(tree: Any) -> str:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    shown = [f"{jax.tree_util.keystr(p) or '<root>'}: {tuple(x.shape)} {x.dtype}" for p, x in flat]
    return "[" + ", ".join(shown[:8]) + (", ..." if len(shown) > 8 else "") + "]"


def check_same_structure(name: str, expected: Any, got: Any, hint: str) -> None:
    """``got`` has the structure and shapes of ``expected`` (dtypes may differ)."""
    expected_leaves, expected_def = jax.tree_util.tree_flatten(expected)
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    same = expected_def == got_def and all(
        tuple(np.shape(a)) == tuple(np.shape(b))
        for a, b in zip(expected_leaves, got_leaves, strict=True)
    )
    if not same:
        raise ValueError(
            f"{name} {_describe(got)} does not match {_describe(expected)}; {hint}"
        )


def check_opt_state(transformation: Any, params: Any, opt_state: Any) -> None:
    """A user-given ``opt_state`` has the structure ``transformation.init(params)`` makes."""
    expected = jax.eval_shape(transformation.init, params)
    check_same_structure(
        "opt_state", expected, opt_state, "pass the state of this optimizer for these params"
    )


def check_loss_signature(loss_fn: Callable[..., Any], stateful: bool) -> None:
    """``loss_fn`` takes the arguments of its form: ``(params, batch)``, or with
    ``model_state=``/``rng=`` ``(params, model_state, batch, key)``."""
    try:
        signature = inspect.signature(loss_fn)
    except (TypeError, ValueError):  # a builtin or an object without one: let the call say
        return
    count = 4 if stateful else 2
    try:
        signature.bind(*range(count))
    except TypeError:
        if stateful:
            raise TypeError(
                f"with model_state= or rng=, loss_fn must take (params, model_state, batch, key) "
                f"and return (loss, new_model_state); {_name(loss_fn)}{signature} does not. "
                "Without model state or randomness, drop model_state=/rng= and use "
                "loss_fn(params, batch)"
            ) from None
        raise TypeError(
            f"loss_fn must take (params, batch); {_name(loss_fn)}{signature} does not. For "
            "the form (params, model_state, batch, key) -> (loss, new_model_state), pass "
            "model_state= and/or rng="
        ) from None


def takes_positional(function: Callable[..., Any], count: int) -> bool | None:
    """Whether ``function`` can be called with ``count`` positional arguments (None when
    its signature cannot be read: a builtin, or an object without one)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


@dataclass(frozen=True)
class LossForm:
    """One way an entry point calls ``loss_fn``: when (``given``, e.g. ``"with rng="``),
    with how many positional arguments, and the call itself (``call``)."""

    given: str
    count: int
    call: str


def check_loss_form(
    caller: str, loss_fn: Callable[..., Any], chosen: LossForm, forms: Sequence[LossForm]
) -> None:
    """``loss_fn`` takes the arguments of ``chosen``, the form the given keywords select;
    otherwise a TypeError that names the form it does fit, or every form. A signature
    that cannot be read passes (the first call says what is wrong)."""
    if takes_positional(loss_fn, chosen.count) is not False:
        return
    described = f"{_name(loss_fn)}{inspect.signature(loss_fn)}"
    fitting = [form for form in forms if takes_positional(loss_fn, form.count)]
    if fitting:
        hint = f"it fits the form {fitting[0].given}: {fitting[0].call}"
    else:
        hint = "the forms: " + "; ".join(f"{form.given}: {form.call}" for form in forms)
    raise TypeError(
        f"{chosen.given}, {caller} calls {chosen.call}, but {described} does not take "
        f"{chosen.count} arguments; {hint}"
    )


def refuse_keywords(keywords: Mapping[str, Any], names: Sequence[str], caller: str,
                    why: str) -> None:
    """A TypeError for the first of ``names`` given in ``keywords`` (a keyword of
    :func:`lrfind_jax.lr_find` that ``caller`` sets itself), saying ``why``."""
    for name in names:
        if name in keywords:
            raise TypeError(f"{caller} takes no {name}=: {why}")


def refuse_tuple_loss(loss: Any, hint: str) -> Any:
    """``loss`` unless it is a tuple or list (a loss written with an auxiliary output, or
    the stateful form's ``(loss, state)`` in the wrong place): then a TypeError with
    ``hint``. Runs while tracing, before anything is compiled."""
    if isinstance(loss, tuple | list):
        raise TypeError(f"loss_fn must return the scalar loss, got a {type(loss).__name__}; "
                        f"{hint}")
    return loss


def _name(function: Any) -> str:
    return getattr(function, "__name__", type(function).__name__)


def check_loss_output(
    loss_fn: Callable[..., Any],
    stateful: bool,
    params: Any,
    model_state: Any,
    batch: Any,
    key: Any,
) -> np.dtype:
    """Trace ``loss_fn`` on one batch (shapes only) and check what it returns.

    Returns the loss dtype. Raises when the loss is not a floating scalar, when
    the stateful form does not return ``(loss, new_model_state)``, or when the new
    model state's structure or shapes differ from ``model_state``.
    """

    def call(p: Any, s: Any, b: Any, k: Any) -> Any:
        out = loss_fn(p, s, b, k) if stateful else loss_fn(p, b)
        loss = out[0] if stateful and isinstance(out, tuple | list) and out else out
        if isinstance(loss, bool | int | float | complex | np.generic | np.ndarray):
            raise TypeError(
                f"loss_fn must return a JAX scalar computed from params (e.g. with jnp), got "
                f"a {type(loss).__name__}: a value computed outside JAX does not depend on "
                "params, so there is nothing to differentiate"
            )
        return out

    check_loss_signature(loss_fn, stateful)
    traced, out = jax.make_jaxpr(call, return_shape=True)(params, model_state, batch, key)
    if stateful:
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise TypeError(
                "with model_state= or rng=, loss_fn(params, model_state, batch, key) must "
                f"return (loss, new_model_state), got {type(out).__name__}"
            )
        loss, new_state = out
        check_same_structure(
            "the model state returned by loss_fn",
            model_state,
            new_state,
            "loss_fn must return the model state with the structure it was given",
        )
    else:
        loss = out
    shape = getattr(loss, "shape", None)
    if shape is None:
        raise TypeError(f"loss_fn must return a scalar jax array, got {type(loss).__name__}")
    if tuple(shape) != ():
        raise ValueError(
            f"loss_fn must return a scalar loss, got shape {tuple(shape)}; reduce it "
            "(e.g. with .mean()) inside loss_fn"
        )
    if not jnp.issubdtype(loss.dtype, jnp.floating):
        raise TypeError(f"loss_fn must return a floating-point loss, got dtype {loss.dtype}")
    if not depends_on_inputs(traced.jaxpr, len(jax.tree_util.tree_leaves(params)), 0):
        raise ValueError(
            "loss_fn's loss does not depend on the params it is given, so no step would "
            "change them: compute it from its params argument (a loss that closes over "
            "params from outside the function is a common slip)"
        )
    return np.dtype(loss.dtype)


def validates(keywords: dict[str, Any]) -> bool:
    """Whether ``lr_find``'s keywords (an adapter's ``**keywords``) ask for validation:
    ``val_data``, or a search, which always validates (settings that do not resolve
    are left for ``lr_find`` to report)."""
    if keywords.get("val_data") is not None:
        return True
    common = ("mode", "for_schedule", "training_steps", "budget_steps")
    try:
        settings = resolve_settings(keywords.get("settings"),
                                    **{name: keywords.get(name) for name in common})
    except (TypeError, ValueError):
        return False
    return settings.mode == "search"


def check_validation_loss(val_loss_fn: Callable[..., Any], params: Any, model_state: Any,
                          batch: Any) -> None:
    """The validation loss (``val_loss_fn(params, model_state, batch)``, traced on one
    batch's shapes) depends on the params: else every candidate would score alike."""
    traced = jax.make_jaxpr(val_loss_fn)(params, model_state, batch)
    if not depends_on_inputs(traced.jaxpr, len(jax.tree_util.tree_leaves(params)), 0):
        raise ValueError(
            "the validation loss (val_loss_fn) does not depend on the params it is given, "
            "so every run would score the same: compute it from its params argument (one "
            "that closes over params from outside the function is a common slip)"
        )


def depends_on_inputs(jaxpr: Any, first_inputs: int, output: int) -> bool:
    """Whether output ``output`` of ``jaxpr`` may depend on its first ``first_inputs``
    inputs: an equation with any such input taints all of its outputs and inputs (so a
    nested jaxpr counts as a whole, ``stop_gradient`` too, and a write into a mutable
    ref taints the ref). False only when no path exists, as for a loss computed
    without its params; a loss whose path has zero gradient (through ``argmax``) is
    not caught."""
    tainted = set(jaxpr.invars[:first_inputs])
    for equation in jaxpr.eqns:
        inputs = [var for var in equation.invars if not isinstance(var, Literal)]
        if any(var in tainted for var in inputs):
            tainted.update(equation.outvars)
            tainted.update(inputs)  # a write into a mutable ref has no output: taint it
    result = jaxpr.outvars[output]
    return not isinstance(result, Literal) and result in tainted


__all__ = [
    "LossForm",
    "check_devices",
    "check_loss_form",
    "check_loss_output",
    "check_opt_state",
    "check_params",
    "check_rng",
    "check_same_structure",
    "check_validation_loss",
    "refuse_keywords",
    "refuse_tuple_loss",
    "takes_positional",
    "validates",
]
