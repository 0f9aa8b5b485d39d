"""Flax nnx and linen models with BatchNorm and Dropout; call-time RNGs, an
``nnx.Optimizer`` and a ``TrainState``."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state
from lrfind_jax_testing import (
    ADAM,
    IN,
    OUT,
    QUIET,
    assert_tree_equal,
    host_copy,
    make_data,
    mlp_loss,
)

from lrfind_jax import (
    JaxOptions,
    Settings,
    lr_find,
    lr_find_linen,
    lr_find_nnx,
    lr_find_train_state,
)
from lrfind_jax.flax_adapters import LinenLoss, NnxLoss

STEPS = 40
SWEEP = {"start_lr": 1e-4, "end_lr": 1000.0, "num_steps": STEPS}
TINY = {"start_lr": 1e-8, "end_lr": 1e-7, "num_steps": 12,
        "settings": Settings(diverge_factor=1e9)}


class NnxNet(nnx.Module):
    def __init__(self, rate: float, rngs: nnx.Rngs):
        self.dense1 = nnx.Linear(IN, 32, rngs=rngs)
        self.norm = nnx.BatchNorm(32, rngs=rngs)
        self.dropout = nnx.Dropout(rate, rngs=rngs)
        self.dense2 = nnx.Linear(32, OUT, rngs=rngs)

    def __call__(self, x):
        return self.dense2(self.dropout(nnx.relu(self.norm(self.dense1(x)))))


def nnx_loss(model, batch):
    inputs, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(inputs), labels).mean()


class LinenNet(nn.Module):
    rate: float = 0.3

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(32)(x)))
        x = nn.Dropout(self.rate, deterministic=not train)(x)
        return nn.Dense(OUT)(x)


def linen_loss(apply, batch):
    inputs, labels = batch
    logits = apply(inputs, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@pytest.fixture(scope="module")
def data():
    return make_data(STEPS)


@pytest.fixture(scope="module")
def ones_data():
    """One batch repeated: with tiny LRs every loss change comes from the dropout mask."""
    inputs, labels = make_data(1, seed=9)
    return np.repeat(inputs, 12, axis=0), np.repeat(labels, 12, axis=0)


def test_nnx_sweep_leaves_the_module_untouched(data):
    model = NnxNet(0.2, nnx.Rngs(0))
    model.eval()  # the sweep still trains (train_mode=True) without changing this
    before = host_copy(nnx.state(model))
    result = lr_find_nnx(model, ADAM, data, nnx_loss, options=QUIET, **SWEEP)
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert np.argmin(result.smoothed_losses) > 0
    assert_tree_equal(before, nnx.state(model))  # params, BatchStat, RNG key and count
    assert model.dropout.deterministic and model.norm.use_running_average
    again = lr_find_nnx(model, ADAM, data, nnx_loss,
                        options=JaxOptions(progress=True, chunk_size=9), **SWEEP)
    np.testing.assert_array_equal(again.losses, result.losses)
    assert not again.meta["compiled"]


def test_nnx_dropout_mask_changes_every_step(ones_data):
    model = NnxNet(0.5, nnx.Rngs(1))
    model.eval()
    result = lr_find_nnx(model, ADAM, ones_data, nnx_loss, options=QUIET, **TINY)
    assert len(np.unique(np.round(result.losses, 4))) == len(result.losses)
    # train_mode=False runs the module as configured: here in eval mode, no dropout.
    as_is = lr_find_nnx(model, ADAM, ones_data, nnx_loss,
                        options=JaxOptions(train_mode=False, progress=False), **TINY)
    np.testing.assert_allclose(as_is.losses, as_is.losses[0], rtol=1e-5)


def test_nnx_loss_updates_batch_stats_and_rng_counts(data):
    model = NnxNet(0.5, nnx.Rngs(2))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss, new_rest = jax.jit(NnxLoss(graphdef, nnx_loss, nnx.Param))(
        params, rest, (data[0][0], data[1][0]), None)
    assert loss.shape == ()
    assert not np.allclose(new_rest["norm"]["mean"][...], rest["norm"]["mean"][...])
    assert int(new_rest["dropout"]["rngs"]["count"][...]) == int(
        rest["dropout"]["rngs"]["count"][...]) + 1


def test_nnx_refuses_what_is_not_a_module(data):
    with pytest.raises(TypeError, match=r"model must be a flax nnx.Module"):
        lr_find_nnx({"w": jnp.ones(3)}, ADAM, data, nnx_loss)


@pytest.fixture(scope="module")
def linen_setup():
    module = LinenNet(0.3)
    variables = module.init(jax.random.key(0), jnp.ones((2, IN)), train=False)
    return module, variables


def test_linen_sweep_leaves_the_variables_untouched(linen_setup, data):
    module, variables = linen_setup
    before = host_copy(variables)
    result = lr_find_linen(module.apply, variables, ADAM, data, linen_loss,
                           rng=jax.random.key(1), options=QUIET, **SWEEP)
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert np.argmin(result.smoothed_losses) > 0
    assert_tree_equal(before, variables)
    again = lr_find_linen(module.apply, variables, ADAM, data, linen_loss,
                          rng=jax.random.key(1), options=QUIET, **SWEEP)
    np.testing.assert_array_equal(again.losses, result.losses)
    assert not again.meta["compiled"]
    other_seed = lr_find_linen(module.apply, variables, ADAM, data, linen_loss,
                               rng=jax.random.key(2), options=QUIET, **SWEEP)
    assert not np.array_equal(other_seed.losses, result.losses)


def test_linen_dropout_key_changes_every_step(ones_data):
    module = LinenNet(0.5)
    variables = module.init(jax.random.key(0), jnp.ones((2, IN)), train=False)
    result = lr_find_linen(module, variables, ADAM, ones_data, linen_loss,
                           rng=jax.random.key(4), options=QUIET, **TINY)
    assert len(np.unique(np.round(result.losses, 4))) == len(result.losses)


def test_linen_loss_updates_batch_stats(linen_setup, data):
    module, variables = linen_setup
    state = {"batch_stats": variables["batch_stats"]}
    loss_fn = LinenLoss(module.apply, linen_loss, ("batch_stats",), ("dropout",))
    loss, new_state = jax.jit(loss_fn)(variables["params"], state,
                                       (data[0][0], data[1][0]), jax.random.key(0))
    assert loss.shape == () and set(new_state) == {"batch_stats"}
    old_mean = variables["batch_stats"]["BatchNorm_0"]["mean"]
    assert not np.allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"], old_mean)


def test_linen_without_rng_for_dropout_fails_clearly(linen_setup, data):
    module, variables = linen_setup
    with pytest.raises(ValueError, match=r"needs PRNG for \"dropout\".*pass rng=jax\.random"):
        lr_find_linen(module.apply, variables, ADAM, data, linen_loss, **SWEEP)


def test_nnx_wrt_selects_what_is_trained(data):
    model = NnxNet(0.0, nnx.Rngs(3))
    sweep = {"start_lr": 1e-2, "end_lr": 1.0, "num_steps": 8,
             "settings": Settings(diverge_factor=1e9), "options": QUIET}
    everything = lr_find_nnx(model, ADAM, data, nnx_loss, **sweep)
    head_only = nnx.All(nnx.Param, nnx.PathContains("dense2"))
    head = lr_find_nnx(model, ADAM, data, nnx_loss, wrt=head_only, **sweep)
    assert head.losses[0] == everything.losses[0]  # same model, same first batch
    assert not np.allclose(head.losses[1:], everything.losses[1:], rtol=1e-4)
    with pytest.raises(TypeError, match="lr_find_nnx takes no model_state="):
        lr_find_nnx(model, ADAM, data, nnx_loss, model_state={})


class LinenPlain(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dropout(0.5, deterministic=not train)(nn.relu(nn.Dense(16)(x)))
        return nn.Dense(OUT)(x)


def test_linen_without_mutable_collections(data):
    module = LinenPlain()
    variables = module.init(jax.random.key(0), jnp.ones((2, IN)), train=False)
    assert set(variables) == {"params"}
    before = host_copy(variables)
    result = lr_find_linen(module, variables, ADAM, data, linen_loss, rng=jax.random.key(1),
                           options=QUIET, **SWEEP)
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert_tree_equal(before, variables)


def test_linen_argument_errors(linen_setup, data):
    module, variables = linen_setup
    with pytest.raises(ValueError, match="variables must be a dict with a 'params' collection"):
        lr_find_linen(module, {"batch_stats": variables["batch_stats"]}, ADAM, data, linen_loss)
    with pytest.raises(TypeError, match="mutable and rng_streams must be sequences"):
        lr_find_linen(module, variables, ADAM, data, linen_loss, mutable="batch_stats")
    with pytest.raises(TypeError, match="takes no model_state="):
        lr_find_linen(module, variables, ADAM, data, linen_loss, model_state={})


def test_nnx_validation_points_run_the_module_in_eval_mode(ones_data):
    """Without val_loss_fn the points are loss_fn on the module as after model.eval():
    no dropout, so with LRs too small to move the params they stay put while the
    training losses jump with every dropout mask."""
    model = NnxNet(0.5, nnx.Rngs(5))
    model.train()
    before = host_copy(nnx.state(model))
    frozen = Settings(val_every=2, val_batches=3, diverge_factor=1e9)
    result = lr_find_nnx(model, ADAM, ones_data, nnx_loss, val_data=ones_data, settings=frozen,
                         options=QUIET, start_lr=1e-8, end_lr=1e-7, num_steps=12)
    assert result.meta["loss_kind"] == "validation" and result.meta["val_every"] == 2
    assert len(result.losses) == result.planned_points == 6
    assert_tree_equal(before, nnx.state(model))
    assert not model.dropout.deterministic  # as the user left it
    trained = lr_find_nnx(model, ADAM, ones_data, nnx_loss, options=QUIET, **TINY)
    spread = np.ptp(trained.losses)
    assert spread > 1e-3
    # BatchNorm statistics still move in the training steps: a small, smooth drift.
    assert np.ptp(result.losses) < spread / 10
    assert np.all(np.diff(result.losses) < 0)


def test_linen_validation_needs_an_eval_loss(linen_setup, data):
    module, variables = linen_setup
    with pytest.raises(ValueError, match=r"lr_find_linen with val_data or mode='search' needs "
                       r"options=JaxOptions\(val_loss_fn=\.\.\.\)"):
        lr_find_linen(module.apply, variables, ADAM, data, linen_loss, rng=jax.random.key(1),
                      val_data=data, **SWEEP)

    def eval_loss(apply, batch):
        inputs, labels = batch
        return optax.softmax_cross_entropy_with_integer_labels(
            apply(inputs, train=False), labels).mean()

    result = lr_find_linen(module.apply, variables, ADAM, data, linen_loss,
                           rng=jax.random.key(1), val_data=data,
                           settings=Settings(val_every=4, val_batches=2),
                           options=JaxOptions(progress=False, val_loss_fn=eval_loss), **SWEEP)
    assert result.meta["loss_kind"] == "validation"
    assert result.planned_points == STEPS // 4 and result.stop_reason in (
        "diverged", "non-finite loss")


def test_a_linen_search_without_val_data_validates_with_the_eval_loss(linen_setup):
    module, variables = linen_setup
    inputs, labels = make_data(60, seed=3)
    search = {"mode": "search", "training_steps": 60, "budget_steps": 150}
    with pytest.raises(ValueError, match=r"with val_data or mode='search' needs "
                       r"options=JaxOptions\(val_loss_fn"):
        lr_find_linen(module.apply, variables, ADAM, (inputs, labels), linen_loss,
                      rng=jax.random.key(1), **search)
    calls = []

    def eval_loss(apply, batch):
        calls.append(1)
        return optax.softmax_cross_entropy_with_integer_labels(
            apply(batch[0], train=False), batch[1]).mean()

    with pytest.warns(UserWarning, match="no val_data: the search holds out"):
        result = lr_find_linen(module.apply, variables, ADAM, (inputs, labels), linen_loss,
                               rng=jax.random.key(1),
                               options=JaxOptions(progress=False, val_loss_fn=eval_loss),
                               **search)
    assert calls  # traced into the candidates' validation
    assert np.isfinite(result.search.lr) and result.search.held_out_batches > 0


class CallRngsNet(nnx.Module):
    """Flax's MNIST-tutorial pattern on an MLP: the dropout RNGs come at call time."""

    def __init__(self, rngs: nnx.Rngs):
        self.dense1 = nnx.Linear(IN, 32, rngs=rngs)
        self.norm = nnx.BatchNorm(32, rngs=rngs)
        self.dropout = nnx.Dropout(0.5)
        self.dense2 = nnx.Linear(32, OUT, rngs=rngs)

    def __call__(self, x, rngs: nnx.Rngs | None = None):
        return self.dense2(self.dropout(nnx.relu(self.norm(self.dense1(x))), rngs=rngs))


