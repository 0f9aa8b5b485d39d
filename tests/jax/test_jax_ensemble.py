"""Repeated sweeps (num_sweeps=K) and independent runs (mode="independent") as one
vmapped program: each run against a single sweep or a hand-written loop, the
ensemble and the runs in the result, the stop rules, data and caching."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from lrfind_jax_testing import (
    ADAM,
    IN,
    OUT,
    QUIET,
    SGD,
    as_batches,
    assert_tree_equal,
    host_copy,
    init_mlp,
    make_data,
    mlp_loss,
    patch_monitor,
)

from lrfind_core import ewa_smooth, find_stop
from lrfind_core.aggregation import end_losses
from lrfind_core.suggestion import suggest
from lrfind_jax import JaxOptions, Settings, lr_find, lr_find_nnx
from lrfind_jax.runs import curve_keys

K, STEPS = 3, 40
SWEEP = {"start_lr": 1e-3, "end_lr": 100.0, "num_steps": STEPS}
K_SWEEPS = Settings(num_sweeps=K)
RNG = jax.random.key(7)
TRACES: list[str] = []


def noisy_loss(params, state, batch, key):
    """The MLP's loss plus noise from the step's key (stateful form, no model state)."""
    TRACES.append("noisy")  # runs when traced, never when the compiled program runs
    return mlp_loss(params, batch) + 0.05 * jax.random.normal(key, ()), state


def curve_key(curve: int):
    return RNG if curve == 0 else jax.random.fold_in(RNG, curve)


@pytest.fixture(scope="module")
def params():
    return init_mlp(0)


@pytest.fixture(scope="module")
def data():
    """K * STEPS batches: each sweep reads its own."""
    return make_data(K * STEPS)


@pytest.fixture(scope="module")
def sweeps(params, data):
    """K SGD sweeps, one compiled call."""
    TRACES.clear()
    result = lr_find(params, SGD, data, noisy_loss, rng=RNG, settings=K_SWEEPS, options=QUIET,
                     **SWEEP)
    return result, len(TRACES)


# ------------------------------------------------------------------ repeated sweeps


def test_k_sweeps_run_as_one_compiled_program(params, sweeps):
    result, traced = sweeps
    assert_tree_equal(host_copy(init_mlp(0)), params)  # copied for the runs, never donated
    meta = result.meta
    assert meta["compiled"] and meta["compile_time_s"] > 0 and traced >= 1
    assert meta["program_calls"] == 1 and meta["loop"] == "single"
    assert meta["num_sweeps"] == K and meta["mode"] == "sweep" and meta["runs"] == K
    assert meta["in_loop_resumes"] == 0
    # Each sweep stopped on its own; nothing ran past a stop.
    stops = result.ensemble.stop_steps
    assert all(stop is not None for stop in stops) and len(set(stops)) > 1
    assert meta["steps_trained"] == sum(stop + 1 for stop in stops)
    assert meta["end_reasons"] == [None] * K


def test_each_sweep_equals_a_single_sweep_on_its_batches_with_its_key(params, data, sweeps):
    """Sweep k = one sweep on the data shifted by k * STEPS batches with key
    fold_in(rng, k); sweep 0 = the user's sweep. Bitwise with SGD."""
    result, _ = sweeps
    for curve in range(K):
        shifted = tuple(np.roll(x, -curve * STEPS, axis=0) for x in data)
        single = lr_find(
            params, SGD, shifted, noisy_loss, rng=curve_key(curve), options=QUIET, **SWEEP
        )
        assert (single.meta["num_sweeps"], single.meta["mode"]) == (1, "sweep")
        assert single.meta["runs"] == 1 and single.ensemble is None
        recorded = result.ensemble.sweep_losses[curve]
        np.testing.assert_array_equal(recorded[: len(single.losses)], single.losses)
        assert np.all(np.isnan(recorded[len(single.losses) :]))
        assert result.ensemble.stop_steps[curve] == single.stop_step


def test_adam_sweeps_equal_single_sweeps_within_float32_rounding(params, data):
    """The vmapped program may fuse Adam's update differently: not bitwise, but close."""
    stable = {"start_lr": 1e-4, "end_lr": 1e-1, "num_steps": 20}
    result = lr_find(
        params, ADAM, data, noisy_loss, rng=RNG, settings=Settings(num_sweeps=2),
        options=QUIET, **stable
    )
    for curve in range(2):  # sweep 1 reads the 20 batches after sweep 0's
        shifted = tuple(np.roll(x, -curve * 20, axis=0) for x in data)
        single = lr_find(
            params, ADAM, shifted, noisy_loss, rng=curve_key(curve), options=QUIET, **stable
        )
        np.testing.assert_allclose(result.ensemble.sweep_losses[curve], single.losses, rtol=1e-6)
    assert not np.allclose(result.ensemble.sweep_losses[0], result.ensemble.sweep_losses[1])


