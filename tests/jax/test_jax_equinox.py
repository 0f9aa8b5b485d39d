"""Equinox models through ``lr_find_equinox``: BatchNorm state, Dropout keys, restore."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from lrfind_jax_testing import ADAM, IN, OUT, QUIET, assert_tree_equal, host_copy, make_data

from lrfind_jax import JaxOptions, Settings, lr_find, lr_find_equinox

eqx = pytest.importorskip("equinox")

TINY = {"start_lr": 1e-8, "end_lr": 1e-7, "num_steps": 12,
        "settings": Settings(diverge_factor=1e9)}
SWEEP = {"start_lr": 1e-4, "end_lr": 1000.0, "num_steps": 40}


class Net(eqx.Module):
    """Linear, BatchNorm (its statistics in an ``eqx.nn.State``), Dropout, Linear."""

    dense1: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    dropout: eqx.nn.Dropout
    dense2: eqx.nn.Linear

    def __init__(self, key: jax.Array):
        key1, key2 = jax.random.split(key)
        self.dense1 = eqx.nn.Linear(IN, 32, key=key1)
        self.norm = eqx.nn.BatchNorm(32, axis_name="batch", mode="ema")
        self.dropout = eqx.nn.Dropout(0.5)
        self.dense2 = eqx.nn.Linear(32, OUT, key=key2)

    def __call__(self, x, state, key):
        hidden, state = self.norm(jax.nn.relu(self.dense1(x)), state)
        return self.dense2(self.dropout(hidden, key=key)), state


def state_loss(model, state, batch, key):
    """Mean cross-entropy over the batch (vmapped, one dropout key per example)."""
    inputs, labels = batch
    keys = None if key is None else jax.random.split(key, len(inputs))
    forward = jax.vmap(model, axis_name="batch", in_axes=(0, None, None if key is None else 0),
                       out_axes=(0, None))
    logits, state = forward(inputs, state, keys)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), state


class DropoutNet(eqx.Module):
    """Dropout on the inputs of a linear layer: no state, a key every step."""

    dropout: eqx.nn.Dropout
    dense: eqx.nn.Linear

    def __init__(self, key: jax.Array):
        self.dropout = eqx.nn.Dropout(0.3)
        self.dense = eqx.nn.Linear(IN, OUT, key=key)

    def __call__(self, x, key):
        return self.dense(self.dropout(x, key=key))


def key_loss(model, batch, key):
    inputs, labels = batch
    keys = None if key is None else jax.random.split(key, len(inputs))
    logits = jax.vmap(model, in_axes=(0, None if key is None else 0))(inputs, keys)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@pytest.fixture(scope="module")
def data():
    return make_data(SWEEP["num_steps"])


@pytest.fixture(scope="module")
def ones_data():
    """One batch repeated: with tiny LRs every loss change comes from the dropout mask."""
    inputs, labels = make_data(1, seed=9)
    return np.repeat(inputs, 12, axis=0), np.repeat(labels, 12, axis=0)


def arrays_of(model):
    """The model's arrays (for a bitwise comparison)."""
    return host_copy(eqx.filter(model, eqx.is_array))


def test_batch_norm_state_and_a_dropout_key_every_step(ones_data):
    model, state = eqx.nn.make_with_state(Net)(jax.random.key(0))
    before = arrays_of(model), host_copy(state)
    key = jax.random.key(3)
    result = lr_find_equinox(model, ADAM, ones_data, state_loss, state=state, rng=key,
                             options=QUIET, **TINY)
    assert len(np.unique(np.round(result.losses, 4))) == len(result.losses)
    # Step m's key is fold_in(rng, m): the first losses, recomputed eagerly.
    batch = (ones_data[0][0], ones_data[1][0])
    loss_with_key = eqx.filter_jit(lambda step_key: state_loss(model, state, batch, step_key)[0])
    recomputed = [float(loss_with_key(jax.random.fold_in(key, m))) for m in range(2)]
    np.testing.assert_allclose(result.losses[:2], recomputed, rtol=1e-5)
    again = lr_find_equinox(model, ADAM, ones_data, state_loss, state=state, rng=key,
                            options=QUIET, **TINY)
    np.testing.assert_array_equal(again.losses, result.losses)
    assert not again.meta["compiled"]
    assert_tree_equal(before[0], eqx.filter(model, eqx.is_array))
    assert_tree_equal(before[1], state)
    assert not model.norm.inference and not model.dropout.inference