def call_rngs_loss(model, batch, rngs):
    inputs, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(inputs, rngs), labels).mean()


def tutorial_loss(model, rngs, batch):
    """The MNIST tutorial's loss: (model, rngs, batch) -> (loss, logits), for has_aux."""
    logits = model(batch[0], rngs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), logits


def test_nnx_call_time_rngs_give_each_step_its_own_mask(ones_data):
    """With LRs too small to move the params, the losses of one repeated batch differ
    only by the dropout mask: each step's, recomputed eagerly from the documented key
    ``nnx.Rngs(fold_in(rng, m))``, matches; the same key gives the same losses."""
    model = CallRngsNet(nnx.Rngs(0))
    before = host_copy(nnx.state(model))
    key = jax.random.key(7)
    result = lr_find_nnx(model, ADAM, ones_data, call_rngs_loss, rng=key, options=QUIET, **TINY)
    assert len(np.unique(np.round(result.losses, 4))) == len(result.losses)
    twin = nnx.clone(model)
    twin.train()
    batch = (ones_data[0][0], ones_data[1][0])
    loss_with_key = nnx.jit(lambda module, step_key: call_rngs_loss(module, batch,
                                                                     nnx.Rngs(step_key)))
    recomputed = [float(loss_with_key(twin, jax.random.fold_in(key, m))) for m in range(3)]
    np.testing.assert_allclose(result.losses[:3], recomputed, rtol=1e-5)
    again = lr_find_nnx(model, ADAM, ones_data, call_rngs_loss, rng=key, options=QUIET, **TINY)
    np.testing.assert_array_equal(again.losses, result.losses)
    assert not again.meta["compiled"]
    other = lr_find_nnx(model, ADAM, ones_data, call_rngs_loss, rng=jax.random.key(8),
                        options=QUIET, **TINY)
    assert not np.array_equal(other.losses, result.losses)
    assert_tree_equal(before, nnx.state(model))
    # Validation points call loss_fn(module, batch, None) on the module in eval mode.
    frozen = Settings(val_every=2, val_batches=3, diverge_factor=1e9)
    validated = lr_find_nnx(model, ADAM, ones_data, call_rngs_loss, rng=key, val_data=ones_data,
                            settings=frozen, options=QUIET, start_lr=1e-8, end_lr=1e-7,
                            num_steps=12)
    assert validated.meta["loss_kind"] == "validation"
    assert np.ptp(validated.losses) < np.ptp(result.losses) / 10


