"""The stop rule: non-finite losses, the ratio rule, and its continuation below zero."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfind_core.smoothing import ewa_smooth
from lrfind_core.stopping import (
    STOP_DIVERGED,
    STOP_NON_FINITE,
    STOP_NONE,
    STOP_REASONS,
    StopState,
    find_stop,
    stop_init,
    stop_update,
)

FAST = settings(max_examples=80, deadline=None)

finite_curves = st.lists(
    st.floats(min_value=-100.0, max_value=100.0, allow_nan=False), min_size=1, max_size=50
)
factors = st.sampled_from([1.5, 2.0, 4.0, 5.0])


def reference_stop(raw, smoothed, k):
    """The module docstring's rule, brute force: min and first over the prefix."""
    for t in range(len(raw)):
        if not math.isfinite(raw[t]):
            return t, STOP_NON_FINITE
        s, b, f = smoothed[t], min(smoothed[: t + 1]), smoothed[0]
        diverged = s > k * b if b > 0 else s - b > (k - 1) * max(abs(b), f - b)
        if diverged:
            return t, STOP_DIVERGED
    return None, STOP_NONE


def stop_of(curve, k=4.0):
    """Stop of a curve judged as its own smoothed curve (no smoothing)."""
    return find_stop(curve, curve, diverge_factor=k)


def test_codes_and_reasons():
    assert (STOP_NONE, STOP_NON_FINITE, STOP_DIVERGED) == (0, 1, 2)
    assert STOP_REASONS == {STOP_NON_FINITE: "non-finite loss", STOP_DIVERGED: "diverged"}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "+inf", "-inf"])
def test_non_finite_at_step_zero(bad):
    assert stop_of([bad, 1.0, 0.5]) == (0, STOP_NON_FINITE)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "+inf", "-inf"])
def test_non_finite_later(bad):
    curve = [3.0, 2.0, 1.0, bad, 0.5, 0.4]
    assert stop_of(curve) == (3, STOP_NON_FINITE)
    # Through real smoothing too: the smoothed value at the bad step is non-finite as well.
    assert find_stop(curve, ewa_smooth(curve, 0.98), diverge_factor=4.0) == (3, STOP_NON_FINITE)


def test_it_is_the_raw_loss_that_must_be_finite():
    assert find_stop([1.0, 1.0, math.nan], [1.0, 1.0, 1.0], diverge_factor=4.0) == (
        2,
        STOP_NON_FINITE,
    )


def test_never_diverging_curve():
    curve = np.linspace(5.0, 1.0, 100)
    assert stop_of(curve) == (None, STOP_NONE)
    assert find_stop(curve, ewa_smooth(curve), diverge_factor=4.0) == (None, STOP_NONE)
    assert stop_of([]) == (None, STOP_NONE)


def test_classic_ratio_rule_k4():
    # Best is 1.0 (step 3). 4.0 is not > 4 * 1.0; 4.1 at step 7 is the first that is.
    curve = [10.0, 5.0, 2.0, 1.0, 3.0, 3.9, 4.0, 4.1, 5.0]
    assert stop_of(curve, k=4.0) == (7, STOP_DIVERGED)


def test_classic_ratio_rule_k5():
    # torch-lr-finder's factor: 5.0 is not > 5 * 1.0, 5.5 is.
    curve = [10.0, 5.0, 2.0, 1.0, 3.0, 3.9, 4.0, 4.1, 5.0, 5.5]
    assert stop_of(curve, k=5.0) == (9, STOP_DIVERGED)


def test_best_includes_current_step():
    # A loss that only falls is always its own best, so it never diverges however high it
    # starts; from a best of 2.0, k=4 needs a loss strictly above 8.0.
    assert stop_of([1e6, 10.0, 1.0, 0.1]) == (None, STOP_NONE)
    assert stop_of([2.0, 8.0]) == (None, STOP_NONE)
    assert stop_of([2.0, 8.5]) == (1, STOP_DIVERGED)


def test_below_zero_then_rising_gap_rule_fall_term():
    # f = 1, best b = -2: scale = max(|b|, f - b) = max(2, 3) = 3, k = 4:
    # stops at the first s with s - (-2) > 3 * 3, i.e. s > 7. 7.0 is not, 7.5 is.
    curve = [1.0, 0.0, -1.0, -2.0, 0.0, 3.0, 6.9, 7.0, 7.5]
    assert stop_of(curve, k=4.0) == (8, STOP_DIVERGED)


def test_below_zero_then_rising_gap_rule_abs_term():
    # f = -1, best b = -10: scale = max(10, 9) = 10, k = 4: stops once s + 10 > 30.
    # 19 (gap 29) would already stop with the fall term alone (29 > 27); 21 (gap 31) stops.
    curve = [-1.0, -5.0, -10.0, 5.0, 19.0, 21.0]
    assert stop_of(curve, k=4.0) == (5, STOP_DIVERGED)


