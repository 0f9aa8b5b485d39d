"""mode="search" in the JAX backend: candidates as one vmapped program, optax's schedules."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lrfind_jax_testing import QUIET, assert_tree_equal, host_copy, init_mlp, make_data, mlp_loss

from lrfind_core.monitor import MonitorSettings
from lrfind_core.plan import RunPlan
from lrfind_jax import JaxOptions, Settings, lr_find
from lrfind_jax.runs import planned_lrs

SEARCH = {"mode": "search", "training_steps": 60, "budget_steps": 150, "options": QUIET}


@pytest.mark.parametrize("schedule", ["one_cycle", "constant"])
def test_a_search_stays_in_budget_and_leaves_the_params_alone(schedule):
    params = init_mlp(0)
    before = host_copy(params)
    result = lr_find(params, optax.adam, make_data(60), mlp_loss, val_data=make_data(4, seed=9),
                     for_schedule=schedule, **SEARCH)
    assert_tree_equal(before, params)
    search = result.search
    assert result.meta["steps_trained"] == search.sweep_steps + search.steps_trained <= 150
    assert search.schedule == schedule
    assert np.all(np.isfinite(search.scores[search.rungs == 0][:3]))
    assert result.suggestion == search.lr
    assert result.meta["backend"] == "jax" and result.meta["loss_kind"] == "train"  # the sweep


def test_one_cycle_candidates_follow_optax_own_schedule_and_its_options():
    plan = RunPlan(lrs=np.full((2, 10), [[0.1], [0.01]]), curves=np.zeros(2, np.int64),
                   block_batches=10, accumulation_steps=1,
                   stop=MonitorSettings(0.98, True, np.inf), val_every=10, target="one_cycle")
    for options in ({}, {"pct_start": 0.5, "div_factor": 10.0}):
        table = planned_lrs(plan, options)
        for row, peak in zip(table, (0.1, 0.01), strict=True):
            schedule = optax.cosine_onecycle_schedule(10, peak, **options)
            expected = [float(schedule(step)) for step in range(10)]
            np.testing.assert_allclose(row, expected, rtol=1e-5)  # float32, vmapped
    constant = planned_lrs(dataclasses.replace(plan, target="constant"))
    np.testing.assert_array_equal(constant, plan.lrs)


def test_a_search_repeats_bit_for_bit_and_reuses_its_programs():
    params, data, val = init_mlp(1), make_data(60, seed=1), make_data(4, seed=8)
    first = lr_find(params, optax.sgd, data, mlp_loss, val_data=val, **SEARCH)
    second = lr_find(params, optax.sgd, data, mlp_loss, val_data=val, **SEARCH)
    assert first.search == second.search
    assert second.meta["compiled"] is False  # the candidate programs came from the cache


def test_held_out_batches_give_the_scores_of_a_search_on_those_batches_as_val_data():
    params = init_mlp(2)
    inputs, labels = make_data(64, seed=2)
    with pytest.warns(UserWarning, match="no val_data: the search holds out the first 6 "):
        held = lr_find(params, optax.adam, (inputs, labels), mlp_loss, **SEARCH)
    assert held.search.held_out_batches == 6
    # the same search, told explicitly: validation on batches 0..5, training on the rest
    explicit = lr_find(params, optax.adam, (inputs[6:], labels[6:]), mlp_loss,
                       val_data=(inputs[:6], labels[:6]),
                       settings=Settings(val_batches=6), **SEARCH)
    np.testing.assert_allclose(held.search.scores, explicit.search.scores, rtol=1e-6)
    assert held.search.lr == pytest.approx(explicit.search.lr, rel=1e-6)


def test_a_stateful_search_needs_an_eval_loss():
    params = init_mlp(0)

    def stateful(params, state, batch, key):
        return mlp_loss(params, batch), state

    with pytest.raises(ValueError, match="mode='search'\\) with model_state= or rng= needs"):
        lr_find(params, optax.adam, make_data(60), stateful, model_state={"n": jnp.zeros(())},
                **SEARCH)
    options = JaxOptions(progress=False, val_loss_fn=lambda p, s, b: mlp_loss(p, b))
    with pytest.warns(UserWarning, match="no val_data"):
        result = lr_find(params, optax.adam, make_data(60), stateful,
                         model_state={"n": jnp.zeros(())}, **{**SEARCH, "options": options})
    assert result.search.lr is not None


def test_vmapped_candidates_validate_once_each_not_after_every_update():
    # under jax.vmap a conditional on a per-run flag computes both branches: a check
    # after every update made every candidate validate at every step (104 evaluations
    # for 15 candidates here before the fix; 20 after: one per candidate, and again
    # for a program resumed after its float32 stop check)
    calls = []

    def counted_val_loss(params, batch):
        jax.debug.callback(lambda: calls.append(1))
        return mlp_loss(params, batch)

    result = lr_find(init_mlp(0), optax.sgd, make_data(60), mlp_loss,
                     val_data=make_data(4, seed=9), mode="search", training_steps=60,
                     budget_steps=150, options=JaxOptions(progress=False,
                                                          val_loss_fn=counted_val_loss))
    candidates = len(result.search.lrs)
    assert candidates >= 9
    assert candidates <= len(calls) <= 2 * candidates
    assert len(calls) < result.search.steps_trained / 4


def test_one_shot_val_data_is_read_once_a_call_and_scores_as_a_list_would():
    # two sweeps run one after another (per-step execution): two plans that validate
    params, data, (inputs, labels) = init_mlp(1), make_data(24, seed=1), make_data(4, seed=8)
    listed = [(inputs[i], labels[i]) for i in range(4)]
    sweeps = {"num_steps": 12, "settings": Settings(num_sweeps=2, val_every=4),
              "options": JaxOptions(progress=False, execution="per_step")}
    from_list = lr_find(params, optax.sgd, data, mlp_loss, val_data=listed, **sweeps)
    reads = []

    def generator():
        reads.append(1)
        yield from listed

    from_generator = lr_find(params, optax.sgd, data, mlp_loss, val_data=generator(), **sweeps)
    assert reads == [1]
    assert from_list.meta["runs_one_by_one"] and from_generator.meta["runs_one_by_one"]
    np.testing.assert_allclose(from_generator.ensemble.sweep_losses,
                               from_list.ensemble.sweep_losses, rtol=1e-5)
