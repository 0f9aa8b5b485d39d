"""Optimizers: chain, multi_transform ratios, MultiSteps / accumulation, dtypes."""

from __future__ import annotations

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
from lrfind_jax_testing import ADAM, assert_tree_equal, host_copy, init_mlp, make_data, mlp_loss

from lrfind_core import make_config
from lrfind_jax import lr_find
from lrfind_jax.injection import find_lr_groups, lr_tables, set_learning_rates

STEPS = 12
SMALL = {"start_lr": 1e-3, "end_lr": 1e-1, "num_steps": STEPS, "diverge_factor": 1e9}


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
    result = lr_find(linear_loss, ZERO, tx, DUMMY_DATA, progress=False, **SMALL)
    assert result.meta["lr_groups"][0]["path"] == "[1]"
    schedule = make_config(**SMALL).learning_rates()
    lr32 = schedule.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(per_step_decrease(result), 2 * lr32[:-1], rtol=1e-4)


def test_multi_transform_keeps_each_group_ratio_to_the_reference():
    tx = optax.multi_transform(
        {"fast": optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2),
         "slow": optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3)},
        {"a": "fast", "b": "slow"},
    )
    result = lr_find(linear_loss, ZERO, tx, DUMMY_DATA, progress=False, **SMALL)
    groups = result.meta["lr_groups"]
    assert [g["path"] for g in groups] == [
        ".inner_states['fast'].inner_state", ".inner_states['slow'].inner_state"]
    assert [g["base_lr"] for g in groups] == pytest.approx([1e-2, 1e-3])
    schedule = make_config(**SMALL).learning_rates()
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
    schedule = make_config(**SMALL).learning_rates()
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
    sweep = {"start_lr": 1e-3, "end_lr": 0.3, "num_steps": steps, "diverge_factor": 1e9}
    if how == "accumulation_steps":
        result = lr_find(mlp_loss, params, ADAM, data, accumulation_steps=k, progress=False,
                         **sweep)
    else:
        tx = optax.MultiSteps(ADAM, every_k_schedule=k)
        result = lr_find(mlp_loss, params, tx, data, progress=False, **sweep)
    assert result.meta["accumulation_steps"] == k and len(result.losses) == steps
    lrs = make_config(**sweep).learning_rates()
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
    sweep = {"start_lr": 1e-3, "end_lr": 0.3, "num_steps": steps, "diverge_factor": 1e9}
    stacked = lr_find(mlp_loss, params, ADAM, data, accumulation_steps=k, progress=False,
                      **sweep)
    batches = [(data[0][i], data[1][i]) for i in range(k * steps)]
    listed = lr_find(mlp_loss, params, ADAM, batches, accumulation_steps=k, chunk_size=4,
                     **sweep)
    np.testing.assert_array_equal(listed.losses, stacked.losses)


def test_bf16_params_keep_a_bf16_learning_rate():
    params = init_mlp(0, jnp.bfloat16)
    before = host_copy(params)
    # The factory: inject_hyperparams(optax.adam) would also store b2=0.999 in bf16 (1.0).
    result = lr_find(mlp_loss, params, optax.adam, make_data(20), start_lr=1e-4, end_lr=1.0,
                     num_steps=20, progress=False)
    assert result.meta["lr_groups"][0]["dtype"] == "bfloat16"
    assert result.meta["loss_dtype"] == "float32"  # bf16 losses are recorded exactly in f32
    assert np.all(np.isfinite(result.losses[:5]))
    assert_tree_equal(before, params)


