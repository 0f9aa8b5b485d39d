"""LRFindResult: building from a curve, stopping, re-smoothing, saving, plotting."""

import importlib
import json
import math
import re
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from core_testing import reference_ewa

from lrfind_core import LRFindResult, MethodOutput, Settings, register_method
from lrfind_core.schedules import exponential_schedule
from lrfind_core.settings import resolve_settings
from lrfind_core.suggestion import suggest

suggest_module = importlib.import_module("lrfind_core.suggestion")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LRS = exponential_schedule(1e-6, 1.0, 100)


def falling_curve(n=100):
    """A loss that falls the whole way: never diverges."""
    return 2.0 - np.log1p(np.arange(n)) / 10


def diverging_curve():
    """Falls to 0.5 at step 49 (1 - 49/98), then rises 0.4 a step: 0.9, 1.3, 1.7, 2.1, ..."""
    steps = np.arange(100)
    return np.where(steps < 50, 1.0 - steps / 98, 0.5 + 0.4 * (steps - 49))


def raising_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


# --- building --------------------------------------------------------------------------


def test_full_non_diverging_curve():
    losses = falling_curve()
    result = LRFindResult.from_curve(LRS, losses)
    assert result.stop_step is None
    assert result.stop_reason == "completed"
    assert np.array_equal(result.lrs, LRS)
    assert np.array_equal(result.losses, losses)
    assert result.lrs.dtype == result.losses.dtype == result.smoothed_losses.dtype == np.float64
    # the config is taken from the curve
    config = result.settings
    assert (config.start_lr, config.end_lr, config.num_steps) == (LRS[0], LRS[-1], 100)
    assert result.planned_points == 100
    np.testing.assert_allclose(
        result.smoothed_losses, reference_ewa(losses, 0.98, True), rtol=1e-12
    )


def test_arrays_end_at_the_diverging_step():
    # Unsmoothed: best 0.5, k = 4 -> the first loss > 2.0 is 2.1 at step 53.
    losses = diverging_curve()
    result = LRFindResult.from_curve(LRS, losses, beta=0.0)
    assert result.stop_step == 53
    assert result.stop_reason == "diverged"
    assert len(result.lrs) == len(result.losses) == len(result.smoothed_losses) == 54
    assert np.array_equal(result.lrs, LRS[:54])
    assert np.array_equal(result.losses, losses[:54])
    assert np.array_equal(result.smoothed_losses, losses[:54])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_arrays_end_at_a_non_finite_step(bad):
    losses = falling_curve()
    losses[60] = bad
    result = LRFindResult.from_curve(LRS, losses)
    assert result.stop_step == 60
    assert result.stop_reason == "non-finite loss"
    assert len(result.losses) == len(result.smoothed_losses) == 61
    assert np.array_equal(result.losses, losses[:61], equal_nan=True)
    assert np.all(np.isfinite(result.smoothed_losses[:60]))
    assert not np.isfinite(result.smoothed_losses[60])


def test_curve_shorter_than_planned():
    losses = falling_curve()
    result = LRFindResult.from_curve(LRS[:40], losses[:40], num_steps=100)
    assert result.stop_step is None
    assert result.stop_reason == "ended before the planned steps"
    assert len(result.lrs) == 40
    result = LRFindResult.from_curve(
        LRS[:40], losses[:40], num_steps=100, end_reason="the data ran out"
    )
    assert result.stop_reason == "the data ran out"


def test_planned_points_fewer_than_steps():
    # A curve recorded every few steps: 30 points planned, so the sweep is complete and the
    # suggestions trim 30 // 10 = 3 points at the start.
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=100, for_schedule="curve")
    result = LRFindResult.from_curve(LRS[:30], falling_curve(30), config, planned_points=30)
    assert result.stop_reason == "completed"
    assert result.planned_points == 30
    expected = suggest(result.lrs, result.smoothed_losses, "valley", planned_steps=30)
    assert result.suggestions["valley"] == replace(expected, for_schedule="curve")


