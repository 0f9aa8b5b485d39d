"""Where the learning rate lives in an optax state, and how lrfind sets it.

``optax.inject_hyperparams`` stores a transformation's hyperparameters in its
state (``InjectStatefulHyperparamsState.hyperparams``), so the LR is data: a
compiled loop can change it every step. lrfind finds every injected
``"learning_rate"`` in the state tree (through ``optax.chain`` tuples,
``optax.multi_transform`` partitions and ``optax.MultiSteps``), calls each one a
*group*, and sets group ``g`` at step ``i`` to::

    lr_g[i] = float32(schedule[i] * base_g / base_ref)

cast to the dtype the hyperparameter is stored in. ``base_g`` is the group's LR in
the initial state and the *reference* group is the first one in
``jax.tree_util`` flatten order (for ``multi_transform``: the alphabetically first
label). The reference group therefore follows the schedule and every other group
keeps its ratio to it, as param groups do in the torch backend.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrfind_core.schedules import group_learning_rates

LR_NAME = "learning_rate"

_INJECT_STATES: tuple[type, ...] = (
    optax.InjectStatefulHyperparamsState,
    optax.InjectHyperparamsState,
)

HOW_TO_INJECT = (
    "wrap your optimizer with optax.inject_hyperparams(optax.adam)(learning_rate=...) "
    "or pass a factory lr -> GradientTransformation (for example `optax.adam` itself)"
)


def _is_inject_state(node: Any) -> bool:
    return isinstance(node, _INJECT_STATES)


@dataclass(frozen=True)
class LrGroup:
    """One injected learning rate in an optimizer state.

    Attributes:
      leaf_index: position of its inject-state node among the leaves of
        ``tree_flatten(opt_state, is_leaf=<inject state>)``.
      path: the node's path in the state, for messages (``jax.tree_util.keystr``).
      base_lr: its LR in the initial state (float64 on the host).
      dtype: the dtype the hyperparameter is stored in (kept as it is).
      shape: its shape (kept as it is; size 1).
    """

    leaf_index: int
    path: str
    base_lr: float
    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class PreparedOptimizer:
    """The transformation lrfind runs and the micro-batches per real update.

    ``transformation`` has optax's ``init(params)`` / ``update(grads, state, params)``;
    with ``accumulation_steps > 1`` it is an ``optax.MultiSteps``.
    """

    transformation: Any
    accumulation_steps: int
    from_factory: bool


def _is_transformation(obj: Any) -> bool:
    return isinstance(obj, optax.GradientTransformation | optax.MultiSteps) or (
        hasattr(obj, "init") and hasattr(obj, "update") and not isinstance(obj, type)
    )


def _multi_steps_of(transformation: Any) -> optax.MultiSteps | None:
    """The ``optax.MultiSteps`` behind ``transformation``, if it is one (or its
    ``gradient_transformation()``)."""
    if isinstance(transformation, optax.MultiSteps):
        return transformation
    owner = getattr(getattr(transformation, "update", None), "__self__", None)
    return owner if isinstance(owner, optax.MultiSteps) else None


def constant_every_k(multi_steps: optax.MultiSteps) -> int:
    """The constant ``every_k_schedule`` of ``multi_steps``, or a ValueError.

    The schedule is traced once with an abstract step: a constant int schedule
    returns a Python int without looking at the step.
    """
    schedule = getattr(multi_steps, "_every_k_schedule", None)
    if not callable(schedule):  # optax internals changed
        raise ValueError(
            "cannot read the every_k_schedule of this optax.MultiSteps; pass the inner "
            "optimizer with accumulation_steps=k instead"
        )
    seen: list[Any] = []

    def probe(step: Any) -> Any:
        seen.append(schedule(step))  # type: ignore[misc]
        return step

    problem = None
    try:
        jax.eval_shape(probe, jax.ShapeDtypeStruct((), jnp.int32))
    except Exception as error:  # a Python branch on the step, or no schedule at all
        problem = f"{type(error).__name__}: {error}"
    if problem is None and seen:
        value = seen[0]
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
            return int(value)
        problem = f"it returned {value!r}"
    raise ValueError(
        "optax.MultiSteps needs a constant int every_k_schedule for lr_find (the LR advances "
        f"once per real update of k micro-batches), but {problem}; pass an int, "
        "e.g. optax.MultiSteps(tx, every_k_schedule=4), or use accumulation_steps=4"
    )


@functools.lru_cache(maxsize=64)
def _inject_factory(factory: Callable[[Any], Any]) -> Any:
    """``factory`` wrapped in ``inject_hyperparams``; cached so that passing the same
    factory again reuses the compiled sweep. Hyperparameters are stored in float32
    whatever the params' dtype. The base LR 1.0 is overwritten before the first
    update; it only fixes the (single) group's ratio at 1."""
    inject = optax.inject_hyperparams(
        lambda learning_rate: factory(learning_rate), hyperparam_dtype=jnp.float32
    )
    return inject(learning_rate=1.0)


