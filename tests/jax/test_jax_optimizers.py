"""Optimizers: chain, multi_transform ratios, MultiSteps / accumulation, dtypes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lrfind_jax_testing import (
    ADAM,
    QUIET,
    assert_tree_equal,
    host_copy,
    init_mlp,
    make_data,
    mlp_loss,
)

from lrfind_jax import JaxOptions, Settings, lr_find
from lrfind_jax.injection import find_lr_groups, lr_tables, set_learning_rates

STEPS = 12
SMALL = Settings(start_lr=1e-3, end_lr=1e-1, num_steps=STEPS, diverge_factor=1e9)


def linear_loss(params, batch):
    """Gradient 1 for every parameter: SGD moves each by exactly -lr per step."""
    del batch
    return params["a"] + params["b"]


ZERO = {"a": jnp.zeros(()), "b": jnp.zeros(())}
DUMMY_DATA = np.zeros((STEPS, 1), np.float32)


def per_step_decrease(result):
    """How much the loss fell at each update: the sum of the groups' LRs."""
    return -np.diff(result.losses)


def test_chain_sets_the_injected_learning_rate():
    tx = optax.chain(optax.clip_by_global_norm(100.0),
                     optax.inject_hyperparams(optax.sgd)(learning_rate=0.5))
    result = lr_find(ZERO, tx, DUMMY_DATA, linear_loss, settings=SMALL, options=QUIET)
    assert result.meta["lr_groups"][0]["path"] == "[1]"
    schedule = SMALL.learning_rates()
    lr32 = schedule.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(per_step_decrease(result), 2 * lr32[:-1], rtol=1e-4)


def test_multi_transform_keeps_each_group_ratio_to_the_reference():
    tx = optax.multi_transform(
        {"fast": optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2),
         "slow": optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3)},
        {"a": "fast", "b": "slow"},
    )
    result = lr_find(ZERO, tx, DUMMY_DATA, linear_loss, settings=SMALL, options=QUIET)
    groups = result.meta["lr_groups"]
    assert [g["path"] for g in groups] == [
        ".inner_states['fast'].inner_state", ".inner_states['slow'].inner_state"]
    assert [g["base_lr"] for g in groups] == pytest.approx([1e-2, 1e-3])
    schedule = SMALL.learning_rates()
    # "fast" (first in tree order) follows the schedule, "slow" keeps its 1/10.
    np.testing.assert_allclose(per_step_decrease(result), 1.1 * schedule[:-1], rtol=1e-4)


def test_injected_values_per_group_at_a_step():
    tx = optax.multi_transform(
        {"fast": optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2),
         "slow": optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3)},
        {"a": "fast", "b": "slow"},
    )
    state = tx.init(ZERO)
    groups = find_lr_groups(state)
    schedule = SMALL.learning_rates()
    tables = lr_tables(schedule, groups)
    assert [t.dtype for t in tables] == [np.float32, np.float32]
    np.testing.assert_array_equal(tables[0], schedule.astype(np.float32))
    # The ratio comes from the base LRs as stored (float32), not from the literals.
    ratio = float(np.float32(1e-3)) / float(np.float32(1e-2))
    np.testing.assert_array_equal(tables[1], (schedule * ratio).astype(np.float32))
    step = 7
    updated = jax.jit(lambda s, v: set_learning_rates(s, (groups[0].leaf_index,
                                                          groups[1].leaf_index), v))(
        state, (tables[0][step], tables[1][step]))
    fast = updated.inner_states["fast"].inner_state.hyperparams["learning_rate"]
    slow = updated.inner_states["slow"].inner_state.hyperparams["learning_rate"]
    assert float(fast) == float(tables[0][step]) and float(slow) == float(tables[1][step])
    assert fast.dtype == slow.dtype == jnp.float32 and fast.shape == ()
    # Nothing else changed.
    flat_before = jax.tree_util.tree_leaves(state)
    flat_after = jax.tree_util.tree_leaves(updated)
    changed = [i for i, (a, b) in enumerate(zip(flat_before, flat_after, strict=True))
               if not np.array_equal(a, b)]
    assert len(changed) == 2