def test_nnx_call_time_rngs_bad_input(ones_data):
    model = CallRngsNet(nnx.Rngs(0))
    before = host_copy(nnx.state(model))
    key = jax.random.key(0)
    with pytest.raises(TypeError, match=r"without rng=, lr_find_nnx calls loss_fn\(module, "
                       r"batch\) -> loss, but call_rngs_loss\(model, batch, rngs\) does not take "
                       r"2 arguments; it fits the form with rng=: loss_fn\(module, batch, rngs\)"):
        lr_find_nnx(model, ADAM, ones_data, call_rngs_loss, **TINY)
    with pytest.raises(TypeError, match=r"with rng=, lr_find_nnx calls loss_fn\(module, batch, "
                       r"rngs\).*does not take 3 arguments"):
        lr_find_nnx(model, ADAM, ones_data, nnx_loss, rng=key, **TINY)
    with pytest.raises(ValueError, match=r"no `rngs` argument was provided.*If the model takes "
                       r"its RNGs at call time, pass rng=jax\.random\.key\(0\)"):
        lr_find_nnx(model, ADAM, ones_data, lambda module, batch: call_rngs_loss(module, batch,
                                                                                 None), **TINY)
    outer = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"loss_fn changed an nnx object made outside lr_find.*"
                       r"Pass rng=jax\.random\.key\(0\)"):
        lr_find_nnx(model, ADAM, ones_data, lambda module, batch: call_rngs_loss(module, batch,
                                                                                 outer), **TINY)
    with pytest.raises(TypeError, match=r"must return the scalar loss, got a tuple; a loss "
                       r"written for nnx\.value_and_grad"):
        lr_find_nnx(model, ADAM, ones_data, lambda module, batch, rngs: tutorial_loss(
            module, rngs, batch), rng=key, **TINY)
    keys_in_data = (ones_data[0], jax.random.split(key, len(ones_data[0])))
    with pytest.raises(TypeError, match=r"train_data.* holds PRNG keys.*pass rng=jax\.random"):
        lr_find_nnx(model, ADAM, keys_in_data, nnx_loss, **TINY)
    assert_tree_equal(before, nnx.state(model))
    # The fix the tuple message gives runs: the tutorial's loss, its loss only.
    result = lr_find_nnx(model, ADAM, ones_data,
                         lambda module, batch, rngs: tutorial_loss(module, rngs, batch)[0],
                         rng=key, options=QUIET, **TINY)
    assert np.all(np.isfinite(result.losses))


