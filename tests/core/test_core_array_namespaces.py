"""The online rule is written once over an array namespace: python floats, numpy, jax.numpy.

Running the same functions with ``xp=numpy`` (float64) must give exactly the values
of the plain-float namespace, and with ``xp=jax.numpy`` inside ``jax.jit`` (float32)
values close to them and the same stop step.
"""

import math

import numpy as np
import pytest

from lrfind_core.array_namespace import python_scalars
from lrfind_core.monitor import MonitorSettings, monitor_fold, monitor_init, monitor_update
from lrfind_core.settings import resolve_settings
from lrfind_core.smoothing import ewa_init, ewa_smooth, ewa_update
from lrfind_core.stopping import (
    STOP_DIVERGED,
    STOP_NON_FINITE,
    STOP_NONE,
    find_stop,
    stop_init,
    stop_update,
)

# Falls from 2.0 to about 1.0 over 40 steps, then rises steeply: with beta=0.9 the smoothed
# loss crosses 4x (and 5x) its best well inside float32 precision.
STEPS = np.arange(60)
DIVERGING = 2.0 - STEPS / 40.0 + np.where(STEPS > 40, 0.3 * (STEPS - 40.0) ** 2, 0.0)
WITH_NAN = np.linspace(2.0, 1.0, 30)
WITH_NAN[17] = np.nan
SETTINGS = [
    MonitorSettings(beta=0.9, debias=True, diverge_factor=4.0),
    MonitorSettings(beta=0.95, debias=False, diverge_factor=5.0),
    MonitorSettings(beta=0.0, debias=True, diverge_factor=4.0),
]
SETTING_IDS = ["debiased", "torch-lr-finder", "unsmoothed"]


def run_monitor(losses, monitor_settings, xp, dtype=None):
    state = monitor_init(xp, dtype)
    smoothed, codes = [], []
    for loss in losses:
        state, value, code = monitor_update(state, loss, monitor_settings, xp)
        smoothed.append(value)
        codes.append(code)
    return smoothed, codes


def first_stop(codes):
    stops = [i for i, code in enumerate(codes) if int(code) != STOP_NONE]
    return (stops[0], int(codes[stops[0]])) if stops else (None, STOP_NONE)


@pytest.mark.parametrize("curve", [DIVERGING, WITH_NAN], ids=["diverging", "nan"])
@pytest.mark.parametrize("monitor_settings", SETTINGS, ids=SETTING_IDS)
def test_numpy_float64_equals_python_floats_exactly(curve, monitor_settings):
    floats_smoothed, floats_codes = run_monitor(curve.tolist(), monitor_settings, python_scalars)
    numpy_smoothed, numpy_codes = run_monitor(
        [np.float64(x) for x in curve], monitor_settings, np, np.float64
    )
    assert all(np.asarray(v).dtype == np.float64 for v in numpy_smoothed)
    assert np.array_equal(
        np.asarray(numpy_smoothed, dtype=np.float64), floats_smoothed, equal_nan=True
    )
    assert [int(c) for c in numpy_codes] == [int(c) for c in floats_codes]


@pytest.mark.parametrize("curve", [DIVERGING, WITH_NAN], ids=["diverging", "nan"])
@pytest.mark.parametrize("monitor_settings", SETTINGS, ids=SETTING_IDS)
def test_online_monitor_agrees_with_whole_curve_functions(curve, monitor_settings):
    smoothed, codes = run_monitor(curve.tolist(), monitor_settings, python_scalars)
    expected = ewa_smooth(curve, monitor_settings.beta, monitor_settings.debias)
    assert np.array_equal(np.asarray(smoothed), expected, equal_nan=True)
    assert first_stop(codes) == find_stop(
        curve, expected, diverge_factor=monitor_settings.diverge_factor
    )


def test_expected_stops_of_the_fixtures():
    # The NaN at step 17 stops with the non-finite code whatever the smoothing.
    for monitor_settings in SETTINGS:
        _, codes = run_monitor(WITH_NAN.tolist(), monitor_settings, python_scalars)
        assert first_stop(codes) == (17, STOP_NON_FINITE)
    # Unsmoothed, the curve's best is 2 - 40/40 = 1.0 at step 40 (the rise starts after it),
    # and 2 - t/40 + 0.3 (t-40)^2 first exceeds 4 * 1.0 at t=44 (3.625 at t=43, 5.7 at t=44).
    _, codes = run_monitor(DIVERGING.tolist(), SETTINGS[2], python_scalars)
    assert first_stop(codes) == (44, STOP_DIVERGED)


