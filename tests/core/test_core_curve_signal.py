"""The noise warning: a sweep whose smoothed curve falls no more than its noise allows."""

import numpy as np
import pytest

from lrfind_core import LRFindResult
from lrfind_core.curve_signal import MIN_FALL_IN_NOISE, fall_in_noise_units
from lrfind_core.schedules import exponential_schedule
from lrfind_core.shell import result_notices
from lrfind_core.smoothing import ewa_smooth

LRS = exponential_schedule(1e-7, 1e-3, 100)


def noise(seed, points=100):
    return 0.7 + 0.03 * np.random.default_rng(seed).standard_normal(points)


def test_a_curve_of_noise_measures_a_fall_of_a_few_noise_units():
    losses = noise(3)
    units, sigma = fall_in_noise_units(losses, ewa_smooth(losses, 0.98, True), 10, 0.98)
    assert units < MIN_FALL_IN_NOISE
    assert sigma == pytest.approx(0.03, rel=0.25)  # the batch-to-batch noise it was made with


def test_the_warning_names_the_noise_and_what_to_do():
    result = LRFindResult.from_curve(LRS, noise(2))  # its answer is not at an edge
    notices = [text for text in result_notices(result) if "its own noise" in text]
    assert len(notices) == 1
    assert "the curve may be noise" in notices[0] and "raise end_lr" in notices[0]
    assert f"the suggestion {result.suggestion:.3g} a guess" in notices[0]


def test_a_falling_curve_with_the_same_noise_is_not_warned_about():
    losses = noise(3) - 0.3 * np.linspace(0, 1, 100) ** 2
    units, _ = fall_in_noise_units(losses, ewa_smooth(losses, 0.98, True), 10, 0.98)
    assert units > 3 * MIN_FALL_IN_NOISE
    result = LRFindResult.from_curve(LRS, losses)
    assert not [text for text in result_notices(result) if "its own noise" in text]


def test_short_noiseless_or_non_finite_curves_are_not_measured():
    assert fall_in_noise_units(noise(0, 25), noise(0, 25), 10, 0.98) is None  # 15 points
    line = np.linspace(1.0, 0.5, 100)  # no noise: every neighbour differs alike
    assert fall_in_noise_units(line, line, 10, 0.98) is not None  # a steady fall measures
    flat = np.full(100, 0.7)
    assert fall_in_noise_units(flat, flat, 10, 0.98) is None
    broken = noise(1)
    broken[25] = np.nan  # measured up to the first non-finite point: 15 points
    assert fall_in_noise_units(broken, ewa_smooth(broken, 0.98, True), 10, 0.98) is None


def test_no_noise_warning_beside_an_edge_warning_or_for_a_curve_that_stopped():
    at_start = LRFindResult.from_curve(LRS, noise(3))  # its answer sits at the start
    notices = result_notices(at_start)
    assert len(notices) == 1 and "sits at the start of the swept range" in notices[0]
    diverging = np.concatenate([noise(2)[:80], 0.7 * 4 ** np.linspace(1, 3, 20)])
    stopped = LRFindResult.from_curve(LRS, diverging)
    assert stopped.stop_step is not None
    assert not [text for text in result_notices(stopped) if "its own noise" in text]
