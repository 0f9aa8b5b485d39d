"""Several curves of one range test: the median curve, the band, independent runs."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from core_testing import runs_result, sweeps_result

from lrfind_core import LRFindResult
from lrfind_core.aggregation import end_losses, median_curve, pad_curves, spread_in_decades
from lrfind_core.schedules import exponential_schedule
from lrfind_core.settings import resolve_settings

LRS = exponential_schedule(1e-6, 1.0, 60)


def bowl(shift: float, n: int = 60) -> np.ndarray:
    """Falls from 3 to a minimum near point 40 + shift, then rises steeply."""
    steps = np.arange(n, dtype=np.float64)
    return (
        1.0
        + 2.0 / (1.0 + np.exp((steps - 20 - shift) / 3))
        + np.maximum(0, steps - 40 - shift) ** 2
    )


def test_median_curve_is_pointwise_median_over_the_majority_reach():
    curves = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0, 5.0]), np.array([2.0, 9.0])]
    # A strict majority (2 of 3) reached 3 points; point 3 was reached by one curve only.
    np.testing.assert_array_equal(median_curve(curves), [2.0, 4.0, 4.0])


def test_median_curve_counts_a_non_finite_loss_as_diverged():
    curves = [np.array([1.0, np.nan]), np.array([1.0, 5.0]), np.array([1.0, np.inf])]
    assert median_curve(curves).tolist() == [1.0, np.inf]


def test_pad_curves_cuts_and_pads_with_nan():
    padded = pad_curves([np.array([1.0, 2.0, 3.0]), np.array([4.0])], 2)
    np.testing.assert_array_equal(padded, [[1.0, 2.0], [4.0, np.nan]])


def test_spread_in_decades():
    assert spread_in_decades([1e-3, None, 1e-2, 3e-3]) == pytest.approx(1.0)
    assert spread_in_decades([1e-3, None]) is None


def test_end_losses_score_the_last_steps_and_mark_divergence():
    runs = np.array([[5.0, 4.0, 3.0, 1.0], [2.0, np.nan, 1.0, 1.0], [4.0, 4.0, 2.0, 2.0]])
    np.testing.assert_array_equal(end_losses(runs, 2), [2.0, np.inf, 2.0])


def test_from_sweeps_judges_the_median_curve_and_keeps_every_sweep():
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS), num_sweeps=3)
    curves = [bowl(-2), bowl(0), bowl(3)]
    result = sweeps_result(LRS, curves, settings=config)
    # Each sweep alone is judged as one sweep (the one-sweep schedule factors).
    one_sweep = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS))
    singles = [LRFindResult.from_curve(LRS, c, settings=one_sweep) for c in curves]
    k_factor = LRFindResult.from_curve(LRS, curves[0], settings=config).suggestions["valley"]
    assert k_factor != singles[0].suggestions["valley"]  # the factors differ
    expected = median_curve([s.losses for s in singles])
    reference = LRFindResult.from_curve(LRS[: len(expected)], expected, settings=config)
    np.testing.assert_array_equal(result.losses, reference.losses)
    assert result.suggestions == reference.suggestions
    ensemble = result.ensemble
    assert ensemble.num_sweeps == 3
    assert ensemble.stop_steps == [s.stop_step for s in singles]
    assert ensemble.sweep_suggestions["valley"] == [s.suggestions["valley"].lr for s in singles]
    for row, single in zip(ensemble.sweep_losses, singles, strict=True):
        np.testing.assert_array_equal(row[: len(single.losses)], single.losses)
        assert np.all(np.isnan(row[len(single.losses) :]))
    points = len(result.lrs)
    stacked = pad_curves([s.smoothed_losses for s in singles], points)
    np.testing.assert_allclose(ensemble.band_low, np.nanpercentile(stacked, 25, axis=0))
    np.testing.assert_allclose(ensemble.band_high, np.nanpercentile(stacked, 75, axis=0))
    assert np.all(ensemble.band_low <= ensemble.band_high)
    lrs = [lr for lr in ensemble.sweep_suggestions["valley"] if lr is not None]
    assert ensemble.spread_decades("valley") == pytest.approx(np.log10(max(lrs) / min(lrs)))


def test_from_sweeps_with_one_curve_is_from_curve():
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS))
    single = sweeps_result(LRS, [bowl(0)], settings=config, meta={"a": 1})
    assert single == LRFindResult.from_curve(LRS, bowl(0), settings=config, meta={"a": 1})
    assert single.ensemble is None


def test_ensemble_and_runs_survive_a_json_round_trip(tmp_path):
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS), num_sweeps=3)
    result = sweeps_result(LRS, [bowl(-2), bowl(0), bowl(3)], settings=config)
    path = tmp_path / "ensemble.json"
    result.save(path)
    assert LRFindResult.load(path) == result

    grid_config = resolve_settings(
        mode="independent", start_lr=1e-4, end_lr=1.0, independent_lrs=5, steps_per_lr=3,
        average_last=2,
    )
    runs = np.full((1, 5, 3), np.nan)
    runs[0, :4] = [[3.0, 2.0, 1.5], [3.0, 1.5, 1.0], [3.0, 1.0, 0.5], [3.0, np.inf, np.nan]]
    independent = runs_result(grid_config.independent_grid(), runs, settings=grid_config)
    path = tmp_path / "runs.json"
    independent.save(path)
    loaded = LRFindResult.load(path)
    assert loaded == independent
    np.testing.assert_array_equal(loaded.runs.run_losses, runs)
    # Files saved before ``made`` was kept: the runs before the all-NaN tail count.
    old = independent.to_dict()
    del old["runs"]["made"]
    from_old = LRFindResult.from_dict(old)
    assert from_old.runs.made == [4]
    np.testing.assert_array_equal(from_old.runs.run_losses, runs)
    np.testing.assert_array_equal(from_old.losses, independent.losses)


def test_from_runs_scores_each_run_and_stops_at_a_diverged_run():
    config = resolve_settings(
        mode="independent", start_lr=1e-4, end_lr=1.0, independent_lrs=5, steps_per_lr=3,
        average_last=2,
    )
    runs = np.full((1, 5, 3), np.nan)
    runs[0, :4] = [[3.0, 2.0, 1.5], [3.0, 1.5, 1.0], [3.0, 1.0, 0.5], [3.0, np.inf, np.nan]]
    result = runs_result(config.independent_grid(), runs, settings=config)
    np.testing.assert_array_equal(result.losses, [1.75, 1.25, 0.75, np.inf])
    # Each score is a run of its own: judged unsmoothed (beta=0.98 applies to sweeps only).
    np.testing.assert_array_equal(result.smoothed_losses, result.losses)
    assert (result.stop_step, result.stop_reason) == (3, "non-finite loss")
    assert result.runs.average_last == 2


def test_independent_mode_has_its_own_grid_and_judges_unsmoothed_untrimmed():
    settings = resolve_settings(mode="independent")
    assert (settings.independent_lrs, settings.steps_per_lr, settings.average_last) == (24, 20, 5)
    grid = settings.independent_grid()
    assert (len(grid), grid[0], grid[-1]) == (24, 1e-7, 10.0)
    assert settings.num_steps == 100  # the classic sweep's length keeps its meaning
    scores = np.linspace(3.0, 1.0, 24)
    runs = np.repeat(scores[None, :, None], 5, axis=2)
    for preset in ("lrfind", "fastai", "torch-lr-finder"):
        chosen = resolve_settings(preset, mode="independent", independent_lrs=24, steps_per_lr=5)
        result = runs_result(grid, runs, chosen)
        np.testing.assert_allclose(result.losses, scores, rtol=1e-15)
        np.testing.assert_array_equal(result.smoothed_losses, result.losses)
        # untrimmed: minimum picks the last (lowest) grid point, / 10, times the factor
        assert result.suggest("minimum", "curve").lr == pytest.approx(grid[-1] / 10)
    with pytest.raises(ValueError, match="average_last must be <= steps_per_lr"):
        resolve_settings(mode="independent", steps_per_lr=3, average_last=4)
    with pytest.raises(ValueError, match="unknown mode"):
        resolve_settings(mode="grid")
    with pytest.raises(ValueError, match="num_sweeps must be an int >= 1"):
        resolve_settings(num_sweeps=0)


def test_plot_draws_the_band(tmp_path):
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS), num_sweeps=3)
    result = sweeps_result(LRS, [bowl(-2), bowl(0), bowl(3)], settings=config)
    ax = result.plot(path=tmp_path / "band.png")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "interquartile band of 3 sweeps" in labels
    assert any("sweeps spread" in label for label in labels)
    assert (tmp_path / "band.png").read_bytes()[:4] == b"\x89PNG"


def test_from_runs_cuts_the_runs_above_the_stop_like_a_backend_that_never_made_them():
    config = resolve_settings(mode="independent", independent_lrs=5, steps_per_lr=2, average_last=1)
    scores = np.array([1.0, 0.5, 0.4, 3.0, 0.3])  # 3.0 > 4 * 0.4: the rule fires at run 3
    runs = np.stack([np.ones(5), scores], axis=1)[None]
    all_made = runs_result(config.independent_grid(), runs, settings=config)
    assert all_made.stop_step == 3 and len(all_made.losses) == 4
    np.testing.assert_array_equal(all_made.runs.run_losses[0, :4], runs[0, :4])
    assert np.all(np.isnan(all_made.runs.run_losses[0, 4]))
    assert all_made.runs.made == [4]
    stopped = runs.copy()
    stopped[0, 4] = np.nan
    assert runs_result(config.independent_grid(), stopped, settings=config, made=[4]) == (
        all_made
    )


def test_a_run_with_a_nan_loss_at_step_0_counts_as_made_and_diverged():
    config = resolve_settings(mode="independent", independent_lrs=4, steps_per_lr=2, average_last=1)
    runs = np.array([[[2.0, 1.0], [np.nan, np.nan], [np.nan, np.nan], [np.nan, np.nan]]])
    result = runs_result(config.independent_grid(), runs, settings=config, made=[2])
    assert result.losses.tolist() == [1.0, np.inf]
    assert (result.stop_step, result.stop_reason) == (1, "non-finite loss")
    with pytest.raises(ValueError, match=r"made must give 0..4 runs per curve"):
        runs_result(config.independent_grid(), runs, settings=config, made=[5])


def test_from_sweeps_leaves_out_curves_that_recorded_nothing():
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS), num_sweeps=3)
    result = sweeps_result(LRS, [bowl(0), [], bowl(2)], settings=config)
    assert result.ensemble.num_sweeps == 2
    with pytest.raises(ValueError, match="at least one curve with a recorded point"):
        sweeps_result(LRS, [[], []], settings=config)


def test_a_tie_of_curve_endings_names_the_first_curves_reason():
    """No dependence on string hashing: the result's text is the same in every process."""
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS), num_sweeps=2)
    full, short = np.linspace(3, 1, 60), np.linspace(3, 1, 30)
    first = sweeps_result(LRS, [full, short], settings=config)
    second = sweeps_result(LRS, [short, full], settings=config)
    assert first.stop_reason.endswith("(1 of 2: completed)")
    assert second.stop_reason.endswith("(1 of 2: ended before the planned steps)")


