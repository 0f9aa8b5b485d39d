"""EWA smoothing against a hand-written loop, in both conventions."""

import math
import re

import numpy as np
import pytest
from core_testing import reference_ewa
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfind_core.smoothing import EwaState, ewa_init, ewa_smooth, ewa_update

FAST = settings(max_examples=60, deadline=None)

losses_lists = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=1, max_size=60
)
betas = st.floats(min_value=0.0, max_value=0.995)


def torch_lr_finder_smoothing(losses, smooth_f=0.05):
    """torch-lr-finder 0.2.2: first loss raw, then smooth_f * loss + (1 - smooth_f) * prev."""
    history = []
    for iteration, loss in enumerate(losses):
        if iteration > 0:
            loss = smooth_f * loss + (1 - smooth_f) * history[-1]
        history.append(loss)
    return history


CURVE = [2.3, 2.1, 2.25, 1.9, 1.7, 1.75, 1.2, 0.9, 1.4, 3.0]


def test_debiased_first_values_by_hand():
    # beta=0.5: a0 = 0.5*2.3 = 1.15 -> 1.15/0.5 = 2.3;
    # a1 = 0.5*1.15 + 0.5*2.1 = 1.625 -> 1.625/0.75; a2 = 0.8125 + 1.125 = 1.9375 -> /0.875.
    smoothed = ewa_smooth([2.3, 2.1, 2.25], beta=0.5, debias=True)
    np.testing.assert_allclose(smoothed, [2.3, 1.625 / 0.75, 1.9375 / 0.875], rtol=1e-15)


def test_plain_first_values_by_hand():
    # beta=0.5, first value raw: 2.3, 0.5*2.3 + 0.5*2.1 = 2.2, 0.5*2.2 + 0.5*2.25 = 2.225.
    smoothed = ewa_smooth([2.3, 2.1, 2.25], beta=0.5, debias=False)
    np.testing.assert_allclose(smoothed, [2.3, 2.2, 2.225], rtol=1e-15)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.95, 0.98])
@pytest.mark.parametrize("debias", [True, False])
def test_matches_reference_loop(beta, debias):
    smoothed = ewa_smooth(CURVE, beta=beta, debias=debias)
    assert smoothed.dtype == np.float64
    assert smoothed.shape == (len(CURVE),)
    np.testing.assert_allclose(smoothed, reference_ewa(CURVE, beta, debias), rtol=1e-13)
    assert smoothed[0] == pytest.approx(CURVE[0], rel=1e-15)


@FAST
@given(losses=losses_lists, beta=betas, debias=st.booleans())
def test_matches_reference_loop_property(losses, beta, debias):
    smoothed = ewa_smooth(losses, beta=beta, debias=debias)
    np.testing.assert_allclose(smoothed, reference_ewa(losses, beta, debias), rtol=1e-9, atol=1e-9)


def test_torch_lr_finder_convention():
    rng = np.random.default_rng(1)
    losses = (2.0 + np.cumsum(rng.normal(-0.01, 0.05, 200))).tolist()
    expected = torch_lr_finder_smoothing(losses)
    smoothed = ewa_smooth(losses, beta=0.95, debias=False)
    assert smoothed[0] == losses[0]
    np.testing.assert_array_equal(smoothed, expected)  # bit for bit


@FAST
@given(
    value=st.floats(min_value=-1e6, max_value=1e6),
    length=st.integers(min_value=1, max_value=80),
    beta=betas,
    debias=st.booleans(),
)
def test_constant_curve_stays_constant(value, length, beta, debias):
    smoothed = ewa_smooth([value] * length, beta=beta, debias=debias)
    np.testing.assert_allclose(smoothed, value, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("debias", [True, False])
def test_beta_zero_returns_raw_losses(debias):
    assert np.array_equal(ewa_smooth(CURVE, beta=0.0, debias=debias), CURVE)


@FAST
@given(losses=losses_lists, debias=st.booleans())
def test_beta_zero_returns_raw_losses_property(losses, debias):
    assert np.array_equal(ewa_smooth(losses, beta=0.0, debias=debias), losses)


@FAST
@given(losses=losses_lists, beta=betas, debias=st.booleans())
def test_online_form_equals_whole_array_form(losses, beta, debias):
    state = ewa_init()
    online = []
    for loss in losses:
        state, smoothed = ewa_update(state, loss, beta=beta, debias=debias)
        online.append(smoothed)
    assert state.count == len(losses)
    assert np.array_equal(np.asarray(online), ewa_smooth(losses, beta=beta, debias=debias))


def test_state_is_plain_data():
    state = ewa_init()
    assert state == EwaState(count=0, average=0.0, beta_power=1.0)
    state, smoothed = ewa_update(state, 4.0, beta=0.5, debias=True)
    assert state == EwaState(count=1, average=2.0, beta_power=0.5)
    assert smoothed == 4.0
    state, smoothed = ewa_update(state, 2.0, beta=0.5, debias=True)
    assert state == EwaState(count=2, average=2.0, beta_power=0.25)
    assert smoothed == 2.0 / 0.75


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_propagates_to_later_values(bad):
    smoothed = ewa_smooth([3.0, 2.0, bad, 1.0, 0.5], beta=0.9)
    assert np.all(np.isfinite(smoothed[:2]))
    assert not np.any(np.isfinite(smoothed[2:]))


def test_empty_curve():
    assert ewa_smooth([]).shape == (0,)


@pytest.mark.parametrize(
    ("beta", "error", "message"),
    [
        (1.0, ValueError, "beta must be in [0, 1), got 1.0"),
        (-0.1, ValueError, "beta must be in [0, 1), got -0.1"),
        (math.nan, ValueError, "beta must be in [0, 1), got nan"),
        ("0.9", TypeError, "beta must be a real number in [0, 1), got str"),
        (True, TypeError, "beta must be a real number in [0, 1), got bool"),
    ],
)
def test_bad_beta(beta, error, message):
    with pytest.raises(error, match=re.escape(message)):
        ewa_smooth(CURVE, beta=beta)


def test_losses_must_be_one_dimensional():
    with pytest.raises(ValueError, match=re.escape("losses must be a 1-D array, got shape (2, 2)")):
        ewa_smooth([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.95, 0.98])
def test_whole_curve_form_equals_online_form_with_non_finite_losses(beta, debias):
    # ewa_smooth runs the online steps on plain floats: the same bits, NaN and inf included
    rng = np.random.default_rng(7)
    for trial in range(40):
        losses = rng.standard_normal(60) * 10.0 ** rng.uniform(-3, 3, 60)
        losses[rng.integers(0, 60)] = [math.nan, math.inf, -math.inf][trial % 3]
        state, online = ewa_init(), []
        for loss in losses.tolist():
            state, smoothed = ewa_update(state, loss, beta=beta, debias=debias)
            online.append(smoothed)
        whole = ewa_smooth(losses, beta=beta, debias=debias)
        assert whole.dtype == np.float64 and whole.shape == losses.shape
        assert np.array_equal(np.asarray(online, dtype=np.float64), whole, equal_nan=True)


def test_empty_curve_smooths_to_an_empty_float64_array():
    for debias in (True, False):
        smoothed = ewa_smooth([], beta=0.9, debias=debias)
        assert smoothed.dtype == np.float64 and smoothed.shape == (0,)
