"""The runs' start state is copied into new buffers (the program may donate them)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from lrfind_jax_testing import QUIET, init_mlp, make_data, mlp_loss

from lrfind_jax import lr_find
from lrfind_jax.sweep import _on_one_device, fresh_copy


def _pointers(tree):
    return [leaf.unsafe_buffer_pointer() for leaf in jax.tree_util.tree_leaves(tree)]


def test_compiled_copy_makes_new_buffers_with_the_same_values_and_types():
    tree = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.zeros(4, jnp.bfloat16),
            "n": jnp.asarray(3), "weak": jnp.asarray(2.0)}  # a weakly typed scalar
    assert _on_one_device(tree)
    copied = fresh_copy(tree)
    assert set(_pointers(copied)).isdisjoint(_pointers(tree))
    for name, leaf in tree.items():
        assert copied[name].dtype == leaf.dtype, name
        assert copied[name].weak_type == leaf.weak_type, name
        np.testing.assert_array_equal(np.asarray(copied[name]), np.asarray(leaf))
    # the originals stay valid after the copies are deleted (as a donation would)
    for leaf in jax.tree_util.tree_leaves(copied):
        leaf.delete()
    assert float(tree["w"].sum()) == 66.0


def test_trees_with_keys_or_host_values_are_copied_by_transfer():
    key = jax.random.key(0)
    tree = {"key": key, "w": jnp.ones(3)}
    assert not _on_one_device(tree)
    assert not _on_one_device({"w": np.ones(3)})
    assert not _on_one_device({})
    copied = fresh_copy(tree)
    assert copied["w"].unsafe_buffer_pointer() != tree["w"].unsafe_buffer_pointer()
    assert jax.random.key_data(copied["key"]).tolist() == jax.random.key_data(key).tolist()
    host = fresh_copy({"w": np.ones(3, np.float32)})
    assert isinstance(host["w"], jax.Array) and host["w"].dtype == np.float32


def test_arrays_of_the_user_in_an_eagerly_made_optimizer_state_are_never_donated():
    # numpy params: the optimizer's init runs eagerly; its state keeps the user's own
    # hyperparameter arrays as they are, which the program must not donate
    learning_rate, weight_decay = jnp.float32(1e-3), jnp.float32(1e-4)
    optimizer = optax.inject_hyperparams(optax.adamw)(learning_rate=learning_rate,
                                                       weight_decay=weight_decay)
    params = jax.tree_util.tree_map(np.asarray, init_mlp(0))
    data = make_data(12)
    first = lr_find(params, optimizer, data, mlp_loss, num_steps=12, options=QUIET)
    assert not learning_rate.is_deleted() and not weight_decay.is_deleted()
    assert float(learning_rate) == np.float32(1e-3)
    second = lr_find(params, optimizer, data, mlp_loss, num_steps=12, options=QUIET)
    np.testing.assert_array_equal(first.losses, second.losses)


def test_an_eager_state_holding_one_array_twice_is_not_donated_twice():
    params = jax.tree_util.tree_map(np.asarray, init_mlp(0))  # lbfgs's init reuses one array
    result = lr_find(params, optax.lbfgs, make_data(12), mlp_loss, num_steps=12,
                     options=QUIET)
    assert result.meta["steps_trained"] >= 1