def test_dropout_key_form_sweeps_and_validates_in_inference_mode(data):
    model = DropoutNet(jax.random.key(1))
    before = arrays_of(model)
    key = jax.random.key(4)
    result = lr_find_equinox(model, optax.adam, data, key_loss, rng=key, options=QUIET, **SWEEP)
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert np.argmin(result.smoothed_losses) > 0
    # The optimizer state equinox's own loops hold fits: init on eqx.filter(model, ...).
    opt_state = ADAM.init(eqx.filter(model, eqx.is_inexact_array))
    held = host_copy(opt_state)
    validated = lr_find_equinox(
        model, ADAM, data, key_loss, rng=key, val_data=data,
        settings=Settings(val_every=4, val_batches=2),
        options=JaxOptions(progress=False, opt_state=opt_state,
                           val_loss_fn=lambda model, batch: key_loss(model, batch, None)),
        **SWEEP)
    assert validated.meta["loss_kind"] == "validation"
    assert validated.stop_reason in ("diverged", "non-finite loss")
    assert_tree_equal(held, opt_state)
    assert_tree_equal(before, eqx.filter(model, eqx.is_array))


def test_bad_input_is_refused_before_anything_runs(ones_data):
    model, state = eqx.nn.make_with_state(Net)(jax.random.key(0))
    dropout_net = DropoutNet(jax.random.key(1))
    with pytest.raises(TypeError, match=r"params is an equinox Module with fields that are not "
                       r"float arrays: use lrfind_jax\.lr_find_equinox"):
        lr_find(dropout_net, ADAM, ones_data, key_loss)
    with pytest.raises(TypeError, match=r"model must be an equinox Module, got dict"):
        lr_find_equinox({"w": np.ones(3)}, ADAM, ones_data, key_loss)
    with pytest.raises(TypeError, match=r"with state=, lr_find_equinox calls loss_fn\(model, "
                       r"state, batch, key\) -> \(loss, new_state\), but key_loss\(model, batch, "
                       r"key\) does not take 4 arguments; it fits the form with rng= alone"):
        lr_find_equinox(model, ADAM, ones_data, key_loss, state=state, **TINY)
    with pytest.raises(TypeError, match=r"without state= or rng=, lr_find_equinox calls "
                       r"loss_fn\(model, batch\) -> loss.*the forms: "):
        lr_find_equinox(dropout_net, ADAM, ones_data, lambda a, b, c, d, e: 0.0, **TINY)
    with pytest.raises(TypeError, match=r"lr_find_equinox takes no model_state=: pass the "
                       r"eqx\.nn\.State as state="):
        lr_find_equinox(model, ADAM, ones_data, state_loss, model_state=state)
    with pytest.raises(ValueError, match=r"Dropout requires a key.*pass rng=jax\.random\.key\(0\) "
                       r"to lr_find_equinox"):
        lr_find_equinox(model, ADAM, ones_data, state_loss, state=state, **TINY)
    with pytest.raises(TypeError, match=r"got a tuple; a loss that returns the model's new state "
                       r"takes the form with state="):
        lr_find_equinox(model, ADAM, ones_data, lambda m, b, k: state_loss(m, state, b, k),
                        rng=jax.random.key(0), **TINY)


SEARCH = {"mode": "search", "training_steps": 60, "budget_steps": 150}