def test_ensemble_is_consistent(sweeps):
    result, _ = sweeps
    ensemble = result.ensemble
    assert ensemble.num_sweeps == K
    assert ensemble.sweep_losses.shape == ensemble.sweep_smoothed.shape == (K, STEPS)
    for curve in range(K):
        losses = ensemble.sweep_losses[curve]
        losses = losses[~np.isnan(losses)]
        smoothed = ewa_smooth(losses, 0.98, True)
        np.testing.assert_allclose(ensemble.sweep_smoothed[curve][: len(losses)], smoothed)
        stop, _ = find_stop(losses, smoothed, diverge_factor=4.0)
        assert stop == ensemble.stop_steps[curve] == len(losses) - 1
    for method, values in ensemble.sweep_suggestions.items():
        assert len(values) == K and method in result.suggestions
    assert ensemble.spread_decades("valley") is not None
    reached = ~np.isnan(ensemble.band_low)
    assert np.all(ensemble.band_low[reached] <= ensemble.band_high[reached])
    assert len(ensemble.band_low) == len(result.lrs) and np.all(reached)
    # The result's curve is the pointwise median of the sweeps where all ran.
    common = min(len(result.losses), min(ensemble.stop_steps) + 1)
    np.testing.assert_array_equal(
        result.losses[:common], np.median(ensemble.sweep_losses[:, :common], axis=0)
    )
    planned = Settings(**SWEEP).learning_rates()
    np.testing.assert_array_equal(result.lrs, planned[: len(result.lrs)])