def test_nnx_optimizer_gives_its_tx_and_is_never_changed(data):
    model = CallRngsNet(nnx.Rngs(1))
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    # A state unlike a fresh one, as mid-training: moments and a step count.
    optimizer.step[...] = 3
    for moment in (optimizer.opt_state.inner_state[0].mu, optimizer.opt_state.inner_state[0].nu):
        for variable in jax.tree_util.tree_leaves(moment, is_leaf=lambda x: isinstance(
                x, nnx.Variable)):
            variable[...] = variable[...] + 0.5
    held = host_copy(nnx.state(optimizer)), host_copy(nnx.state(model))
    key = jax.random.key(2)
    result = lr_find_nnx(model, optimizer, data, call_rngs_loss, rng=key, options=QUIET,
                         **SWEEP)
    assert result.stop_reason in ("diverged", "non-finite loss")
    # Its tx, from a fresh state (as a new nnx.Optimizer holds): the same sweep.
    from_tx = lr_find_nnx(model, tx, data, call_rngs_loss, rng=key, options=QUIET, **SWEEP)
    np.testing.assert_array_equal(from_tx.losses, result.losses)
    assert_tree_equal(held[0], nnx.state(optimizer))
    assert_tree_equal(held[1], nnx.state(model))

    def failing_batches():
        for step in range(15):
            yield data[0][step], data[1][step]
        raise RuntimeError("the data source failed")

    with pytest.raises(RuntimeError, match="the data source failed"):
        lr_find_nnx(model, optimizer, failing_batches(), call_rngs_loss, rng=key,
                    options=JaxOptions(progress=False, chunk_size=5), **SWEEP)
    assert_tree_equal(held[0], nnx.state(optimizer))
    assert_tree_equal(held[1], nnx.state(model))