def test_suggestions_use_the_config(monkeypatch):
    monkeypatch.setattr(suggest_module, "_METHODS", dict(suggest_module._METHODS))
    seen = {}

    def record(lrs, losses):
        seen["lrs"] = lrs.copy()
        return MethodOutput(float(lrs[0]), "first", 0)

    register_method("recorder", record)
    config = resolve_settings(
        start_lr=LRS[0], end_lr=LRS[-1], num_steps=200, methods=["recorder", "steep"],
        method="recorder",
    )
    result = LRFindResult.from_curve(LRS, falling_curve(), settings=config)
    # planned 200 steps: skip 20 at the start, 5 at the end
    assert np.array_equal(seen["lrs"], LRS[20:95])
    assert result.suggestion == float(LRS[20])
    assert set(result.suggestions) == {"recorder", "steep"}
    assert result.suggest() == result.suggestions["recorder"]


def test_suggestion_fields_agree():
    result = LRFindResult.from_curve(LRS, falling_curve(), settings="torch-lr-finder")
    assert result.settings.method == "steep"
    assert set(result.suggestions) == set(result.settings.methods)
    for name, detail in result.suggestions.items():
        assert detail.method == name
        assert result.suggest(name) == detail
        read = suggest(result.lrs, result.smoothed_losses, name, skip_start=10, skip_end=5)
        assert detail == replace(read, for_schedule="curve")
    assert result.suggestion == result.suggestions["steep"].lr
    assert result.suggestion is not None


def test_method_outside_the_config_is_computed_on_demand():
    result = LRFindResult.from_curve(LRS, falling_curve(), methods=["valley"], method="valley")
    assert set(result.suggestions) == {"valley"}
    read = suggest(result.lrs, result.smoothed_losses, "minimum")
    assert result.suggest("minimum", for_schedule="curve") == replace(read, for_schedule="curve")


def test_method_missing_from_a_hand_built_config():
    config = Settings(
        start_lr=LRS[0],
        end_lr=LRS[-1],
        methods=("valley",),
        method="steep",
        for_schedule="curve",
    )
    result = LRFindResult.from_curve(LRS, falling_curve(), settings=config)
    expected = replace(suggest(result.lrs, result.smoothed_losses, "steep"), for_schedule="curve")
    assert result.suggestions["steep"] == expected
    assert result.suggestion == expected.lr


def test_bad_calls():
    changed = LRFindResult.from_curve(LRS, falling_curve(), Settings(num_steps=100), beta=0.5)
    assert (changed.settings.beta, changed.settings.start_lr) == (0.5, 1e-7)  # kept as given
    with pytest.raises(TypeError, match="settings must be an lrfind Settings, a preset name"):
        LRFindResult.from_curve(LRS, falling_curve(), {"beta": 0.5})
    with pytest.raises(ValueError, match="a curve needs at least one recorded point"):
        LRFindResult.from_curve([], [])
    with pytest.raises(ValueError, match="lrs must be strictly increasing"):
        LRFindResult.from_curve(LRS[::-1], falling_curve())
    with pytest.raises(TypeError, match=re.escape("unknown setting(s) ['smoothing']")):
        LRFindResult.from_curve(LRS, falling_curve(), smoothing=0.9)


# --- re-smoothing ----------------------------------------------------------------------


@pytest.mark.parametrize(("beta", "debias"), [(0.5, None), (0.9, False), (0.0, True)])
def test_resmooth_changes_smoothing_only(beta, debias):
    losses = falling_curve() + 0.05 * np.sin(np.arange(100))
    result = LRFindResult.from_curve(LRS, losses, meta={"run": 1})
    before = result.smoothed_losses.copy()
    again = result.resmooth(beta, debias=debias)
    expected_debias = True if debias is None else debias
    assert again.settings.beta == beta
    assert again.settings.debias is expected_debias
    assert np.array_equal(again.losses, losses)
    assert np.array_equal(again.lrs, LRS)
    np.testing.assert_allclose(
        again.smoothed_losses, reference_ewa(losses, beta, expected_debias), rtol=1e-12
    )
    assert not np.allclose(again.smoothed_losses, before)
    assert np.array_equal(result.smoothed_losses, before)  # the original is untouched
    assert again.meta == {"run": 1}
    assert again.stop_reason == "completed"