def test_sweeps_are_deterministic_and_not_recompiled(params, data, sweeps):
    result, _ = sweeps
    traced = len(TRACES)
    again = lr_find(params, SGD, data, noisy_loss, rng=RNG, settings=K_SWEEPS, options=QUIET,
                    **SWEEP)
    chunked = lr_find(
        params, SGD, data, noisy_loss, rng=RNG, settings=K_SWEEPS,
        options=JaxOptions(progress=True, chunk_size=7), **SWEEP
    )
    assert len(TRACES) == traced  # neither call traced the loss again
    for other in (again, chunked):
        assert not other.meta["compiled"] and other.meta["compile_time_s"] == 0.0
        assert other.ensemble == result.ensemble
        assert other.suggestions == result.suggestions and other.stop_step == result.stop_step
    assert chunked.meta["loop"] == "chunked"
    assert chunked.meta["program_calls"] == -(-(max(result.ensemble.stop_steps) + 1) // 7)


def test_a_list_of_batches_gives_the_stacked_result(params, data, sweeps):
    result, _ = sweeps
    traced = len(TRACES)
    listed = lr_find(
        params, SGD, as_batches(data), noisy_loss, rng=RNG, settings=K_SWEEPS, options=QUIET,
        **SWEEP
    )
    assert listed.meta["data"] == "sequence" and not listed.meta["compiled"]
    assert len(TRACES) == traced  # stacked up front: the same program
    assert listed.ensemble == result.ensemble


def test_a_one_shot_iterator_that_runs_out_shortens_the_last_sweeps(params, data):
    quiet = {"start_lr": 1e-5, "end_lr": 1e-3, "num_steps": STEPS}
    batches = as_batches(data)
    with pytest.warns(
        UserWarning,
        match=r"sweep 2 of 3: data exhausted after 20 steps; its curve ends after 20 point",
    ) as caught:
        result = lr_find(
            params,
            SGD,
            iter(batches[:100]),
            noisy_loss,
            rng=RNG,
            settings=K_SWEEPS,
            options=QUIET,
            **quiet,
        )
    assert not any("sweep 0 of" in str(w.message) or "sweep 1 of" in str(w.message)
                   for w in caught)
    lengths = np.sum(~np.isnan(result.ensemble.sweep_losses), axis=1)
    np.testing.assert_array_equal(lengths, [STEPS, STEPS, 20])
    assert result.meta["end_reasons"] == [None, None, "data exhausted after 20 steps"]
    assert result.meta["steps_trained"] == 2 * STEPS + 20
    full = lr_find(params, SGD, data, noisy_loss, rng=RNG, settings=K_SWEEPS, options=QUIET,
                   **quiet)
    np.testing.assert_array_equal(
        result.ensemble.sweep_losses[2, :20], full.ensemble.sweep_losses[2, :20]
    )


def test_a_sweep_that_gets_no_batch_is_left_out_with_a_warning(params, data):
    """70 batches for 3 sweeps of 40: sweep 1 gets 30, sweep 2 none of its own. As in
    the torch backend, a curve cut to nothing is named in a warning and the other
    sweeps make the result (before the redesign the JAX backend raised a ValueError)."""
    quiet = {"start_lr": 1e-5, "end_lr": 1e-3, "num_steps": STEPS}
    with pytest.warns(UserWarning) as caught:
        result = lr_find(params, SGD, iter(as_batches(data)[:70]), noisy_loss, rng=RNG,
                         settings=K_SWEEPS, options=QUIET, **quiet)
    messages = [str(w.message) for w in caught]
    assert messages[:2] == [
        "sweep 1 of 3: data exhausted after 30 steps; its curve ends after 30 point(s)",
        "sweep 2 of 3: data exhausted after 0 steps; its curve ends after 0 point(s)",
    ]
    # this small range holds no real minimum: the answer sits at its start, and says so
    assert messages[2:] == [] or messages[2].startswith("the suggestion 1e-05 sits at the start")
    assert result.meta["end_reasons"] == [
        None, "data exhausted after 30 steps", "data exhausted after 0 steps"]
    assert result.meta["steps_trained"] == STEPS + 30 and result.meta["num_sweeps"] == K
    assert result.ensemble.num_sweeps == 2
    full = lr_find(params, SGD, data, noisy_loss, rng=RNG, settings=K_SWEEPS, options=QUIET,
                   **quiet)
    np.testing.assert_array_equal(result.ensemble.sweep_losses[0], full.ensemble.sweep_losses[0])
    np.testing.assert_array_equal(result.ensemble.sweep_losses[1, :30],
                                  full.ensemble.sweep_losses[1, :30])
    assert np.all(np.isnan(result.ensemble.sweep_losses[1, 30:]))


def test_in_loop_hints_are_resumed_and_missed_stops_are_caught_per_sweep(
    monkeypatch, params, data, sweeps
):
    """A float32 hint at step 5 that the host does not confirm is resumed; the real
    stops are missed in the loop and made by the host, which freezes those sweeps."""
    result, _ = sweeps
    patch_monitor(monkeypatch, lambda count, code: jnp.where(count == 5, 2, 0))

    def patched_loss(p, state, batch, key):  # a new function: a new program with the patch
        return noisy_loss(p, state, batch, key)

    single = lr_find(
        params, SGD, data, patched_loss, rng=RNG, settings=K_SWEEPS, options=QUIET, **SWEEP
    )
    assert single.meta["in_loop_resumes"] == K and single.meta["program_calls"] == 2
    assert single.meta["steps_trained"] == K * STEPS  # the loop ran past the host's stops
    chunked = lr_find(
        params, SGD, data, patched_loss, rng=RNG, settings=K_SWEEPS,
        options=JaxOptions(progress=True, chunk_size=8), **SWEEP
    )
    # Frozen once the host stopped them: nothing runs past the chunk of the stop.
    assert chunked.meta["steps_trained"] < K * STEPS
    for other in (single, chunked):
        assert other.ensemble == result.ensemble and other.suggestions == result.suggestions


# ------------------------------------------------------------------ independent runs

GRID_RANGE = {"start_lr": 1e-3, "end_lr": 30.0}
GRID = Settings(mode="independent", num_sweeps=2, independent_lrs=8, steps_per_lr=6,
                average_last=2, **GRID_RANGE)


@pytest.fixture(scope="module")
def independent(params, data):
    """Two curves of independent Adam runs, one compiled call."""
    TRACES.clear()
    result = lr_find(params, ADAM, data, noisy_loss, rng=RNG, settings=GRID, options=QUIET)
    return result, len(TRACES)


@jax.jit
def hand_step(params, opt_state, batch, key, lr):
    """What a user writes: one Adam step at the LR ``lr``."""
    opt_state.hyperparams["learning_rate"] = lr
    (loss, _), grads = jax.value_and_grad(noisy_loss, has_aux=True)(params, None, batch, key)
    updates, opt_state = ADAM.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def test_each_run_equals_a_hand_written_loop_at_its_lr(params, data, independent):
    result, _ = independent
    grid = GRID.independent_grid()
    steps = GRID.steps_per_lr
    made = ~np.all(np.isnan(result.runs.run_losses), axis=2)
    for curve in range(2):
        for index in np.flatnonzero(made[curve])[[0, 2, -2]]:
            p, opt_state, losses = params, ADAM.init(params), []
            for m in range(steps):
                batch = (data[0][curve * steps + m], data[1][curve * steps + m])
                key = jax.random.fold_in(curve_key(curve), m)
                p, opt_state, loss = hand_step(p, opt_state, batch, key, np.float32(grid[index]))
                losses.append(float(loss))
            np.testing.assert_allclose(result.runs.run_losses[curve, index], losses, rtol=1e-6)


def test_runs_start_alike_and_the_result_scores_them(independent):
    result, traced = independent
    runs = result.runs.run_losses
    assert runs.shape == (2, 8, 6) and result.runs.average_last == 2
    meta = result.meta
    assert meta["mode"] == "independent" and meta["num_sweeps"] == 2
    assert meta["runs"] == 16 and meta["program_calls"] == 1 and meta["compiled"]
    assert traced >= 1
    for curve in range(2):
        made = ~np.all(np.isnan(runs[curve]), axis=1)
        first = runs[curve, made, 0]
        assert np.all(first == first[0])  # same params, same batch, same key at step 0
        # Every LR then learns its own way.
        assert len(np.unique(runs[curve, made, -1])) == made.sum()
    assert runs[0, 0, 0] != runs[1, 0, 0]  # curve 1 reads the next batches
    assert result.ensemble is not None and result.ensemble.num_sweeps == 2


def test_runs_above_the_stop_are_nan(independent):
    result, _ = independent
    runs = result.runs.run_losses
    settings = result.settings
    assert settings.mode == "independent" and settings.independent_lrs == 8
    # Scores are judged unsmoothed and untrimmed, whatever beta and skip_* say.
    assert settings.beta == 0.98 and settings.skip_end == 5
    np.testing.assert_array_equal(result.smoothed_losses, result.losses)
    np.testing.assert_array_equal(result.ensemble.sweep_smoothed, result.ensemble.sweep_losses)
    for method, detail in result.suggestions.items():
        read = suggest(result.lrs, result.losses, method, skip_start=0, skip_end=0,
                       planned_steps=8)
        assert detail.curve_lr == read.lr, method
    for curve in range(2):
        made = ~np.all(np.isnan(runs[curve]), axis=1)
        count = int(made.sum())
        assert np.all(made[:count]) and 2 <= count < 8  # the stop fired inside the grid
        scores = end_losses(runs[curve, :count], 2)
        stop, _ = find_stop(scores, scores, diverge_factor=settings.diverge_factor)
        assert stop == count - 1 == result.ensemble.stop_steps[curve]
        # The stop run rose far above 4x its first loss: the ratio rule did not cut it.
        last = runs[curve, count - 1]
        assert np.all(np.isfinite(last)) and last.max() > 4 * last[0]
    assert result.stop_reason in ("diverged", "non-finite loss")


def test_independent_runs_are_not_recompiled(params, data, independent):
    result, _ = independent
    traced = len(TRACES)
    again = lr_find(params, ADAM, data, noisy_loss, rng=RNG, settings=GRID,
                    options=JaxOptions(progress=True, chunk_size=4))
    assert len(TRACES) == traced
    assert not again.meta["compiled"] and again.meta["program_calls"] == 2
    np.testing.assert_array_equal(again.runs.run_losses, result.runs.run_losses)
    assert again.suggestions == result.suggestions


def test_independent_needs_all_its_batches_from_a_one_shot_iterator(params, data):
    with pytest.raises(ValueError, match=r"train_data ran out \(data exhausted after 5 "
                       r"steps\); mode='independent' reads 12 micro-batches"):
        lr_find(params, ADAM, iter(as_batches(data)[:5]), noisy_loss, rng=RNG, settings=GRID)


@pytest.mark.parametrize("rng", [RNG, jax.random.PRNGKey(7)], ids=["typed", "legacy"])
def test_curve_keys_fold_the_curve_into_the_users_key(rng):
    keys = curve_keys(rng, jnp.arange(3, dtype=jnp.int32))
    expected = [rng, jax.random.fold_in(rng, 1), jax.random.fold_in(rng, 2)]
    assert_tree_equal(host_copy(jnp.stack(expected)), keys)


@pytest.mark.parametrize(
    ("mode", "fields", "keywords", "message"),
    [
        (None, {"num_sweeps": 0}, {}, "num_sweeps must be an int >= 1"),
        ("grid", {}, {}, "unknown mode 'grid'"),
        (
            "independent",
            {"steps_per_lr": 3, "average_last": 4},
            {},
            "average_last must be <= steps_per_lr",
        ),
        (
            "independent",
            {},
            {"num_steps": 8},
            r"num_steps is the length of a classic sweep.*Settings\(independent_lrs=",
        ),
    ],
)
def test_bad_ensemble_options(params, data, mode, fields, keywords, message):
    with pytest.raises(ValueError, match=message):
        lr_find(params, ADAM, data, mlp_loss, mode=mode, settings=Settings(**fields),
                **keywords)


# ------------------------------------------------------------------ flax nnx


class NnxNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense1 = nnx.Linear(IN, 16, rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.dense2 = nnx.Linear(16, OUT, rngs=rngs)

    def __call__(self, x):
        return self.dense2(self.dropout(nnx.relu(self.norm(self.dense1(x)))))


def nnx_loss(model, batch):
    inputs, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(inputs), labels).mean()


@pytest.fixture(scope="module")
def one_batch():
    """One batch repeated: with tiny LRs every difference comes from dropout."""
    inputs, labels = make_data(1, seed=9)
    return np.repeat(inputs, 24, axis=0), np.repeat(labels, 24, axis=0)


def test_nnx_sweeps_and_runs_leave_the_module_unchanged(one_batch):
    model = NnxNet(nnx.Rngs(0))
    model.eval()
    before = host_copy(nnx.state(model))
    quiet = {"start_lr": 1e-8, "end_lr": 1e-7, "options": QUIET}
    sweeps = lr_find_nnx(
        model, ADAM, one_batch, nnx_loss, num_steps=8,
        settings=Settings(num_sweeps=2, diverge_factor=1e9), **quiet
    )
    assert_tree_equal(before, nnx.state(model))
    assert model.dropout.deterministic and model.norm.use_running_average
    # Same batches, so the sweeps differ only by their dropout seeds (folded nnx keys).
    first, second = sweeps.ensemble.sweep_losses
    assert np.all(first != second)
    assert len(np.unique(first)) == 8  # a new mask every step

    runs = lr_find_nnx(
        model,
        ADAM,
        one_batch,
        nnx_loss,
        mode="independent",
        settings=Settings(independent_lrs=4, steps_per_lr=5, average_last=2,
                          diverge_factor=1e9),
        **quiet,
    )
    assert_tree_equal(before, nnx.state(model))
    losses = runs.runs.run_losses[0]
    assert np.all(losses[:, 0] == losses[0, 0])
    # Every run sees the same masks step by step; tiny LRs change the loss very little.
    np.testing.assert_allclose(losses, np.broadcast_to(losses[0], losses.shape), rtol=1e-5)
    assert len(np.unique(np.round(losses[0], 4))) == 5
    # A run's first step is the sweep's first step (same params, batch and mask).
    np.testing.assert_allclose(losses[0, 0], first[0], rtol=1e-6)


@pytest.mark.parametrize("progress", [False, True])
def test_a_stop_only_float64_sees_in_a_sweep_cut_short_by_the_data(progress):
    """Sweep 1 runs out of batches after 20 steps and stops at step 10 by the float64
    rule, which float32 rounding hides from the loop (5 * b rounds up to s): it
    stopped, it did not run out of data."""
    b = np.float32(1 + 3 * 2**-23)
    s = np.float32(5 + 16 * 2**-23)
    assert np.float32(5) * b == s and 5.0 * float(b) < float(s)
    second = np.full(STEPS, 2.0, np.float32)
    second[0], second[10] = b, s
    values = np.concatenate([np.full(STEPS, 2.0, np.float32), second[:20]])

    def replay(p, batch):
        return batch[0] + 0.0 * jnp.sum(p["w"])

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(ran out|exhausted).*")  # no such notice
        result = lr_find(
            {"w": jnp.zeros(2)}, optax.sgd, iter([np.array([v]) for v in values]), replay,
            settings=Settings(num_sweeps=2, beta=0.0, diverge_factor=5.0),
            options=JaxOptions(progress=progress, chunk_size=7),
            start_lr=1e-5, end_lr=1e-3, num_steps=STEPS,
        )
    assert result.ensemble.stop_steps == [None, 10]
    assert "ran out" not in result.stop_reason and "exhausted" not in result.stop_reason