def test_nnx_optimizer_bad_input(data):
    model = CallRngsNet(nnx.Rngs(1))
    fixed_lr = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    with pytest.raises(ValueError, match=r"the nnx\.Optimizer's tx has no injected learning "
                       r"rate.*pass the optax factory instead"):
        lr_find_nnx(model, fixed_lr, data, nnx_loss)
    other_model = nnx.Optimizer(nnx.Linear(IN, OUT, rngs=nnx.Rngs(0)), ADAM, wrt=nnx.Param)
    with pytest.raises(ValueError, match=r"the nnx\.Optimizer's state .* does not match .*built "
                       r"for another model"):
        lr_find_nnx(model, other_model, data, call_rngs_loss, rng=jax.random.key(0))
    scheduled = nnx.Optimizer(model, optax.inject_hyperparams(optax.adam)(
        learning_rate=optax.linear_schedule(1e-3, 1e-4, 10)), wrt=nnx.Param)
    with pytest.raises(ValueError, match=r"driven by a schedule"):
        lr_find_nnx(model, scheduled, data, call_rngs_loss, rng=jax.random.key(0))


class BatchStatsState(train_state.TrainState):
    batch_stats: Any


def train_state_loss(apply_fn, params, batch_stats, batch, key):
    """The usual TrainState train-step loss, with BatchNorm statistics and dropout."""
    inputs, labels = batch
    logits, updates = apply_fn({"params": params, "batch_stats": batch_stats}, inputs,
                               train=True, mutable=["batch_stats"], rngs={"dropout": key})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, updates["batch_stats"]