def reference_accumulation(params, data, lrs, k, steps):
    """A hand-written loop: k micro-batches per update with optax.MultiSteps(adam)."""
    tx = optax.MultiSteps(optax.inject_hyperparams(optax.adam)(learning_rate=1.0), k)

    @jax.jit
    def micro(params, state, batch, lr):
        state.inner_opt_state.hyperparams["learning_rate"] = lr
        loss, grads = jax.value_and_grad(mlp_loss)(params, batch)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    state = tx.init(params)
    inputs, labels = data
    recorded = []
    for i in range(steps):
        total = np.float32(0.0)
        for j in range(k):
            m = i * k + j
            params, state, loss = micro(params, state, (inputs[m], labels[m]),
                                        np.float32(lrs[i]))
            total = total + np.float32(loss) / np.float32(k)
        recorded.append(float(total))
    return np.asarray(recorded)


@pytest.mark.parametrize("how", ["accumulation_steps", "MultiSteps"])
def test_accumulation_advances_the_lr_per_real_update(how):
    k, steps = 3, 6
    params = init_mlp(1)
    data = make_data(k * steps, seed=5)
    sweep = Settings(start_lr=1e-3, end_lr=0.3, num_steps=steps, diverge_factor=1e9)
    if how == "accumulation_steps":
        result = lr_find(params, ADAM, data, mlp_loss, options=QUIET,
                         settings=dataclasses.replace(sweep, accumulation_steps=k))
    else:
        tx = optax.MultiSteps(ADAM, every_k_schedule=k)
        result = lr_find(params, tx, data, mlp_loss, options=QUIET, settings=sweep)
    assert result.meta["accumulation_steps"] == k and len(result.losses) == steps
    assert result.settings.accumulation_steps == k
    lrs = sweep.learning_rates()
    expected = reference_accumulation(params, data, lrs, k, steps)
    np.testing.assert_allclose(result.losses, expected, rtol=2e-5)
    # An LR advancing per micro-batch would have applied lrs[i * k + k - 1] at update i.
    per_micro = [lrs[min(i * k + k - 1, steps - 1)] for i in range(steps)]
    wrong = reference_accumulation(params, data, per_micro, k, steps)
    assert not np.allclose(result.losses[2:], wrong[2:], rtol=1e-3)


def test_accumulation_chunked_over_a_sequence_matches():
    k, steps = 2, 6
    params = init_mlp(1)
    data = make_data(k * steps, seed=5)
    sweep = Settings(start_lr=1e-3, end_lr=0.3, num_steps=steps, diverge_factor=1e9,
                     accumulation_steps=k)
    stacked = lr_find(params, ADAM, data, mlp_loss, options=QUIET, settings=sweep)
    batches = [(data[0][i], data[1][i]) for i in range(k * steps)]
    listed = lr_find(params, ADAM, batches, mlp_loss, options=JaxOptions(chunk_size=4),
                     settings=sweep)
    np.testing.assert_array_equal(listed.losses, stacked.losses)


def test_bf16_params_with_a_factory_get_float32_hyperparameters():
    params = init_mlp(0, jnp.bfloat16)
    before = host_copy(params)
    # The factory is injected with float32 hyperparameters: inject_hyperparams(optax.adam)
    # would store b2=0.999 in bf16 (1.0).
    result = lr_find(params, optax.adam, make_data(20), mlp_loss, start_lr=1e-4, end_lr=1.0,
                     num_steps=20, options=QUIET)
    assert result.meta["lr_groups"][0]["dtype"] == "float32"
    assert result.meta["loss_dtype"] == "float32"  # bf16 losses are recorded exactly in f32
    assert np.all(np.isfinite(result.losses[:5]))
    assert_tree_equal(before, params)