def test_x64_keeps_a_float64_learning_rate():
    script = textwrap.dedent(
        """
        import json, sys
        import jax, jax.numpy as jnp, numpy as np, optax
        from lrfind_jax import lr_find
        assert jax.config.jax_enable_x64
        params = {"w": jnp.ones((4, 2), jnp.float64)}
        data = np.random.default_rng(0).normal(size=(30, 8, 4))
        def loss(p, x):
            return jnp.mean((x @ p["w"]) ** 2)
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2)
        r = lr_find(loss, params, tx, data, start_lr=1e-4, end_lr=100.0, num_steps=40,
                    beta=0.5, progress=False)
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
    fresh = lr_find(mlp_loss, params, ADAM, data, progress=False, **SMALL)
    warmed = lr_find(mlp_loss, params, ADAM, data, opt_state=warm, progress=False, **SMALL)
    assert not np.array_equal(fresh.losses, warmed.losses)
    assert_tree_equal(before, warm)
    with pytest.raises(ValueError, match=r"opt_state .* does not match"):
        lr_find(mlp_loss, params, ADAM, data, opt_state=optax.sgd(0.1).init(params), **SMALL)


def test_unhashable_factory_is_wrapped_afresh():
    class Factory:
        __hash__ = None

        def __eq__(self, other):
            return self is other

        def __call__(self, learning_rate):
            return optax.sgd(learning_rate)

    result = lr_find(linear_loss, ZERO, Factory(), DUMMY_DATA, progress=False, **SMALL)
    schedule = make_config(**SMALL).learning_rates().astype(np.float32)
    np.testing.assert_allclose(per_step_decrease(result), 2 * schedule[:-1], rtol=1e-4)


def test_optimizer_without_a_learning_rate_says_how_to_fix_it():
    params = init_mlp(0)
    for tx in (optax.adam(1e-3), optax.inject_hyperparams(optax.scale)(step_size=-1.0)):
        with pytest.raises(ValueError, match=r"no injectable learning rate; wrap your "
                           r"optimizer with optax\.inject_hyperparams\(optax\.adam\)"):
            lr_find(mlp_loss, params, tx, make_data(4), **SMALL)


def test_scheduled_learning_rate_is_refused():
    tx = optax.inject_hyperparams(optax.adam)(
        learning_rate=optax.linear_schedule(1e-3, 1e-2, 10))
    with pytest.raises(ValueError, match=r"driven by a schedule.*constant learning_rate"):
        lr_find(mlp_loss, init_mlp(0), tx, make_data(4), **SMALL)


def test_multi_steps_needs_a_constant_int_schedule():
    tx = optax.MultiSteps(ADAM, every_k_schedule=lambda step: jnp.where(step < 5, 2, 4))
    with pytest.raises(ValueError, match=r"constant int every_k_schedule"):
        lr_find(mlp_loss, init_mlp(0), tx, make_data(4), **SMALL)
    branching = optax.MultiSteps(ADAM, every_k_schedule=lambda step: 2 if step < 5 else 4)
    with pytest.raises(ValueError, match=r"constant int every_k_schedule.*TracerBoolConversion"):
        lr_find(mlp_loss, init_mlp(0), branching, make_data(4), **SMALL)
    with pytest.raises(ValueError, match=r"accumulation_steps=2 but .* every_k_schedule=3"):
        lr_find(mlp_loss, init_mlp(0), optax.MultiSteps(ADAM, 3), make_data(4),
                accumulation_steps=2, **SMALL)
    nested = optax.chain(optax.identity(), optax.MultiSteps(ADAM, 2).gradient_transformation())
    with pytest.raises(ValueError, match=r"MultiSteps as the outermost"):
        lr_find(mlp_loss, init_mlp(0), nested, make_data(4), **SMALL)


@pytest.mark.parametrize(
    ("learning_rate", "message"),
    [(0.0, r"is 0\.0; .* finite and > 0"), (jnp.ones(2), r"shape \(2,\); .* scalar")],
)
def test_unusable_learning_rate_values(learning_rate, message):
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate)
    with pytest.raises(ValueError, match=message):
        lr_find(mlp_loss, init_mlp(0), tx, make_data(4), **SMALL)


def test_integer_learning_rate_is_refused():
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1)
    with pytest.raises(ValueError, match=r"float learning_rate"):
        lr_find(mlp_loss, {"w": jnp.ones(3)}, tx,
                np.zeros((4, 3), np.float32), **SMALL)


def test_bf16_hyperparameters_from_inject_hyperparams_are_warned_about():
    params = init_mlp(0, jnp.bfloat16)
    before = host_copy(params)
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)  # b2 0.999 -> 1.0
    with pytest.warns(UserWarning, match=r"hyperparams\['b2'\] = 1 \(bfloat16\)") as caught:
        lr_find(mlp_loss, params, injected, make_data(8), start_lr=1e-4, end_lr=1.0,
                num_steps=8, progress=False)
    assert "hyperparam_dtype=jnp.float32" in str(caught[0].message)
    assert_tree_equal(before, params)
    fixed = optax.inject_hyperparams(optax.adam, hyperparam_dtype=jnp.float32)(
        learning_rate=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lr_find(mlp_loss, params, fixed, make_data(8), start_lr=1e-4, end_lr=1.0,
                num_steps=8, progress=False)
        lr_find(mlp_loss, params, optax.adam, make_data(8), start_lr=1e-4, end_lr=1.0,
                num_steps=8, progress=False)