def test_train_state_with_batch_stats_and_dropout(linen_setup, ones_data):
    module, variables = linen_setup
    state = BatchStatsState.create(apply_fn=module.apply, params=variables["params"], tx=ADAM,
                                   batch_stats=variables["batch_stats"])
    before = host_copy(state)
    key = jax.random.key(5)
    result = lr_find_train_state(state, ones_data, train_state_loss,
                                 model_state=state.batch_stats, rng=key, options=QUIET, **TINY)
    assert len(np.unique(np.round(result.losses, 4))) == len(result.losses)
    batch = (ones_data[0][0], ones_data[1][0])
    recomputed = [float(train_state_loss(module.apply, state.params, state.batch_stats, batch,
                                         jax.random.fold_in(key, m))[0]) for m in range(2)]
    np.testing.assert_allclose(result.losses[:2], recomputed, rtol=1e-5)
    again = lr_find_train_state(state, ones_data, train_state_loss,
                                model_state=state.batch_stats, rng=key, options=QUIET, **TINY)
    np.testing.assert_array_equal(again.losses, result.losses)
    assert not again.meta["compiled"]
    assert_tree_equal(before, state)  # params, opt_state, step and batch_stats


def plain_loss(apply_fn, params, batch):
    inputs, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(
        apply_fn({"params": params}, inputs), labels).mean()