def test_bf16_learning_rate_is_kept_in_its_stored_dtype():
    params = init_mlp(0, jnp.bfloat16)
    before = host_copy(params)
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3)  # stored in bf16
    assert tx.init(params).hyperparams["learning_rate"].dtype == jnp.bfloat16
    with warnings.catch_warnings():
        # the LR alone in bf16 is no low-precision warning
        warnings.filterwarnings("error", message=".*low precision.*")
        result = lr_find(params, tx, make_data(20), mlp_loss, start_lr=1e-4, end_lr=1.0,
                         num_steps=20, options=QUIET)
    assert result.meta["lr_groups"][0]["dtype"] == "bfloat16"
    assert result.meta["loss_dtype"] == "float32"
    assert np.all(np.isfinite(result.losses[:5]))
    assert_tree_equal(before, params)


def test_x64_keeps_a_float64_learning_rate():
    script = textwrap.dedent(
        """
        import json, sys
        import jax, jax.numpy as jnp, numpy as np, optax
        from lrfind_jax import JaxOptions, Settings, lr_find
        assert jax.config.jax_enable_x64
        params = {"w": jnp.ones((4, 2), jnp.float64)}
        data = np.random.default_rng(0).normal(size=(30, 8, 4))
        def loss(p, x):
            return jnp.mean((x @ p["w"]) ** 2)
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2)
        r = lr_find(params, tx, data, loss, start_lr=1e-4, end_lr=100.0, num_steps=40,
                    settings=Settings(beta=0.5), options=JaxOptions(progress=False))
        print(json.dumps({"hp": str(tx.init(params).hyperparams["learning_rate"].dtype),
                          "group": r.meta["lr_groups"][0]["dtype"],
                          "loss": r.meta["loss_dtype"], "reason": r.stop_reason,
                          "steps": len(r.losses)}))
        """
    )
    env = {**os.environ, "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr
    facts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert facts["hp"] == facts["group"] == facts["loss"] == "float64"
    assert facts["reason"] in ("diverged", "non-finite loss") and facts["steps"] < 40


def test_user_given_opt_state_is_used_and_untouched():
    params = init_mlp(0)
    data = make_data(STEPS)
    opt_state = ADAM.init(params)
    # A warm optimizer state (one update done) changes the curve.
    grads = jax.jit(jax.grad(mlp_loss))(params, (data[0][0], data[1][0]))
    _, warm = jax.jit(ADAM.update)(grads, opt_state, params)
    before = host_copy(warm)
    fresh = lr_find(params, ADAM, data, mlp_loss, options=QUIET, settings=SMALL)
    warmed = lr_find(params, ADAM, data, mlp_loss, settings=SMALL,
                     options=JaxOptions(opt_state=warm, progress=False))
    assert not np.array_equal(fresh.losses, warmed.losses)
    assert_tree_equal(before, warm)
    # The given state is copied into the program, never donated: a second call reuses it.
    again = lr_find(params, ADAM, data, mlp_loss, settings=SMALL,
                    options=JaxOptions(opt_state=warm, progress=False))
    np.testing.assert_array_equal(again.losses, warmed.losses)
    assert_tree_equal(before, warm)
    with pytest.raises(ValueError, match=r"opt_state .* does not match"):
        lr_find(params, ADAM, data, mlp_loss, settings=SMALL,
                options=JaxOptions(opt_state=optax.sgd(0.1).init(params)))


def test_unhashable_factory_is_wrapped_afresh():
    class Factory:
        __hash__ = None

        def __eq__(self, other):
            return self is other

        def __call__(self, learning_rate):
            return optax.sgd(learning_rate)

    result = lr_find(ZERO, Factory(), DUMMY_DATA, linear_loss, settings=SMALL, options=QUIET)
    schedule = SMALL.learning_rates().astype(np.float32)
    np.testing.assert_allclose(per_step_decrease(result), 2 * schedule[:-1], rtol=1e-4)


def test_optimizer_without_a_learning_rate_says_how_to_fix_it():
    params = init_mlp(0)
    for tx in (optax.adam(1e-3), optax.inject_hyperparams(optax.scale)(step_size=-1.0)):
        with pytest.raises(ValueError, match=r"no injectable learning rate; wrap your "
                           r"optimizer with optax\.inject_hyperparams\(optax\.adam\)"):
            lr_find(params, tx, make_data(4), mlp_loss, settings=SMALL)


def test_scheduled_learning_rate_is_refused():
    tx = optax.inject_hyperparams(optax.adam)(
        learning_rate=optax.linear_schedule(1e-3, 1e-2, 10))
    with pytest.raises(ValueError, match=r"driven by a schedule.*constant learning_rate"):
        lr_find(init_mlp(0), tx, make_data(4), mlp_loss, settings=SMALL)


def test_multi_steps_needs_a_constant_int_schedule():
    tx = optax.MultiSteps(ADAM, every_k_schedule=lambda step: jnp.where(step < 5, 2, 4))
    with pytest.raises(ValueError, match=r"constant int every_k_schedule"):
        lr_find(init_mlp(0), tx, make_data(4), mlp_loss, settings=SMALL)
    branching = optax.MultiSteps(ADAM, every_k_schedule=lambda step: 2 if step < 5 else 4)
    with pytest.raises(ValueError, match=r"constant int every_k_schedule.*TracerBoolConversion"):
        lr_find(init_mlp(0), branching, make_data(4), mlp_loss, settings=SMALL)
    with pytest.raises(ValueError, match=r"accumulation_steps=2 but .* every_k_schedule=3"):
        lr_find(init_mlp(0), optax.MultiSteps(ADAM, 3), make_data(4), mlp_loss,
                settings=dataclasses.replace(SMALL, accumulation_steps=2))
    nested = optax.chain(optax.identity(), optax.MultiSteps(ADAM, 2).gradient_transformation())
    with pytest.raises(ValueError, match=r"MultiSteps as the outermost"):
        lr_find(init_mlp(0), nested, make_data(4), mlp_loss, settings=SMALL)


@pytest.mark.parametrize(
    ("learning_rate", "message"),
    [(0.0, r"is 0\.0; .* finite and > 0"), (jnp.ones(2), r"shape \(2,\); .* scalar")],
)
def test_unusable_learning_rate_values(learning_rate, message):
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate)
    with pytest.raises(ValueError, match=message):
        lr_find(init_mlp(0), tx, make_data(4), mlp_loss, settings=SMALL)


