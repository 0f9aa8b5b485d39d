"""val_data in JAX: a validation curve, one point every val_every updates, each the
mean eval loss over the first val_batches batches, as the torch backend records it."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from lrfind_jax_testing import (
    ADAM,
    QUIET,
    as_batches,
    assert_tree_equal,
    host_copy,
    init_mlp,
    make_data,
    mlp_loss,
)

from lrfind_jax import JaxOptions, Settings, lr_find

STEPS, VAL_EVERY, VAL_BATCHES = 24, 3, 4
RANGE = {"start_lr": 1e-4, "end_lr": 1e-1, "num_steps": STEPS}
SETTINGS = Settings(val_every=VAL_EVERY, val_batches=VAL_BATCHES, diverge_factor=1e9)


@pytest.fixture(scope="module")
def params():
    return init_mlp(0)


@pytest.fixture(scope="module")
def data():
    return make_data(STEPS)


@pytest.fixture(scope="module")
def val_data():
    """More batches than val_batches: only the first VAL_BATCHES count."""
    return make_data(VAL_BATCHES + 2, seed=11)


@pytest.fixture(scope="module")
def validated(params, data, val_data):
    return lr_find(params, ADAM, data, mlp_loss, val_data=val_data, settings=SETTINGS,
                   options=QUIET, **RANGE)


@jax.jit
def hand_step(params, opt_state, batch, lr):
    """One Adam update at the LR ``lr``, as a user writes it."""
    opt_state.hyperparams["learning_rate"] = lr
    grads = jax.grad(mlp_loss)(params, batch)
    updates, opt_state = ADAM.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def test_the_curve_has_a_validation_point_every_val_every_updates(validated):
    meta = validated.meta
    assert meta["loss_kind"] == "validation" and meta["val_every"] == VAL_EVERY
    points = STEPS // VAL_EVERY
    assert validated.planned_points == points
    assert len(validated.losses) == len(validated.lrs) == points
    assert validated.stop_step is None and validated.stop_reason == "completed"
    # Point i follows update (i + 1) * val_every - 1: its LR is that update's.
    planned = Settings(**RANGE).learning_rates()
    np.testing.assert_array_equal(validated.lrs, planned[VAL_EVERY - 1 :: VAL_EVERY])
    assert meta["steps_trained"] == STEPS


def test_the_first_point_is_the_mean_validation_loss_after_val_every_updates(
    params, data, val_data, validated
):
    lrs = Settings(**RANGE).learning_rates()
    p, opt_state = params, ADAM.init(params)
    for step in range(VAL_EVERY):
        p, opt_state = hand_step(p, opt_state, (data[0][step], data[1][step]),
                                 np.float32(lrs[step]))
    losses = [float(mlp_loss(p, (val_data[0][j], val_data[1][j]))) for j in range(VAL_BATCHES)]
    assert validated.losses[0] == pytest.approx(np.mean(losses), rel=1e-5)
    # A mean over the first VAL_BATCHES batches, not over every validation batch.
    every = [float(mlp_loss(p, (val_data[0][j], val_data[1][j])))
             for j in range(len(val_data[0]))]
    assert validated.losses[0] != pytest.approx(np.mean(every), rel=1e-5)


def test_a_validation_curve_is_the_same_chunked_per_step_and_from_a_list(
    params, data, val_data, validated
):
    chunked = lr_find(params, ADAM, data, mlp_loss, val_data=val_data, settings=SETTINGS,
                      options=JaxOptions(progress=True, chunk_size=5), **RANGE)
    np.testing.assert_array_equal(chunked.losses, validated.losses)
    listed = lr_find(params, ADAM, as_batches(data), mlp_loss, val_data=as_batches(val_data),
                     settings=SETTINGS, options=JaxOptions(progress=False, chunk_size=8),
                     **RANGE)
    np.testing.assert_array_equal(listed.losses, validated.losses)
    stepped = lr_find(params, ADAM, data, mlp_loss, val_data=val_data, settings=SETTINGS,
                      options=JaxOptions(progress=False, execution="per_step"), **RANGE)
    assert stepped.meta["execution"] == "per_step"
    np.testing.assert_allclose(stepped.losses, validated.losses, rtol=1e-6)


def test_a_validation_curve_stops_on_its_points(params, data, val_data):
    before = host_copy(params)
    result = lr_find(params, ADAM, data, mlp_loss, val_data=val_data,
                     settings=Settings(val_every=2, val_batches=2), options=QUIET,
                     start_lr=1e-3, end_lr=100.0, num_steps=STEPS)
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert result.stop_step is not None and result.stop_step < STEPS // 2 - 1
    assert len(result.losses) == result.stop_step + 1
    # Nothing ran past the stop point's update (the monitor watches the points).
    assert result.meta["steps_trained"] == 2 * (result.stop_step + 1)
    assert_tree_equal(before, params)


def test_the_stateful_form_takes_an_eval_loss(params, data, val_data):
    def stateful(p, state, batch, key):
        return mlp_loss(p, batch), state

    def eval_loss(p, state, batch):
        return mlp_loss(p, batch)

    state = {"unused": np.zeros(())}
    with pytest.raises(ValueError, match=r"val_data, or mode='search'\) with model_state= or "
                       r"rng= needs options=JaxOptions\(val_loss_fn=\.\.\.\)"):
        lr_find(params, ADAM, data, stateful, model_state=state, val_data=val_data,
                settings=SETTINGS, **RANGE)
    with pytest.raises(ValueError, match=r"needs options=JaxOptions\(val_loss_fn="):
        lr_find(params, ADAM, data, stateful, rng=jax.random.key(0), val_data=val_data,
                settings=SETTINGS, **RANGE)
    plain = lr_find(params, ADAM, data, mlp_loss, val_data=val_data, settings=SETTINGS,
                    options=QUIET, **RANGE)
    given = lr_find(params, ADAM, data, stateful, model_state=state, val_data=val_data,
                    settings=SETTINGS, options=JaxOptions(progress=False, val_loss_fn=eval_loss),
                    **RANGE)
    assert given.meta["loss_kind"] == "validation"
    np.testing.assert_allclose(given.losses, plain.losses, rtol=1e-6)


@pytest.mark.parametrize("mode", ["sweep", "search"])
def test_a_validation_loss_that_ignores_its_params_is_refused(mode):
    # checked when the first program that validates is compiled: before any step of a
    # sweep with val_data; after the bracketing sweep (training loss) of a search
    from lrfind_jax_testing import init_mlp, make_data, mlp_loss

    params, outer = init_mlp(0), init_mlp(1)
    keywords = ({"num_steps": 12} if mode == "sweep"
                else {"training_steps": 60, "budget_steps": 150})
    with pytest.raises(ValueError, match=r"the validation loss \(val_loss_fn\) does not "
                                         "depend on the params it is given"):
        lr_find(params, optax.sgd, make_data(60, seed=1), mlp_loss,
                val_data=make_data(4, seed=8), mode=mode,
                options=JaxOptions(progress=False,
                                   val_loss_fn=lambda p, batch: mlp_loss(outer, batch)),
                **keywords)
