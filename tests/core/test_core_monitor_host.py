"""The host form of the monitor is monitor_update, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfind_core.monitor import (
    MonitorSettings,
    host_update,
    monitor_fold,
    monitor_init,
    monitor_update,
)

SPECIAL = [0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, math.nan, math.inf, -math.inf]


def _assert_same_run(losses: list[float], rule: MonitorSettings) -> None:
    reference = host = monitor_init()
    for loss in losses:
        reference, _, expected = monitor_update(reference, loss, rule)
        host, code = host_update(host, loss, rule)
        assert code == expected and type(code) is int
        assert repr(host) == repr(reference)  # exact floats; NaN equal to NaN


@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("beta", [0.0, 0.6, 0.98])
@pytest.mark.parametrize("factor", [1.0001, 4.0, 1e12])
def test_host_update_equals_monitor_update(debias, beta, factor):
    rule = MonitorSettings(beta, debias, factor)
    rng = np.random.default_rng(11)
    for trial in range(30):
        scale = 10.0 ** rng.uniform(-6, 6)
        losses = (rng.standard_normal(40) * scale + rng.uniform(-2, 2) * scale).tolist()
        for position in rng.integers(0, 40, trial % 4):
            losses[position] = SPECIAL[int(rng.integers(0, len(SPECIAL)))]
        _assert_same_run(losses, rule)


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=300, deadline=None)
@given(losses=st.lists(floats, max_size=30), beta=st.sampled_from([0.0, 0.5, 0.9, 0.98]),
       debias=st.booleans(), factor=st.sampled_from([1.5, 4.0, 5.0]))
def test_host_update_equals_monitor_update_on_any_floats(losses, beta, debias, factor):
    _assert_same_run(losses, MonitorSettings(beta, debias, factor))


def test_fold_stops_where_the_rule_fires():
    rule = MonitorSettings(0.0, True, 4.0)
    state, offset = monitor_fold(monitor_init(), [3.0, 2.0, 1.0, 3.9, 4.1, 1.0], rule)
    assert offset == 4  # 4.1 > 4 * best (1.0)
    assert state.ewa.count == 5 and state.stop.best == 1.0
    state, offset = monitor_fold(monitor_init(), [2.0, math.nan], rule)
    assert offset == 1
    assert monitor_fold(monitor_init(), [2.0, 1.0], rule)[1] is None