def test_integer_learning_rate_is_refused():
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1)
    with pytest.raises(ValueError, match=r"float learning_rate"):
        lr_find({"w": jnp.ones(3)}, tx, np.zeros((4, 3), np.float32), mlp_loss,
                settings=SMALL)


def test_bf16_hyperparameters_from_inject_hyperparams_are_warned_about():
    params = init_mlp(0, jnp.bfloat16)
    before = host_copy(params)
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)  # b2 0.999 -> 1.0
    with pytest.warns(UserWarning, match=r"hyperparams\['b2'\] = 1 \(bfloat16\)") as caught:
        lr_find(params, injected, make_data(8), mlp_loss, start_lr=1e-4, end_lr=1.0,
                num_steps=8, options=QUIET)
    assert "hyperparam_dtype=jnp.float32" in str(caught[0].message)
    assert_tree_equal(before, params)
    fixed = optax.inject_hyperparams(optax.adam, hyperparam_dtype=jnp.float32)(
        learning_rate=1e-3)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*low precision.*")
        lr_find(params, fixed, make_data(8), mlp_loss, start_lr=1e-4, end_lr=1.0,
                num_steps=8, options=QUIET)
        lr_find(params, optax.adam, make_data(8), mlp_loss, start_lr=1e-4, end_lr=1.0,
                num_steps=8, options=QUIET)


def test_a_schedule_inside_the_chain_is_refused_since_it_would_scale_the_swept_lr():
    params, data = init_mlp(0), make_data(20)
    optimizer = optax.chain(ADAM, optax.scale_by_schedule(optax.cosine_decay_schedule(1.0, 100)))
    with pytest.raises(ValueError, match=r"also scales its updates by a schedule "
                       r"\(ScaleByScheduleState at opt_state\[1\]\)"):
        lr_find(params, optimizer, data, mlp_loss, num_steps=12, options=QUIET)