@functools.lru_cache(maxsize=64)
def _accumulate(transformation: Any, steps: int) -> optax.MultiSteps:
    """``transformation`` in ``optax.MultiSteps`` (cached for the same reason)."""
    return optax.MultiSteps(transformation, every_k_schedule=steps)


def _cached(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except TypeError:  # unhashable: build it afresh (the sweep recompiles)
        return function.__wrapped__(*args)  # type: ignore[attr-defined]


def prepare_optimizer(optimizer: Any, accumulation_steps: int | None) -> PreparedOptimizer:
    """Resolve ``optimizer`` (a transformation or a factory) and the accumulation.

    Args:
      optimizer: an optax ``GradientTransformation`` whose learning rate is injected
        (``optax.inject_hyperparams``), an ``optax.MultiSteps`` around one, or a
        factory ``lr -> GradientTransformation`` (wrapped by lrfind).
      accumulation_steps: micro-batches per real update for a plain optimizer
        (lrfind wraps it in ``optax.MultiSteps``); None to take it from a
        ``MultiSteps`` optimizer (or 1).
    """
    from_factory = False
    if _is_transformation(optimizer):
        transformation = optimizer
    elif callable(optimizer):
        from_factory = True
        try:
            probe = optimizer(1e-3)
        except Exception as error:
            raise TypeError(
                "optimizer is callable, so lrfind treats it as a factory lr -> "
                f"GradientTransformation, but optimizer(1e-3) raised {type(error).__name__}: "
                f"{error}"
            ) from error
        if not _is_transformation(probe):
            raise TypeError(
                "an optimizer factory must return an optax GradientTransformation, "
                f"got {type(probe).__name__}"
            )
        transformation = _cached(_inject_factory, optimizer)
    else:
        raise TypeError(
            "optimizer must be an optax GradientTransformation or a factory "
            f"lr -> GradientTransformation, got {type(optimizer).__name__}"
        )
    multi_steps = _multi_steps_of(transformation)
    if multi_steps is not None:
        every_k = constant_every_k(multi_steps)
        if accumulation_steps is not None and accumulation_steps != every_k:
            raise ValueError(
                f"accumulation_steps={accumulation_steps} but the optimizer is an "
                f"optax.MultiSteps with every_k_schedule={every_k}; pass one of them"
            )
        return PreparedOptimizer(multi_steps, every_k, from_factory)
    if accumulation_steps is None or accumulation_steps == 1:
        return PreparedOptimizer(transformation, 1, from_factory)
    wrapped = _cached(_accumulate, transformation, accumulation_steps)
    return PreparedOptimizer(wrapped, accumulation_steps, from_factory)


@functools.lru_cache(maxsize=64)
def _compiled_init(init: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return jax.jit(init)


def _on_one_device(tree: Any) -> bool:
    for leaf in jax.tree_util.tree_leaves(tree):
        sharding = getattr(leaf, "sharding", None)
        if sharding is None or len(sharding.device_set) != 1:
            return False
    return True


def initial_opt_state(transformation: Any, params: Any) -> Any:
    """``transformation.init(params)`` in new buffers that the sweep may donate.

    Compiled (one dispatch instead of one per leaf; about 1 ms less per call for
    Adam on an MLP) when every param is a jax array on one device; eager
    otherwise, so sharded params get the sharding optax gives them. A leaf that
    is one of the ``params`` themselves (an optimizer that keeps a copy of the
    weights may return them as they are) is copied.
    """
    opt_state = None
    if _on_one_device(params):
        with contextlib.suppress(TypeError, jax.errors.JAXTypeError):
            # an unhashable init, or one that branches on a value in Python, runs eagerly
            opt_state = _compiled_init(transformation.init)(params)
    if opt_state is None:
        # eager: its leaves may be the user's own arrays (a hyperparameter given as an
        # array, a key, the params) or one array twice (lbfgs): all copied, since the
        # program may donate this state
        from lrfind_jax.sweep import fresh_copy

        return fresh_copy(transformation.init(params))
    param_ids = {id(leaf) for leaf in jax.tree_util.tree_leaves(params)}
    return jax.tree_util.tree_map(
        lambda leaf: jnp.array(leaf, copy=True) if id(leaf) in param_ids else leaf, opt_state
    )


def has_injected_lr(opt_state: Any) -> bool:
    """Whether ``opt_state`` (concrete or abstract, e.g. from ``jax.eval_shape``) holds
    an injected ``learning_rate`` anywhere."""
    nodes = jax.tree_util.tree_leaves(opt_state, is_leaf=_is_inject_state)
    return any(_is_inject_state(node) and LR_NAME in node.hyperparams for node in nodes)


def check_held_transformation(transformation: Any, params: Any, owner: str, fix: str) -> None:
    """A transformation taken from an object the user holds (``owner``: an
    ``nnx.Optimizer``'s or a ``TrainState``'s ``tx``) has an injected learning rate.

    Its state is traced (``jax.eval_shape``, nothing computed); without one, a
    ValueError says how to build it or, in ``fix``, what to pass instead. A
    transformation that is a plain function's result (``optax.adam(1e-3)``) keeps
    its LR in a closure, where nothing can set it.
    """
    if not _is_transformation(transformation):
        raise TypeError(f"{owner} must be an optax GradientTransformation, got "
                        f"{type(transformation).__name__}")
    if not has_injected_lr(jax.eval_shape(transformation.init, params)):
        raise ValueError(
            f"{owner} has no injected learning rate, so lr_find cannot set it (optax keeps "
            "the LR of optax.adam(1e-3) in a closure). Build it as "
            "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3), or " + fix
        )


def find_lr_groups(opt_state: Any) -> tuple[LrGroup, ...]:
    """Every injected, settable learning rate in ``opt_state`` (a concrete state).

    Raises a ValueError when there is none, when one is driven by a schedule
    (optax would overwrite it every step), or when one is not a positive float.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=_is_inject_state)
    groups = []
    for index, (path, node) in enumerate(flat):
        if not _is_inject_state(node) or LR_NAME not in node.hyperparams:
            continue
        where = jax.tree_util.keystr(path) or "<root>"
        if LR_NAME in getattr(node, "hyperparams_states", {}):
            raise ValueError(
                f"the learning rate at opt_state{where} is driven by a schedule, which optax "
                "recomputes every step, so lr_find cannot set it; build the optimizer with a "
                "constant learning_rate (e.g. optax.inject_hyperparams(optax.adam)"
                "(learning_rate=1e-3)) or pass a factory lr -> GradientTransformation"
            )
        value = node.hyperparams[LR_NAME]
        dtype = np.dtype(getattr(value, "dtype", np.float64))
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(
                f"the learning rate at opt_state{where} has dtype {dtype}; give "
                "inject_hyperparams a float learning_rate (e.g. 1e-3, not 1)"
            )
        array = np.asarray(value, dtype=np.float64)
        if array.size != 1:
            raise ValueError(
                f"the learning rate at opt_state{where} has shape {array.shape}; "
                "lr_find sets scalar learning rates only"
            )
        base = float(array.reshape(()))
        if not np.isfinite(base) or base <= 0:
            raise ValueError(
                f"the learning rate at opt_state{where} is {base!r}; lr_find keeps each "
                "group's ratio to the first group's LR, so every LR must be finite and > 0"
            )
        groups.append(LrGroup(index, where, base, dtype, tuple(np.shape(value))))
    if not groups:
        raise ValueError(f"the optimizer has no injectable learning rate; {HOW_TO_INJECT}")
    return tuple(groups)


LOW_PRECISION = (jnp.bfloat16, jnp.float16)


def low_precision_hyperparams(opt_state: Any) -> list[str]:
    """Injected hyperparameters other than the LR stored in bfloat16/float16, as
    readable ``opt_state<path>.hyperparams['name'] = value (dtype)`` lines.

    ``optax.inject_hyperparams`` stores hyperparameters in the params' dtype by
    default: with bfloat16 params Adam's ``b2=0.999`` becomes exactly 1.0 and
    the first update divides by zero.
    """
    found = []
    flat, _ = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=_is_inject_state)
    for path, node in flat:
        if not _is_inject_state(node):
            continue
        where = jax.tree_util.keystr(path) or ""
        for name, value in node.hyperparams.items():
            dtype = getattr(value, "dtype", None)
            if name == LR_NAME:  # set by lr_find in its stored dtype, as documented
                continue
            if dtype is not None and any(dtype == low for low in LOW_PRECISION):
                shown = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
                found.append(f"opt_state{where}.hyperparams[{name!r}] = {shown:g} ({dtype})")
    return found


LR_FREE = {
    "ProdigyState": "Prodigy estimates the step size itself; its learning_rate is a multiplier "
    "of that estimate, best left near 1",
    "DAdaptAdamWState": "D-Adaptation estimates the step size itself; its learning_rate is a "
    "multiplier of that estimate, best left at 1",
    "DoGState": "DoG sets its own step size; it takes no learning rate to tune",
    "DoWGState": "DoWG sets its own step size; it takes no learning rate to tune",
    "MechanicState": "Mechanic tunes the scale of its base optimizer's updates itself",
    "COCOBState": "COCOB is learning-rate-free",
    "ScheduleFreeState": "a schedule-free optimizer evaluates at other params than it trains "
    "(optax.contrib.schedule_free_eval_params) and its learning_rate comes with its own "
    "warmup; tune it by training, not with a range test",
}
"""optax.contrib states of learning-rate-free optimizers, and what their LR means."""

SCALES_UPDATES = {
    "ScaleByScheduleState": "a schedule",
    "ReduceLROnPlateauState": "the factor of optax.contrib.reduce_on_plateau",
}
"""optax states of transformations that multiply the updates by a factor of their own,
and what the factor is."""

NOT_DRIVABLE = {
    "LookaheadState": "optax.lookahead updates fast and slow copies of the params "
    "(optax.LookaheadParams) and takes its gradients at params.fast, not at your params. "
    "Find the LR of its fast optimizer (pass the optimizer you give optax.lookahead) and "
    "wrap that in optax.lookahead for training",
}
"""optax states of transformations whose params are not the params lr_find trains."""


def _states(opt_state: Any) -> list[tuple[str, Any]]:
    """Every NamedTuple state node of ``opt_state`` with its path (leaves excluded)."""
    found: list[tuple[str, Any]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            found.append((path or "<root>", node))
            for name in node._fields:
                walk(getattr(node, name), f"{path}.{name}")
        elif isinstance(node, tuple | list):
            for index, item in enumerate(node):
                walk(item, f"{path}[{index}]")
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(item, f"{path}[{key!r}]")

    walk(opt_state, "")
    return found


def check_optimizer_kind(opt_state: Any) -> None:
    """Refuse optimizers where a swept LR means something else: a schedule or another
    factor that also scales the updates, a learning-rate-free or schedule-free
    optimizer, or one whose params are not the user's params.

    States are matched by class name within optax, so an optax without one of them
    (``optax.contrib`` is newer than the rest) is simply never matched.
    """
    for path, node in _states(opt_state):
        kind = type(node).__name__
        if not type(node).__module__.startswith("optax"):
            continue
        if kind in SCALES_UPDATES:
            raise ValueError(
                f"the optimizer also scales its updates by {SCALES_UPDATES[kind]} ({kind} at "
                f"opt_state{path}): the LR lr_find sets would be multiplied by it, so result.lrs "
                "would not be the LRs applied. Leave it out of the optimizer you pass "
                "(lr_find sets the LR itself; one_cycle_schedule(result, steps) builds a "
                "schedule for training)"
            )
        if kind in NOT_DRIVABLE:
            raise ValueError(
                f"lr_find cannot run this optimizer ({kind} at opt_state{path}): "
                f"{NOT_DRIVABLE[kind]}"
            )
        if kind in LR_FREE:
            raise ValueError(
                f"the optimizer is learning-rate-free ({kind} at opt_state{path}): "
                f"{LR_FREE[kind]}. A range test has no LR to find for it"
            )


def check_multi_steps_placement(opt_state: Any, prepared: PreparedOptimizer) -> None:
    """``optax.MultiSteps`` is only understood as the outermost transformation."""
    is_multi = lambda node: isinstance(node, optax.MultiStepsState)  # noqa: E731
    flat, _ = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=is_multi)
    for path, node in flat:
        if is_multi(node) and (path or not isinstance(prepared.transformation, optax.MultiSteps)):
            raise ValueError(
                f"found an optax.MultiStepsState at opt_state{jax.tree_util.keystr(path)}; "
                "lr_find supports gradient accumulation only with optax.MultiSteps as the "
                "outermost transformation (or accumulation_steps=k)"
            )


def lr_tables(schedule: np.ndarray, groups: tuple[LrGroup, ...]) -> tuple[np.ndarray, ...]:
    """Per group, the LR of every step (:func:`lrfind_core.schedules.group_learning_rates`,
    the same values the torch backend applies), cast to the group's dtype."""
    table = group_learning_rates(schedule, [group.base_lr for group in groups])
    return tuple(table[:, index].astype(group.dtype) for index, group in enumerate(groups))


def set_learning_rates(
    opt_state: Any, leaf_indices: tuple[int, ...], values: tuple[Any, ...]
) -> Any:
    """``opt_state`` with each group's ``learning_rate`` replaced by its value.

    Pure and traceable. ``leaf_indices`` are the groups' :attr:`LrGroup.leaf_index`.
    Each value is reshaped and cast to the stored hyperparameter's shape and dtype;
    nothing else in the state changes.
    """
    flat, treedef = jax.tree_util.tree_flatten(opt_state, is_leaf=_is_inject_state)
    for index, value in zip(leaf_indices, values, strict=True):
        node = flat[index]
        old = node.hyperparams[LR_NAME]
        hyperparams = dict(node.hyperparams)
        hyperparams[LR_NAME] = jnp.reshape(value, jnp.shape(old)).astype(jnp.result_type(old))
        flat[index] = node._replace(hyperparams=hyperparams)
    return jax.tree_util.tree_unflatten(treedef, flat)


__all__ = [
    "HOW_TO_INJECT",
    "LR_NAME",
    "LrGroup",
    "PreparedOptimizer",
    "check_held_transformation",
    "check_multi_steps_placement",
    "check_optimizer_kind",
    "constant_every_k",
    "find_lr_groups",
    "has_injected_lr",
    "initial_opt_state",
    "low_precision_hyperparams",
    "lr_tables",
    "prepare_optimizer",
    "set_learning_rates",
]
