"""Shared pieces of the JAX backend tests: a tiny MLP, its data, tree comparisons.

The functions and the optimizer are module-level objects on purpose: tests that
pass the same ones with the same shapes share one compiled sweep.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrfind_jax import JaxOptions

IN, HIDDEN, OUT, BATCH = 8, 32, 3, 16
ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
SGD = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2)
QUIET = JaxOptions(progress=False)
"""No progress bar: stacked data runs in a single compiled call."""


def init_mlp(seed: int = 0, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """An IN-HIDDEN-OUT relu MLP."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "w1": (jax.random.normal(k1, (IN, HIDDEN)) * 0.5).astype(dtype),
        "b1": jnp.zeros(HIDDEN, dtype),
        "w2": (jax.random.normal(k2, (HIDDEN, OUT)) * 0.5).astype(dtype),
        "b2": jnp.zeros(OUT, dtype),
    }


def mlp_logits(params: dict[str, jax.Array], inputs: jax.Array) -> jax.Array:
    """The MLP's forward pass."""
    hidden = jax.nn.relu(inputs @ params["w1"] + params["b1"])
    return hidden @ params["w2"] + params["b2"]


def mlp_loss(params: dict[str, jax.Array], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Mean cross-entropy on an (inputs, labels) batch."""
    inputs, labels = batch
    logits = mlp_logits(params, inputs.astype(params["w1"].dtype))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_data(num_batches: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stacked (inputs [n, BATCH, IN] float32, labels [n, BATCH] int32), learnable."""
    rng = np.random.default_rng(seed)
    teacher = np.random.default_rng(1234).normal(size=(IN, OUT))
    inputs = rng.normal(size=(num_batches, BATCH, IN)).astype(np.float32)
    labels = (inputs @ teacher).argmax(-1).astype(np.int32)
    return inputs, labels


def as_batches(data: tuple[np.ndarray, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stacked data as a list of per-step batches."""
    inputs, labels = data
    return [(inputs[i], labels[i]) for i in range(len(inputs))]


def host_copy(tree: Any) -> Any:
    """numpy copies of every leaf (PRNG keys as their key data)."""

    def copy(leaf: Any) -> np.ndarray:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        return np.array(leaf, copy=True)

    return jax.tree_util.tree_map(copy, tree)


def assert_tree_equal(before: Any, after: Any) -> None:
    """Same structure and bitwise-equal leaves; no jax array deleted."""
    for leaf in jax.tree_util.tree_leaves(after):
        if isinstance(leaf, jax.Array):
            assert not leaf.is_deleted()
    flat_before, def_before = jax.tree_util.tree_flatten(before)
    flat_after, def_after = jax.tree_util.tree_flatten(host_copy(after))
    assert def_before == def_after
    for a, b in zip(flat_before, flat_after, strict=True):
        np.testing.assert_array_equal(a, b)


def patch_monitor(monkeypatch: Any, decide: Any) -> None:
    """Replace the in-loop monitor's stop code by ``decide(count, code)``."""
    import lrfind_jax.sweep

    original = lrfind_jax.sweep.monitor_update

    def patched(state: Any, loss: Any, settings: Any, xp: Any) -> Any:
        new_state, smoothed, code = original(state, loss, settings, xp)
        return new_state, smoothed, decide(state.ewa.count, code)

    monkeypatch.setattr(lrfind_jax.sweep, "monitor_update", patched)
