"""Suggestions for a schedule: the factor table, clipping, curve kinds."""

import numpy as np
import pytest
from core_testing import runs_result, sweeps_result

from lrfind_core import LRFindResult
from lrfind_core.schedule_aware import SCHEDULE_FACTORS, curve_kind
from lrfind_core.schedules import exponential_schedule
from lrfind_core.settings import resolve_settings

LRS = exponential_schedule(1e-6, 10.0, 100)


def bowl(n: int = 100) -> np.ndarray:
    """Falls to a minimum at point 70, then rises steeply."""
    steps = np.arange(n, dtype=np.float64)
    return 2.0 - 1.5 / (1.0 + np.exp(-(steps - 40) / 5)) + np.maximum(0, steps - 70) ** 2 / 20


def result_for(schedule: str, **settings) -> LRFindResult:
    return LRFindResult.from_curve(LRS, bowl(), for_schedule=schedule, **settings)


@pytest.mark.parametrize("method", ["valley", "steep", "minimum", "slide"])
@pytest.mark.parametrize("schedule", ["one_cycle", "constant"])
def test_the_lr_is_the_curve_reading_times_the_shipped_factor(method, schedule):
    raw = result_for("curve").suggest(method)
    adapted = result_for(schedule).suggest(method)
    factor = SCHEDULE_FACTORS["sweep"][method][schedule]
    assert adapted.curve_lr == raw.lr == raw.curve_lr
    assert adapted.for_schedule == schedule
    expected = np.clip(raw.lr * factor, LRS[0], LRS[-1])
    assert adapted.lr == pytest.approx(expected, rel=1e-12)
    assert adapted.index == int(np.argmin(np.abs(np.log(LRS) - np.log(adapted.lr))))
    assert f"x{factor:.3g} for {schedule}" in adapted.reason


def test_the_default_is_minimum_for_one_cycle_and_constant_is_half_a_decade_lower():
    result = LRFindResult.from_curve(LRS, bowl())
    assert (result.settings.method, result.settings.for_schedule) == ("minimum", "one_cycle")
    one_cycle = result.suggestion
    constant = result.suggest(for_schedule="constant").lr
    assert one_cycle == result.suggest("minimum", for_schedule="curve").lr
    assert np.log10(one_cycle / constant) == pytest.approx(0.5)
    assert "for one_cycle" in repr(result)


def test_a_scaled_lr_outside_the_range_is_clipped():
    # The lowest loss at point 20: minimum reads lrs[20] / 10, within the range; a
    # third of that for a constant schedule falls below it and is clipped.
    curve = 1.0 + (np.arange(100) - 20.0) ** 2 / 100
    result = LRFindResult.from_curve(LRS, curve, for_schedule="constant", beta=0.0)
    detail = result.suggest("minimum")
    assert detail.curve_lr == pytest.approx(LRS[20] / 10)
    assert detail.curve_lr * 10**-0.5 < LRS[0]
    assert (detail.lr, detail.index) == (LRS[0], 0)
    assert "x0.316 for constant, clipped to the swept range" in detail.reason


def test_curve_kinds_pick_their_own_factors():
    assert curve_kind("sweep", 1) == "sweep"
    assert curve_kind("sweep", 5) == "sweeps"
    assert curve_kind("independent", 1) == "independent"
    config = resolve_settings(
        start_lr=LRS[0], end_lr=LRS[-1], num_steps=100, num_sweeps=3, methods=["valley"]
    )
    result = sweeps_result(LRS, [bowl(), bowl(), bowl()], settings=config)
    read = result.suggest("valley", for_schedule="curve").lr
    factor = SCHEDULE_FACTORS["sweeps"]["valley"]["one_cycle"]
    assert result.suggest("valley").lr == pytest.approx(min(read * factor, LRS[-1]))


def test_methods_without_a_factor_on_independent_curves_stay_unscaled_and_say_so():
    config = resolve_settings(
        mode="independent",
        start_lr=1e-5,
        end_lr=1.0,
        num_steps=6,
        steps_per_lr=2,
        average_last=1,
        methods=["valley", "minimum"],
    )
    runs = np.array([[[3.0, 2.9], [3.0, 2.5], [3.0, 1.5], [3.0, 1.0], [3.0, 1.2], [3.0, 2.0]]])
    result = runs_result(config.learning_rates(), runs, settings=config)
    assert result.settings.method == "minimum"
    valley = result.suggest("valley")
    assert valley.lr == valley.curve_lr
    assert "no one_cycle factor for valley on independent curves" in valley.reason
    minimum = result.suggest("minimum")
    assert minimum.lr == pytest.approx(minimum.curve_lr * 10.0)  # the LR at the best run


def test_presets_of_other_tools_read_the_curve_as_they_do():
    for preset in ("fastai", "torch-lr-finder"):
        result = LRFindResult.from_curve(LRS, bowl(), settings=preset)
        assert result.settings.for_schedule == "curve"
        detail = result.suggest()
        assert detail.lr == detail.curve_lr


def test_schedule_settings_survive_a_json_round_trip(tmp_path):
    result = result_for("constant")
    path = tmp_path / "result.json"
    result.save(path)
    loaded = LRFindResult.load(path)
    assert loaded == result
    assert loaded.suggest().for_schedule == "constant"
    assert loaded.suggest().curve_lr == result.suggest().curve_lr


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="unknown for_schedule 'cosine'"):
        resolve_settings(for_schedule="cosine")
    with pytest.raises(ValueError, match="unknown for_schedule 'cosine'"):
        result_for("one_cycle").suggest(for_schedule="cosine")