def test_a_best_of_exactly_zero_uses_the_gap_rule():
    # b = 0 is not > 0: scale = max(0, f - b) = 1, so 0.5 (gap 0.5 <= 3) does not stop,
    # where a ratio rule (0.5 > 4 * 0) would; 3.5 (gap 3.5 > 3) does.
    assert stop_of([1.0, 0.0, 0.5, 3.0]) == (None, STOP_NONE)
    assert stop_of([1.0, 0.0, 0.5, 3.5]) == (3, STOP_DIVERGED)


def test_negative_curve_that_keeps_falling_never_stops():
    curve = -np.geomspace(1e-3, 1e3, 300)
    assert stop_of(curve) == (None, STOP_NONE)
    assert find_stop(curve, ewa_smooth(curve), diverge_factor=4.0) == (None, STOP_NONE)


def test_crossing_zero_does_not_stop_on_small_noise():
    # best -0.001 just below zero, then a wiggle to 0.01: the gap 0.011 is far more than
    # 3 * |b| = 0.003 but far less than 3 * (f - b) = 3.003, so the fall term keeps it going.
    curve = [1.0, 0.5, 0.1, 0.02, -0.001, 0.01, -0.2, -0.5, -0.3, -0.6, -1.0]
    assert stop_of(curve, k=4.0) == (None, STOP_NONE)


def test_noisy_raw_curve_crossing_zero_with_default_smoothing():
    # 1 -> -1 over 200 steps (0.01 a step) with alternating +-0.006 noise, so the raw loss
    # rises by 0.002 every other step; smoothed with beta=0.98 it must run to the end.
    steps = np.arange(200)
    raw = 1.0 - 0.01 * steps + 0.006 * (-1.0) ** steps
    assert np.any(np.diff(raw) > 0)
    assert find_stop(raw, ewa_smooth(raw, 0.98), diverge_factor=4.0) == (None, STOP_NONE)


@FAST
@given(curve=finite_curves, k=factors)
def test_matches_brute_force_reference(curve, k):
    assert stop_of(curve, k=k) == reference_stop(curve, curve, k)


@FAST
@given(curve=finite_curves, k=factors)
def test_non_increasing_curves_never_stop(curve, k):
    falling = sorted(curve, reverse=True)
    assert stop_of(falling, k=k) == (None, STOP_NONE)


@FAST
@given(curve=st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=50), k=factors)
def test_positive_curves_follow_the_ratio_rule(curve, k):
    expected = next(
        ((t, STOP_DIVERGED) for t in range(len(curve)) if curve[t] > k * min(curve[: t + 1])),
        (None, STOP_NONE),
    )
    assert stop_of(curve, k=k) == expected


def test_online_state_tracks_best_and_first():
    state = stop_init()
    assert state == StopState(best=0.0, first=0.0)
    codes = []
    for index, value in enumerate([3.0, 1.0, 2.0]):
        state, code = stop_update(state, value, value, index == 0, diverge_factor=4.0)
        codes.append(code)
    assert state == StopState(best=1.0, first=3.0)
    assert codes == [STOP_NONE, STOP_NONE, STOP_NONE]
    state, code = stop_update(state, 4.5, 4.5, False, diverge_factor=4.0)
    assert code == STOP_DIVERGED


def test_length_mismatch():
    with pytest.raises(
        ValueError, match=re.escape("losses and smoothed_losses must have the same length")
    ):
        find_stop([1.0, 2.0], [1.0], diverge_factor=4.0)


def online_stop(raw, smoothed, k):
    """The online rule, step by step on Python floats (what the torch backend runs)."""
    state = stop_init()
    for t, (loss, value) in enumerate(zip(raw, smoothed, strict=True)):
        state, code = stop_update(state, loss, value, t == 0, diverge_factor=k)
        if code != STOP_NONE:
            return t, code
    return None, STOP_NONE


SPECIAL_VALUES = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0, 5e-324]


def test_whole_curve_stop_equals_the_online_rule_with_extreme_values():
    """find_stop judges all steps at once; it must give the online rule's answer
    bit for bit, also with NaN, infinities, overflowing and signed-zero values."""
    rng = np.random.default_rng(1)
    fired = 0
    for trial in range(1500):
        n = int(rng.integers(1, 30))
        raw = rng.standard_normal(n) * 10 ** rng.uniform(-3, 3) + rng.uniform(-2, 3) * (trial % 2)
        if rng.random() < 0.4:
            raw[rng.integers(n)] = rng.choice(SPECIAL_VALUES)
        k = float(rng.choice([1.0001, 1.5, 4.0, 1e12]))
        smoothed = ewa_smooth(raw, float(rng.choice([0.0, 0.5, 0.98])), bool(trial % 3))
        expected = online_stop(raw.tolist(), smoothed.tolist(), k)
        assert find_stop(raw, smoothed, diverge_factor=k) == expected, (raw, smoothed, k)
        fired += expected[0] is not None
    assert 300 < fired < 1400  # both outcomes are well covered


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((), ())])
def test_whole_curve_stop_needs_1d_curves(shapes):
    raw, smoothed = (np.ones(shape) for shape in shapes)
    with pytest.raises(ValueError, match=r"must be 1-D curves, got shapes"):
        find_stop(raw, smoothed, diverge_factor=4.0)


def test_empty_curve_never_stops():
    assert find_stop([], [], diverge_factor=4.0) == (None, STOP_NONE)