def test_python_namespace_min_max_propagate_nan_like_numpy():
    for a, b in [(1.0, math.nan), (math.nan, 1.0), (math.nan, math.nan)]:
        assert math.isnan(python_scalars.minimum(a, b)) == bool(np.isnan(np.minimum(a, b)))
        assert math.isnan(python_scalars.maximum(a, b)) == bool(np.isnan(np.maximum(a, b)))
    assert python_scalars.minimum(1.0, 2.0) == 1.0
    assert python_scalars.maximum(1.0, 2.0) == 2.0
    assert python_scalars.where(True, 1, 2) == 1
    assert python_scalars.where(False, 1, 2) == 2


@pytest.mark.parametrize("monitor_settings", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("curve", [DIVERGING, WITH_NAN], ids=["diverging", "nan"])
def test_jax_jit_float32_matches_float64(curve, monitor_settings):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def step(state, loss):
        state, smoothed, code = monitor_update(state, loss, monitor_settings, xp=jnp)
        return state, (smoothed, code)

    @jax.jit
    def sweep(losses):
        _, (smoothed, codes) = jax.lax.scan(step, monitor_init(jnp, jnp.float32), losses)
        return smoothed, codes

    smoothed, codes = sweep(jnp.asarray(curve, dtype=jnp.float32))
    smoothed = np.asarray(smoothed)
    assert smoothed.dtype == np.float32

    expected = ewa_smooth(curve, monitor_settings.beta, monitor_settings.debias)
    stop, code = find_stop(curve, expected, diverge_factor=monitor_settings.diverge_factor)
    assert stop is not None
    assert first_stop(np.asarray(codes).tolist()) == (stop, code)
    np.testing.assert_allclose(smoothed[:stop], expected[:stop], rtol=1e-5)


@pytest.mark.parametrize("debias", [True, False])
def test_jax_ewa_and_stop_update_inside_jit(debias):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    curve = (1.5 + np.sin(np.arange(25) / 3.0)).tolist()

    @jax.jit
    def last_states(losses):
        ewa, stop = ewa_init(jnp, jnp.float32), stop_init(jnp, jnp.float32)
        values = []
        for index in range(losses.shape[0]):
            ewa, smoothed = ewa_update(ewa, losses[index], beta=0.8, debias=debias, xp=jnp)
            stop, _ = stop_update(
                stop, losses[index], smoothed, index == 0, diverge_factor=4.0, xp=jnp
            )
            values.append(smoothed)
        return jnp.stack(values), stop

    values, stop = last_states(jnp.asarray(curve, dtype=jnp.float32))
    expected = ewa_smooth(curve, 0.8, debias)
    np.testing.assert_allclose(np.asarray(values), expected, rtol=1e-5)
    assert float(stop.best) == pytest.approx(expected.min(), rel=1e-5)
    assert float(stop.first) == pytest.approx(expected[0], rel=1e-5)


@pytest.mark.parametrize("preset", ["lrfind", "fastai", "torch-lr-finder"])
def test_monitor_fold_in_chunks_is_the_step_by_step_monitor(preset):
    """Folding a curve a chunk at a time gives the online monitor's first stop."""
    config = resolve_settings(preset)
    settings = MonitorSettings(config.beta, config.debias, config.diverge_factor)
    curve = [3.0, 2.5, 2.0, 1.8, 1.7, 1.9, 2.5, 4.0, 8.0, 20.0, 50.0, math.nan]
    state, expected = monitor_init(), None
    for index, value in enumerate(curve):
        state, _, code = monitor_update(state, value, settings)
        if code:
            expected = index
            break
    state, stop, start = monitor_init(), None, 0
    for chunk in (curve[0:3], curve[3:4], curve[4:9], curve[9:]):
        state, fired = monitor_fold(state, chunk, settings)
        if fired is not None:
            stop = start + fired
            break
        start += len(chunk)
    assert expected is not None and stop == expected
    assert monitor_fold(monitor_init(), [], settings) == (monitor_init(), None)