def split_key_loss(model, state, batch, key):
    """docs/jax.md's eqx_loss: it splits its key, so it cannot take key=None."""
    inputs, labels = batch
    forward = jax.vmap(model, axis_name="batch", in_axes=(0, None, 0), out_axes=(0, None))
    logits, state = forward(inputs, state, jax.random.split(key, len(inputs)))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), state


def test_validation_with_rng_needs_an_eval_loss_before_any_work():
    """With rng=, val_data or a search asks for val_loss_fn up front (the training loss
    would get key=None, which a loss that splits its key cannot take); given one, the
    search runs the documented model and loss."""
    model, state = eqx.nn.make_with_state(Net)(jax.random.key(0))
    before = arrays_of(model), host_copy(state)
    calls = []

    def counting(model, state, batch, key):
        calls.append(1)
        return split_key_loss(model, state, batch, key)

    data, val = make_data(60), make_data(4, seed=9)
    needs = (r"lr_find_equinox with rng= and val_data or mode='search' \(a search always "
             r"validates\) needs options=JaxOptions\(val_loss_fn=\.\.\.\): val_loss_fn\(model, "
             r"state, batch\) -> the loss in eval mode, without a key")
    key = jax.random.key(1)
    with pytest.raises(ValueError, match=needs):
        lr_find_equinox(model, ADAM, data, counting, state=state, rng=key, val_data=val, **TINY)
    with pytest.raises(ValueError, match=needs):
        lr_find_equinox(model, ADAM, data, counting, state=state, rng=key, **SEARCH)
    with pytest.raises(ValueError, match=r"needs options=JaxOptions\(val_loss_fn=\.\.\.\): "
                       r"val_loss_fn\(model, batch\) -> the loss in eval mode"):
        lr_find_equinox(DropoutNet(jax.random.key(1)), ADAM, data, key_loss, rng=key,
                        settings=Settings(mode="search", training_steps=60))
    assert not calls
    evaluate = JaxOptions(progress=False,
                          val_loss_fn=lambda model, state, batch: state_loss(model, state, batch,
                                                                             None)[0])
    result = lr_find_equinox(model, optax.adam, data, split_key_loss, state=state, rng=key,
                             val_data=val, options=evaluate, **SEARCH)
    assert np.all(np.isfinite(result.search.scores[result.search.rungs == 0][:3]))
    assert_tree_equal(before[0], eqx.filter(model, eqx.is_array))
    assert_tree_equal(before[1], state)


def test_a_loss_of_model_x_y_is_told_to_take_the_batch_whole(ones_data):
    """equinox's usual loss(model, x, y) is not told that it fits loss_fn(model, batch,
    key) (rng= would pass the key as y), but how to take the batch whole."""
    model = eqx.nn.MLP(IN, OUT, 8, 1, key=jax.random.key(0))
    calls = []

    def loss(model, x, y):
        calls.append(1)
        return optax.softmax_cross_entropy_with_integer_labels(jax.vmap(model)(x), y).mean()

    whole = r"lambda model, batch: loss\(model, \*batch\)"
    with pytest.raises(TypeError, match=r"without state= or rng=, lr_find_equinox calls "
                       r"loss_fn\(model, batch\) -> loss, but loss\(model, x, y\) seems to take "
                       r"the batch in two arguments.*loss_fn\(model, batch, key\) -> loss with "
                       r"rng= alone.*" + whole):
        lr_find_equinox(model, ADAM, ones_data, loss, **TINY)
    with pytest.raises(TypeError, match=r"with rng= alone, lr_find_equinox calls .*" + whole):
        lr_find_equinox(model, ADAM, ones_data, loss, rng=jax.random.key(0), **TINY)
    assert not calls
    result = lr_find_equinox(model, ADAM, ones_data, lambda model, batch: loss(model, *batch),
                             options=QUIET, **TINY)
    assert np.all(np.isfinite(result.losses))
