"""Flax nnx and linen models with BatchNorm and Dropout."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from lrfind_jax_testing import ADAM, IN, OUT, QUIET, assert_tree_equal, host_copy, make_data

from lrfind_jax import JaxOptions, Settings, lr_find_linen, lr_find_nnx
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


def test_nnx_rejects_an_nnx_optimizer(data):
    model = NnxNet(0.2, nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"not the nnx.Optimizer"):
        lr_find_nnx(model, nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param), data,
                    nnx_loss)
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
    with pytest.raises(TypeError, match="lr_find_nnx takes no rng="):
        lr_find_nnx(model, ADAM, data, nnx_loss, rng=jax.random.key(0))


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
    with pytest.raises(ValueError, match=r"lr_find_linen with val_data needs "
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
