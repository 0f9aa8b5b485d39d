"""execution="per_step" against "while_loop": the same sweeps, stops and caching;
"auto" picks per_step for convolutions on the CPU; the runner stops dispatching."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lrfind_jax_testing import (
    ADAM,
    QUIET,
    SGD,
    assert_tree_equal,
    host_copy,
    init_mlp,
    make_data,
    mlp_loss,
)

from lrfind_jax import JaxOptions, Settings, lr_find
from lrfind_jax.sweep import per_step_runner, uses_convolution

STEPS = 40
SWEEP = {"start_lr": 1e-4, "end_lr": 10.0, "num_steps": STEPS}


@pytest.fixture(scope="module", name="params")
def mlp_params() -> dict[str, jax.Array]:
    """The MLP that every per-step/while-loop comparison starts from."""
    return init_mlp(0)


@pytest.fixture(scope="module", name="data")
def mlp_data() -> tuple[np.ndarray, np.ndarray]:
    """STEPS stacked batches."""
    return make_data(STEPS)


def run_both(
    params: Any, data: Any, progress: bool = False, chunk_size: int = 20, **keywords: Any
) -> tuple[Any, Any]:
    """The same lr_find call as one while loop and as per-step dispatches."""

    def options(execution: str) -> JaxOptions:
        return JaxOptions(progress=progress, chunk_size=chunk_size, execution=execution)

    looped = lr_find(params, ADAM, data, mlp_loss, options=options("while_loop"), **keywords)
    stepped = lr_find(params, ADAM, data, mlp_loss, options=options("per_step"), **keywords)
    assert looped.meta["execution"] == "while_loop"
    assert stepped.meta["execution"] == "per_step"
    return looped, stepped


@pytest.mark.parametrize("progress", [False, True])
def test_per_step_sweep_matches_the_while_loop(params, data, progress):
    before = host_copy(params)
    looped, stepped = run_both(params, data, progress=progress, chunk_size=7, **SWEEP)
    assert looped.stop_step is not None and looped.stop_step < STEPS - 1
    assert stepped.stop_step == looped.stop_step
    assert stepped.stop_reason == looped.stop_reason
    np.testing.assert_allclose(stepped.losses, looped.losses, rtol=1e-6)
    np.testing.assert_array_equal(stepped.lrs, looped.lrs)
    assert stepped.suggestion == pytest.approx(looped.suggestion, rel=1e-12)
    assert_tree_equal(before, params)


def test_per_step_k_sweeps_and_independent_runs_match(params, data):
    looped, stepped = run_both(params, make_data(3 * STEPS), settings=Settings(num_sweeps=3),
                               **SWEEP)
    # per_step runs them one by one (unbatched), the while loop vmapped: float32 rounding
    # apart, growing near divergence
    assert stepped.meta["runs_one_by_one"] and not looped.meta["runs_one_by_one"]
    for mine, theirs, stop in zip(stepped.ensemble.sweep_losses, looped.ensemble.sweep_losses,
                                  looped.ensemble.stop_steps, strict=True):
        calm = len(theirs) if stop is None else stop - 4  # rounding grows as the loss diverges
        np.testing.assert_allclose(mine[:calm], theirs[:calm], rtol=1e-5, equal_nan=True)
        np.testing.assert_allclose(mine[calm:], theirs[calm:], rtol=1e-3, equal_nan=True)
    assert stepped.stop_step == looped.stop_step
    grid = Settings(start_lr=1e-3, end_lr=30.0, independent_lrs=6, steps_per_lr=5)
    looped, stepped = run_both(params, make_data(5), mode="independent", settings=grid)
    np.testing.assert_allclose(stepped.runs.run_losses, looped.runs.run_losses, rtol=1e-5,
                               equal_nan=True)
    np.testing.assert_allclose(stepped.losses, looped.losses, rtol=1e-6, equal_nan=True)


def test_per_step_is_deterministic_and_cached(params, data):
    per_step = JaxOptions(execution="per_step", progress=False)
    first = lr_find(params, SGD, data, mlp_loss, options=per_step, **SWEEP)
    again = lr_find(params, SGD, data, mlp_loss, options=per_step, **SWEEP)
    assert not again.meta["compiled"] and again.meta["compile_time_s"] == 0.0
    np.testing.assert_array_equal(first.losses, again.losses)


def test_auto_uses_the_while_loop_without_convolutions(params, data):
    result = lr_find(params, ADAM, data, mlp_loss, options=QUIET, **SWEEP)
    assert result.meta["execution"] == "while_loop"


def conv_params() -> dict[str, jax.Array]:
    key = jax.random.key(3)
    return {"kernel": jax.random.normal(key, (3, 3, 2, 4)) * 0.3, "head": jnp.ones((4, 3)) * 0.1}


def conv_loss(params: dict[str, jax.Array], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """A one-layer NHWC conv net, mean-pooled into 3 classes."""
    images, labels = batch
    features = jax.lax.conv_general_dilated(
        images, params["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    logits = jax.nn.relu(features).mean(axis=(1, 2)) @ params["head"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_auto_uses_per_step_for_convolutions_on_the_cpu():
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(12, 4, 6, 6, 2)).astype(np.float32),
            rng.integers(0, 3, size=(12, 4)).astype(np.int32))
    params = conv_params()
    sweep = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 12}
    auto = lr_find(params, ADAM, data, conv_loss, options=QUIET, **sweep)
    assert jax.devices()[0].platform == "cpu"
    assert auto.meta["execution"] == "per_step"
    looped = lr_find(params, ADAM, data, conv_loss,
                     options=JaxOptions(progress=False, execution="while_loop"), **sweep)
    np.testing.assert_allclose(auto.losses, looped.losses, rtol=1e-5)


def test_uses_convolution_finds_convolutions_in_nested_jaxprs():
    params = conv_params()
    batch = (jnp.ones((2, 6, 6, 2)), jnp.zeros(2, jnp.int32))
    assert uses_convolution(jax.grad(conv_loss), params, batch)

    def inside_scan(p: Any, b: Any) -> Any:
        return jax.lax.scan(lambda c, _: (c + conv_loss(p, b), None), 0.0, None, length=2)[0]

    assert uses_convolution(inside_scan, params, batch)
    inputs, labels = make_data(1)
    assert not uses_convolution(mlp_loss, init_mlp(0), (inputs[0], labels[0]))


def test_runner_stops_dispatching_once_every_run_is_done():
    calls: list[int] = []

    def step(carry: Any, inputs: Any) -> tuple[Any, jax.Array]:
        calls.append(1)
        new = carry._replace(step=carry.step + 1)
        return new, jnp.asarray(int(new.step[0]) >= 3)

    State = namedtuple("State", "step")
    Inputs = namedtuple("Inputs", "end")
    run = per_step_runner(step, None, None)
    # One run: the step and the end have the leading run axis.
    final = run(State(jnp.zeros(1, jnp.int32)), Inputs(np.full(1, 50, np.int32)))
    # done flags of finished computations are read without waiting; on the CPU
    # a flag is ready right after dispatch, so the runner stops at the third.
    assert int(final.step[0]) == len(calls)
    assert 3 <= len(calls) < 50