def test_train_state_tx_and_loss_form(data):
    module = nn.Dense(OUT)
    params = module.init(jax.random.key(0), jnp.ones((2, IN)))["params"]
    state = train_state.TrainState.create(apply_fn=module.apply, params=params,
                                          tx=optax.adam(1e-3))
    before = host_copy(state)
    with pytest.raises(ValueError, match=r"state\.tx has no injected learning rate.*"
                       r"optimizer=optax\.adam"):
        lr_find_train_state(state, data, plain_loss)
    result = lr_find_train_state(
        state, data, plain_loss, optimizer=optax.adam, val_data=data,
        settings=Settings(val_every=4, val_batches=2),
        options=JaxOptions(progress=False, val_loss_fn=plain_loss), **SWEEP)
    assert result.meta["loss_kind"] == "validation"
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert_tree_equal(before, state)
    with pytest.raises(TypeError, match=r"with model_state= or rng=, lr_find_train_state calls "
                       r"loss_fn\(apply_fn, params, model_state, batch, key\).*it fits the form "
                       r"without model_state= or rng="):
        lr_find_train_state(state, data, plain_loss, optimizer=optax.adam,
                            rng=jax.random.key(0))
    with pytest.raises(ValueError, match=r"lr_find_train_state: val_loss_fn\(apply_fn, params, "
                       r"model_state, batch\)"):
        lr_find_train_state(state, data, train_state_loss, optimizer=optax.adam,
                            model_state={}, val_data=data)
    with pytest.raises(TypeError, match=r"params is a Flax TrainState: use "
                       r"lrfind_jax\.lr_find_train_state"):
        lr_find(state, ADAM, data, mlp_loss)
    with pytest.raises(TypeError, match=r"state must be a flax TrainState \(apply_fn, params, "
                       r"tx\); dict has no apply_fn, params, tx"):
        lr_find_train_state({"params": params}, data, plain_loss)
    assert_tree_equal(before, state)


def test_importing_lrfind_jax_imports_no_model_library():
    """Flax and equinox are imported by the adapters that use them, never by the package."""
    code = ("import sys, lrfind_jax\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flax', 'equinox')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True)
    assert completed.stdout.strip() == "[]"


def test_lr_find_equinox_without_equinox_says_what_to_install(monkeypatch, data):
    from lrfind_jax import lr_find_equinox

    monkeypatch.setitem(sys.modules, "equinox", None)  # as if not installed
    with pytest.raises(ImportError, match=r"lr_find_equinox needs equinox, which is not "
                       r"installed: pip install 'lrfind\[equinox\]'"):
        lr_find_equinox(object(), ADAM, data, nnx_loss)


def test_nnx_tutorial_loss_with_rngs_second_is_refused_before_any_work(ones_data):
    """Flax's MNIST tutorial loss, (model, rngs, batch) -> (loss, logits), passed as it
    is: a TypeError showing the wrapper, before the loss is ever called (it was called
    with the batch as rngs and failed inside JAX). A loss that names its rngs otherwise
    gets the same hint when the sweep traces it."""
    model = CallRngsNet(nnx.Rngs(0))
    before = host_copy(nnx.state(model))
    calls = []

    def counting_tutorial_loss(model, rngs, batch):
        calls.append(1)
        return tutorial_loss(model, rngs, batch)

    wrapper = (r"lambda model, batch, rngs: counting_tutorial_loss\(model, rngs, batch\)\[0\] "
               r"\(without \[0\] if it returns the loss alone\), with rng=jax\.random\.key\(0\)")
    for rng in (jax.random.key(0), None):
        with pytest.raises(TypeError, match=r"loss_fn\(model, rngs, batch\) takes rngs second; "
                           r"lr_find_nnx calls loss_fn\(module, batch, rngs\) -> loss.*" + wrapper):
            lr_find_nnx(model, ADAM, ones_data, counting_tutorial_loss, rng=rng, **TINY)
    assert not calls
    assert_tree_equal(before, nnx.state(model))

    def renamed(model, r, batch):
        return tutorial_loss(model, r, batch)

    with pytest.raises(TypeError, match=r"loss_fn used the nnx\.Rngs it was given as an array.*"
                       r"lambda model, batch, rngs: renamed\(model, rngs, batch\)\[0\]"):
        lr_find_nnx(model, ADAM, ones_data, renamed, rng=jax.random.key(0), **TINY)
    assert_tree_equal(before, nnx.state(model))