def test_resmooth_can_stop_earlier():
    # Heavily smoothed, the rise of diverging_curve() is not yet 4x its best at step 53;
    # unsmoothed it is (see test_arrays_end_at_the_diverging_step).
    result = LRFindResult.from_curve(LRS, diverging_curve(), beta=0.98)
    assert result.stop_step > 53
    assert result.resmooth(0.0).stop_step == 53


# --- saving and equality ---------------------------------------------------------------


@pytest.mark.parametrize(("bad", "encoded"), [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_json_round_trip_with_non_finite_values(tmp_path, bad, encoded):
    losses = falling_curve()
    losses[60] = bad
    result = LRFindResult.from_curve(LRS, losses, settings="fastai", meta={"backend": "test"})
    path = tmp_path / "result.json"
    result.save(path)

    text = path.read_text(encoding="utf-8")
    data = json.loads(text, parse_constant=raising_constant)  # standard JSON only
    assert data["losses"][-1] == encoded
    assert data["losses"][:60] == losses[:60].tolist()
    assert len(data["lrs"]) == 61

    loaded = LRFindResult.load(path)
    assert loaded == result
    for name in ("lrs", "losses", "smoothed_losses"):
        assert np.array_equal(getattr(loaded, name), getattr(result, name), equal_nan=True)
        assert getattr(loaded, name).dtype == np.float64
    assert loaded.losses[60] == bad or (np.isnan(bad) and np.isnan(loaded.losses[60]))
    assert loaded.stop_step == 60
    assert loaded.stop_reason == "non-finite loss"
    assert loaded.settings == result.settings
    assert loaded.suggestions == result.suggestions
    assert loaded.planned_points == result.planned_points
    assert loaded.meta == {"backend": "test"}


def test_round_trip_of_a_completed_curve(tmp_path):
    result = LRFindResult.from_curve(LRS, falling_curve(), settings="torch-lr-finder")
    path = tmp_path / "result.json"
    result.save(path)
    loaded = LRFindResult.load(path)
    assert loaded == result
    assert loaded.suggestion == result.suggestion
    assert loaded.stop_step is None


def test_equality():
    result = LRFindResult.from_curve(LRS, falling_curve())
    same = LRFindResult.from_curve(LRS, falling_curve())
    assert result == same
    other_losses = falling_curve()
    other_losses[3] += 1e-9
    assert result != LRFindResult.from_curve(LRS, other_losses)
    assert result != LRFindResult.from_curve(LRS, falling_curve(), meta={"a": 1})
    assert result != LRFindResult.from_curve(LRS, falling_curve(), planned_points=99)
    assert result != "not a result"
    with pytest.raises(TypeError):
        hash(result)


def test_from_dict_rejects_other_files():
    data = LRFindResult.from_curve(LRS, falling_curve()).to_dict()
    with pytest.raises(ValueError, match=re.escape("not an lrfind result (format='other')")):
        LRFindResult.from_dict({**data, "format": "other"})
    with pytest.raises(ValueError, match="unsupported lrfind result version 99"):
        LRFindResult.from_dict({**data, "version": 99})


def test_repr():
    result = LRFindResult.from_curve(LRS, falling_curve())
    lr = f"{result.suggestion:.3g}"
    assert repr(result) == (
        f"LRFindResult(points=100, stop_reason='completed', suggestion={lr} "
        "(minimum, for one_cycle))"
    )


# --- plotting --------------------------------------------------------------------------


@pytest.mark.usefixtures("no_show")
def test_plot_writes_a_png(tmp_path):
    result = LRFindResult.from_curve(LRS, diverging_curve())
    path = tmp_path / "curve.png"
    ax = result.plot(path=path)
    data = path.read_bytes()
    assert len(data) > len(PNG_MAGIC)
    assert data.startswith(PNG_MAGIC)
    assert ax.get_xscale() == "log"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[:2] == ["raw loss", "smoothed loss"]
    shown = [name for name, detail in result.suggestions.items() if detail.lr is not None]
    assert shown
    expected = [f"{name} (default)" if name == "minimum" else name for name in shown]
    assert [label.split(":")[0] for label in labels[2:]] == expected
    assert ax.get_legend().get_title().get_text() == "LRs for a one-cycle peak"
    assert f"stopped at step {result.stop_step}" in ax.get_title()


@pytest.mark.usefixtures("no_show")
def test_plot_on_given_axes_with_a_nan_stop(tmp_path):
    losses = falling_curve()
    losses[70] = np.nan
    result = LRFindResult.from_curve(LRS, losses)
    _, ax = plt.subplots()
    returned = result.plot(ax=ax, methods=["minimum"], show_raw=False)
    assert returned is ax
    assert ax.get_xscale() == "log"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0] == "smoothed loss"
    assert len(labels) == 2
    assert labels[1].startswith("minimum (default): ")
    low, high = ax.get_ylim()
    assert math.isfinite(low)
    assert math.isfinite(high)
    path = tmp_path / "nan.png"
    ax.figure.savefig(path)
    assert path.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.usefixtures("no_show")
def test_plot_frames_the_informative_part_and_notes_the_clipped_tail():
    # falls from 1.0 to 0.5, then rises to 20.1: the informative frame stops a little
    # above the start, not at the diverged tail
    result = LRFindResult.from_curve(LRS, diverging_curve())
    ax = result.plot()
    smoothed = result.smoothed_losses
    low, high = ax.get_ylim()
    assert low <= min(result.losses.min(), smoothed.min())
    assert smoothed[0] <= high < smoothed.max()
    notes = [text.get_text() for text in ax.texts]
    assert notes == [f"clipped: the smoothed loss rises to {smoothed.max():.3g}"]
    whole = result.plot(frame="all")
    assert whole.get_ylim()[1] >= max(result.losses.max(), smoothed.max())
    assert len(whole.texts) == 0


def test_informative_limits_reach_a_share_of_the_fall_above_the_start():
    from lrfind_core.plotting import HEADROOM, informative_limits

    curve = np.array([2.0, 2.0, 1.5, 1.0, 5.0, 9.0])
    bottom, top = informative_limits(curve, curve)
    ceiling = 2.0 + HEADROOM * (2.0 - 1.0)
    margin = 0.05 * (ceiling - 1.0)
    assert (bottom, top) == pytest.approx((1.0 - margin, ceiling + margin))
    # a curve that never falls is shown whole
    rising = np.array([1.0, 2.0, 3.0])
    assert informative_limits(rising, rising) == pytest.approx((0.9, 3.1))
    assert informative_limits(np.array([np.nan, 1.0]), np.array([1.0])) is None


@pytest.mark.usefixtures("no_show")
def test_plot_hides_points_from_the_drawing_only():
    result = LRFindResult.from_curve(LRS, diverging_curve())
    before = {name: detail.lr for name, detail in result.suggestions.items()}
    points = len(result.lrs)
    ax = result.plot(hide_start=10, hide_end=5)
    raw, smoothed = ax.lines[0], ax.lines[1]
    assert np.array_equal(raw.get_xdata(), result.lrs[10 : points - 5])
    assert np.array_equal(raw.get_ydata(), result.losses[10 : points - 5])
    assert np.array_equal(smoothed.get_ydata(), result.smoothed_losses[10 : points - 5])
    assert {name: detail.lr for name, detail in result.suggestions.items()} == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hide_start": 60, "hide_end": 12}, "leave none of the 72 points"),
        ({"hide_start": -1}, "hide_start"),
        ({"hide_end": 1.5}, "hide_end"),
        ({"frame": "tight"}, "frame"),
    ],
)
def test_plot_refuses_bad_options_before_drawing(options, message):
    result = LRFindResult.from_curve(LRS, diverging_curve())
    assert len(result.lrs) == 72
    figures = plt.get_fignums()
    with pytest.raises((ValueError, TypeError), match=message):
        result.plot(**options)
    assert plt.get_fignums() == figures