@pytest.mark.parametrize(("factory", "state"), [
    (optax.contrib.prodigy, "ProdigyState"),
    (optax.contrib.dadapt_adamw, "DAdaptAdamWState"),
    (optax.contrib.dog, "DoGState"),
])
def test_learning_rate_free_optimizers_are_refused_with_what_their_lr_means(factory, state):
    params, data = init_mlp(0), make_data(20)
    with pytest.raises(ValueError, match=rf"learning-rate-free \({state} at opt_state"):
        lr_find(params, factory, data, mlp_loss, num_steps=12, options=QUIET)


def test_extra_args_transformations_get_the_loss_and_a_value_fn():
    params, data = init_mlp(0), make_data(20)
    # optax.lbfgs asks for both: value and value_fn (reduce_on_plateau, which asks for the
    # value, is refused: test_reduce_on_plateau_in_the_chain_is_refused_before_any_step)
    lbfgs = lr_find(params, optax.lbfgs, data, mlp_loss, num_steps=12, start_lr=1e-4,
                    end_lr=1e-1, options=QUIET)
    assert np.all(np.isfinite(lbfgs.losses))


def test_an_optimizer_that_branches_on_an_injected_hyperparameter_is_explained():
    params, data = init_mlp(0), make_data(20)
    injected = optax.inject_hyperparams(optax.lbfgs)(learning_rate=1.0)
    with pytest.raises(ValueError, match=r"branches in Python on an injected hyperparameter.*"
                       r"static_args"):
        lr_find(params, injected, data, mlp_loss, num_steps=12, options=QUIET)


class CountingLoss:
    """``mlp_loss`` that counts its calls (traces included): 0 means nothing ran."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, params, batch):
        self.calls += 1
        return mlp_loss(params, batch)


def test_reduce_on_plateau_in_the_chain_is_refused_before_any_step():
    params, data, loss = init_mlp(0), make_data(12), CountingLoss()
    before = host_copy(params)
    plateau = optax.chain(ADAM, optax.contrib.reduce_on_plateau(patience=3, factor=0.5))
    with pytest.raises(ValueError, match=r"also scales its updates by the factor of "
                       r"optax\.contrib\.reduce_on_plateau \(ReduceLROnPlateauState at "
                       r"opt_state\[1\]\).*result\.lrs would not be the LRs applied"):
        lr_find(params, plateau, data, loss, num_steps=12, options=QUIET)
    assert loss.calls == 0
    assert_tree_equal(before, params)


@pytest.mark.parametrize("how", ["factory", "injected", "wrapper"])
def test_schedule_free_optimizers_are_refused_like_in_torch(how):
    optimizer = {
        "factory": optax.contrib.schedule_free_adamw,
        "injected": optax.inject_hyperparams(optax.contrib.schedule_free_sgd)(learning_rate=1e-3),
        "wrapper": optax.contrib.schedule_free(ADAM, learning_rate=1.0),
    }[how]
    refused_before_any_step(optimizer, r"learning-rate-free \(ScheduleFreeState at opt_state"
                            r".*schedule-free.*tune it by training, not with a range test")


@pytest.mark.parametrize("how", ["outside", "injected"])
def test_lookahead_is_refused_with_what_to_pass_instead(how):
    optimizer = {
        "outside": optax.lookahead(ADAM, sync_period=4, slow_step_size=0.5),
        "injected": optax.inject_hyperparams(
            lambda learning_rate: optax.lookahead(optax.adam(learning_rate), 4, 0.5)
        )(learning_rate=1e-3),
    }[how]
    refused_before_any_step(optimizer, r"cannot run this optimizer \(LookaheadState at "
                            r"opt_state.*params\.fast.*Find the LR of its fast optimizer")


def refused_before_any_step(optimizer, message):
    """lr_find raises a ValueError matching ``message`` and never calls the loss."""
    loss = CountingLoss()
    with pytest.raises(ValueError, match=message):
        lr_find(init_mlp(0), optimizer, make_data(12), loss, num_steps=12, options=QUIET)
    assert loss.calls == 0