def all_nan_result(num_sweeps: int) -> LRFindResult:
    """Sweeps whose loss is NaN from the first step."""
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS),
                              num_sweeps=num_sweeps)
    return sweeps_result(LRS, [np.full(60, np.nan)] * num_sweeps, settings=config)


@pytest.mark.parametrize("num_sweeps", [1, 2, 3])
def test_sweeps_that_are_all_nan_plot_an_empty_frame_that_draws(tmp_path, num_sweeps):
    result = all_nan_result(num_sweeps)
    assert (result.suggestion, result.stop_step) == (None, 0)
    ax = result.plot()
    ax.figure.canvas.draw()  # a log axis with limits <= 0 raised here
    assert ax.get_xscale() == "log"
    low, high = ax.get_xlim()
    assert 0 < low < LRS[0] < high
    path = tmp_path / f"all_nan_{num_sweeps}.png"
    result.plot(path=path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_nan_raw_loss_stays_nan_and_only_the_median_counts_it_as_inf():
    config = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=len(LRS), num_sweeps=2)
    first, second = bowl(0), bowl(0) + 0.1
    first[30], second[32] = np.nan, np.inf
    result = sweeps_result(LRS, [first, second], settings=config)
    raw = result.ensemble.sweep_losses
    assert np.isnan(raw[0, 30]) and np.all(np.isnan(raw[0, 31:]))
    np.testing.assert_array_equal(raw[0, :30], first[:30])
    assert raw[1, 32] == np.inf
    np.testing.assert_array_equal(raw[1, :32], second[:32])
    assert np.isnan(result.ensemble.kept_curves()[0][-1])
    # the median (an aggregate) counts the NaN curve as diverged: +inf, documented
    assert result.stop_step == 30 and result.losses[-1] == np.inf
    np.testing.assert_array_equal(first[:30], bowl(0)[:30])  # inputs untouched
    loaded = LRFindResult.from_dict(result.to_dict())
    assert np.isnan(loaded.ensemble.sweep_losses[0, 30])


def test_independent_runs_keep_a_nan_raw_loss_and_score_it_inf():
    config = resolve_settings(mode="independent", independent_lrs=4, steps_per_lr=2,
                              average_last=1, num_sweeps=2)
    curve = [[2.0, 1.0], [1.5, np.nan], [np.nan, np.nan], [np.nan, np.nan]]
    runs = np.array([curve, curve])
    result = runs_result(config.independent_grid(), runs, settings=config, made=[4, 4])
    assert np.isnan(result.runs.run_losses[:, 1, 1]).all()
    np.testing.assert_array_equal(result.runs.run_losses[:, :2, 0], [[2.0, 1.5], [2.0, 1.5]])
    assert result.losses.tolist() == [1.0, np.inf]  # scores: a diverged run is +inf
    assert np.isnan(runs[0, 1, 1])  # the caller's array is untouched