NEW_IN_VERSION_3 = ("independent_lrs", "accumulation_steps", "val_every", "val_batches",
                    "training_steps", "budget_steps")


def old_document(result, version):
    """``result`` as files of format ``version`` (1 or 2) held it: a ``config`` with
    ``default_method``, and ``suggestion_details``."""
    data = result.to_dict()
    config = {k: v for k, v in data.pop("settings").items() if k not in NEW_IN_VERSION_3}
    config["default_method"] = config.pop("method")
    details = data.pop("suggestions")
    if version == 1:
        del config["for_schedule"]
        details = {name: {key: d[key] for key in ("lr", "index", "reason")}
                   for name, d in details.items()}
    return {**data, "version": version, "config": config, "suggestion_details": details}


def test_version_2_results_load_with_the_same_settings_and_suggestions():
    result = LRFindResult.from_curve(LRS, falling_curve(), "fastai", meta={"run": 2})
    assert LRFindResult.from_dict(old_document(result, 2)) == result


def test_version_1_results_load_as_curve_suggestions():
    """Files saved before schedule-aware suggestions (version 1) still load."""
    result = LRFindResult.from_curve(LRS, falling_curve(), for_schedule="curve")
    old = old_document(result, 1)
    loaded = LRFindResult.from_dict(old)
    assert loaded.settings.for_schedule == "curve"
    assert loaded.suggestions == result.suggestions
    for name, detail in loaded.suggestions.items():
        assert detail.for_schedule == "curve"
        assert detail.curve_lr == detail.lr == result.suggestions[name].lr
    np.testing.assert_array_equal(loaded.losses, result.losses)


