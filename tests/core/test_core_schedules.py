"""Schedules: closed-form values, exact endpoints, float64, and argument errors."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfind_core.schedules import SCHEDULES, exponential_schedule, linear_schedule, make_schedule

FAST = settings(max_examples=60, deadline=None)

starts = st.floats(min_value=1e-9, max_value=1.0)
ratios = st.floats(min_value=1.5, max_value=1e10)
steps = st.integers(min_value=2, max_value=300)


def test_schedule_names():
    assert SCHEDULES == ("exponential", "linear")


def test_exponential_one_point_per_decade():
    # 1e-8 .. 1 over 9 points: one decade per step, lr_i = 10 ** (i - 8).
    lrs = exponential_schedule(1e-8, 1.0, 9)
    assert lrs.dtype == np.float64
    assert lrs.shape == (9,)
    np.testing.assert_allclose(lrs, [10.0 ** (i - 8) for i in range(9)], rtol=1e-13)
    assert lrs[0] == 1e-8
    assert lrs[-1] == 1.0


def test_exponential_fastai_convention_stops_short_of_end():
    # fastai: lr_i = s * (e / s) ** (i / N), i = 0..N-1; with s=1e-7, e=10, N=100 the
    # point i=50 is 1e-7 * (1e8) ** 0.5 = 1e-3 and the last is 10 ** (-7 + 8 * 99 / 100).
    lrs = exponential_schedule(1e-7, 10.0, 100, include_end=False)
    assert lrs.shape == (100,)
    assert lrs[0] == 1e-7
    assert lrs[50] == pytest.approx(1e-3, rel=1e-13)
    assert lrs[-1] == pytest.approx(10.0 ** (-7 + 8 * 99 / 100), rel=1e-13)
    assert lrs[-1] < 10.0


@FAST
@given(start=starts, ratio=ratios, num_steps=steps, include_end=st.booleans())
def test_exponential_closed_form(start, ratio, num_steps, include_end):
    end = start * ratio
    lrs = exponential_schedule(start, end, num_steps, include_end=include_end)
    denominator = num_steps - 1 if include_end else num_steps
    expected = [start * (end / start) ** (i / denominator) for i in range(num_steps)]
    assert lrs.dtype == np.float64
    assert lrs.shape == (num_steps,)
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[0] == start
    if include_end:
        assert lrs[-1] == end
    else:
        assert lrs[-1] < end
    assert np.all(np.diff(lrs) > 0)


def test_linear_values():
    lrs = linear_schedule(1.0, 2.0, 5)
    assert lrs.dtype == np.float64
    assert lrs.tolist() == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert linear_schedule(1.0, 2.0, 4, include_end=False).tolist() == [1.0, 1.25, 1.5, 1.75]


@FAST
@given(start=starts, ratio=ratios, num_steps=steps, include_end=st.booleans())
def test_linear_closed_form(start, ratio, num_steps, include_end):
    end = start * ratio
    lrs = linear_schedule(start, end, num_steps, include_end=include_end)
    denominator = num_steps - 1 if include_end else num_steps
    expected = [start + (i / denominator) * (end - start) for i in range(num_steps)]
    assert lrs.dtype == np.float64
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[0] == start
    if include_end:
        assert lrs[-1] == end
    else:
        assert lrs[-1] < end


@pytest.mark.parametrize("include_end", [True, False])
def test_make_schedule_dispatches_by_name(include_end):
    exp = make_schedule("exponential", 1e-6, 1.0, 20, include_end=include_end)
    lin = make_schedule("linear", 1e-6, 1.0, 20, include_end=include_end)
    assert np.array_equal(exp, exponential_schedule(1e-6, 1.0, 20, include_end=include_end))
    assert np.array_equal(lin, linear_schedule(1e-6, 1.0, 20, include_end=include_end))
    assert not np.array_equal(exp, lin)


def test_numpy_scalars_are_accepted():
    lrs = exponential_schedule(np.float32(0.5), np.float64(2.0), np.int64(3))
    assert lrs.tolist() == [0.5, 1.0, 2.0]


BUILDERS = [
    pytest.param(exponential_schedule, id="exponential"),
    pytest.param(linear_schedule, id="linear"),
    pytest.param(lambda *a: make_schedule("linear", *a), id="make_schedule"),
]

BAD_ARGUMENTS = [
    # (start_lr, end_lr, num_steps), error type, message
    ((0.0, 1.0, 10), ValueError, "start_lr must be a finite number > 0, got 0.0"),
    ((-1e-3, 1.0, 10), ValueError, "start_lr must be a finite number > 0, got -0.001"),
    ((math.nan, 1.0, 10), ValueError, "start_lr must be a finite number > 0, got nan"),
    ((1e-3, math.inf, 10), ValueError, "end_lr must be a finite number > 0, got inf"),
    ((1e-3, -1.0, 10), ValueError, "end_lr must be a finite number > 0, got -1.0"),
    ((1.0, 1.0, 10), ValueError, "start_lr must be < end_lr, got start_lr=1.0, end_lr=1.0"),
    ((2.0, 1.0, 10), ValueError, "start_lr must be < end_lr, got start_lr=2.0, end_lr=1.0"),
    ((1e-3, 1.0, 1), ValueError, "num_steps must be an int >= 2, got 1"),
    ((1e-3, 1.0, 0), ValueError, "num_steps must be an int >= 2, got 0"),
    ((1e-3, 1.0, 10.0), TypeError, "num_steps must be an int, got float"),
    ((1e-3, 1.0, True), TypeError, "num_steps must be an int, got bool"),
    ((1e-3, 1.0, "10"), TypeError, "num_steps must be an int, got str"),
    (("1e-3", 1.0, 10), TypeError, "start_lr must be a real number, got str"),
    ((1e-3, None, 10), TypeError, "end_lr must be a real number, got NoneType"),
    ((np.array(1e-3), 1.0, 10), TypeError,
     "start_lr must be a real number, got ndarray: pass a Python float, start_lr=float(...)"),
]


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize(("args", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments_raise_clear_errors(build, args, error, message):
    with pytest.raises(error, match=re.escape(message)):
        build(*args)


def test_unknown_schedule_name():
    with pytest.raises(
        ValueError, match=re.escape("unknown schedule 'cosine'; allowed: ['exponential', 'linear']")
    ):
        make_schedule("cosine", 1e-3, 1.0, 10)
    with pytest.raises(TypeError, match="schedule must be a string"):
        make_schedule(None, 1e-3, 1.0, 10)