# --- re-smoothing what is not one curve ---------------------------------------------------


def formula_result(**keywords):
    from search_fakes import FormulaBackend

    from lrfind_core.shell import call_settings, run_finder

    settings = call_settings(keywords.pop("settings", None), **keywords)
    return run_finder(FormulaBackend(), settings,
                      has_validation=settings.mode == "search")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resmooth_of_k_sweeps_rejudges_every_sweep_and_keeps_the_ensemble():
    result = formula_result(settings=Settings(num_sweeps=3), num_steps=60)
    assert result.ensemble is not None
    same = result.resmooth(result.settings.beta)
    assert same.ensemble is not None and same.ensemble.num_sweeps == 3
    np.testing.assert_array_equal(same.ensemble.sweep_smoothed, result.ensemble.sweep_smoothed)
    assert same.ensemble.sweep_suggestions == result.ensemble.sweep_suggestions
    assert same.suggestion == result.suggestion
    np.testing.assert_array_equal(same.smoothed_losses, result.smoothed_losses)
    other = result.resmooth(0.5)
    pairs = zip(other.ensemble.sweep_smoothed, other.ensemble.kept_curves(),
                result.ensemble.kept_curves(), strict=True)
    for row, kept, curve in pairs:  # less smoothing may stop a sweep earlier
        assert 0 < len(kept) <= len(curve)
        np.testing.assert_allclose(row[: len(kept)],
                                   reference_ewa(curve, 0.5, True)[: len(kept)], rtol=1e-12)
    assert not np.allclose(other.smoothed_losses[:20], result.smoothed_losses[:20])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resmooth_of_a_search_keeps_its_candidates_and_its_lr():
    result = formula_result(mode="search", training_steps=300)
    again = result.resmooth(0.5)
    assert again.search is result.search
    assert again.suggestion == result.suggestion
    assert again.settings.mode == "search" and again.settings.beta == 0.5
    np.testing.assert_allclose(again.smoothed_losses,
                               reference_ewa(result.losses, 0.5, True)[: len(again.losses)],
                               rtol=1e-12)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resmooth_of_independent_runs_is_refused():
    result = formula_result(mode="independent",
                            settings=Settings(independent_lrs=8, steps_per_lr=5))
    with pytest.raises(ValueError, match="independent runs are scored unsmoothed"):
        result.resmooth(0.5)


def test_numpy_numbers_in_the_settings_become_python_ones_and_save(tmp_path):
    settings = Settings(num_steps=np.int64(30), beta=np.float32(0.5), end_lr=np.float64(1.0))
    assert type(settings.num_steps) is int and type(settings.beta) is float
    assert settings.beta == float(np.float32(0.5))
    result = LRFindResult.from_curve(LRS[:30], falling_curve(30), settings=settings)
    result.save(tmp_path / "r.json")
    assert LRFindResult.load(tmp_path / "r.json").settings == result.settings


def test_planned_points_must_be_positive():
    with pytest.raises(ValueError, match="planned_points must be an int >= 1, got 0"):
        LRFindResult.from_curve(LRS, falling_curve(), planned_points=0)
