"""The search's planning and judging, on a backend made of formulas (no model)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from search_fakes import FormulaBackend

from lrfind_core import LRFindResult, Settings
from lrfind_core import search as search_module
from lrfind_core.horizon import HORIZON_EXPONENT, horizon_factor
from lrfind_core.search import (
    beyond_edge,
    bracket,
    choose,
    minimum_budget,
    near_best,
    neighbours,
    sweep_steps_for,
)
from lrfind_core.shell import call_settings, run_finder


def searched(backend: FormulaBackend, training: int = 300, budget: int | None = None,
             schedule: str = "one_cycle", validation: bool = True) -> LRFindResult:
    settings = call_settings(None, mode="search", training_steps=training,
                             budget_steps=budget, for_schedule=schedule)
    return run_finder(backend, settings, has_validation=validation)


@pytest.mark.filterwarnings("ignore:the search's best candidate")  # drift 0 and +0.5
@pytest.mark.parametrize("budget", [minimum_budget(), 61, 100, 300, 900, 3000])
@pytest.mark.parametrize("drift", [-0.5, 0.0, 0.5])
def test_the_search_never_trains_more_than_its_budget(budget, drift):
    backend = FormulaBackend(drift=drift)
    result = searched(backend, budget=budget)
    planned = sum(plan.num_runs * plan.num_steps for plan in backend.plans)
    assert planned == result.meta["steps_trained"] <= budget
    assert result.search.budget_steps == budget
    assert result.search.sweep_steps + result.search.steps_trained == planned
    # every candidate run is at most the planned training long
    assert all(plan.num_steps <= 300 for plan in backend.plans[1:])


def test_the_default_budget_is_one_training():
    backend = FormulaBackend()
    result = searched(backend, training=500)
    assert result.search.budget_steps == 500
    assert result.meta["steps_trained"] <= 500


def test_a_budget_too_small_is_refused_with_what_it_needs():
    message = (f"budget_steps={minimum_budget() - 1} cannot pay for a search: it needs at least "
               f"{minimum_budget()} optimizer steps")
    with pytest.raises(ValueError, match=re.escape(message)):
        searched(FormulaBackend(), budget=minimum_budget() - 1)
    with pytest.raises(ValueError, match="cannot pay for a search"):
        sweep_steps_for(10)


def test_search_settings_need_the_training_length_and_a_real_schedule():
    with pytest.raises(ValueError, match="mode='search' needs training_steps"):
        Settings(mode="search")
    with pytest.raises(ValueError, match="'one_cycle' or 'constant', got 'curve'"):
        Settings(mode="search", training_steps=100, for_schedule="curve")
    with pytest.raises(ValueError, match="budget_steps belongs to mode='search'"):
        call_settings(None, budget_steps=300)


def test_the_sweep_shrinks_with_the_budget_down_to_its_minimum():
    assert sweep_steps_for(minimum_budget()) == search_module.MIN_SWEEP_STEPS
    assert sweep_steps_for(300) == 60
    assert sweep_steps_for(10_000) == 100


@pytest.mark.parametrize("best", [-3.0, -2.0, -1.2])
def test_the_choice_lands_on_the_optimum_when_it_moves_with_the_horizon_as_modelled(best):
    # the best LR of h-step runs is best + 0.8 * log10(T / h): the model the correction
    # assumes, so the corrected choice is the best LR for the whole training
    backend = FormulaBackend(best=best, sweep_minimum=best + 2.0, drift=-HORIZON_EXPONENT)
    result = searched(backend, budget=900)
    search = result.search
    assert result.suggestion == search.lr
    assert abs(np.log10(search.lr) - best) < 0.05
    assert abs(np.log10(search.measured_lr) - backend.optimum(search.measured_horizon)) < 0.05
    low, high = search.near_best
    assert low <= search.lr <= high
    assert result.suggestions["search"].lr == search.lr
    assert result.suggest().method == "search"


def test_the_choice_is_the_measured_vertex_scaled_to_the_planned_training():
    # an optimum that does not move with the horizon: measured there, then scaled down
    backend = FormulaBackend(best=-2.0, sweep_minimum=-1.0, drift=0.0)
    with pytest.warns(UserWarning, match="is the highest it ran"):
        result = searched(backend, budget=900)
    search = result.search
    horizon = search.measured_horizon
    assert horizon < 300
    assert abs(np.log10(search.measured_lr) + 2.0) < 0.05
    factor = (horizon / 300) ** HORIZON_EXPONENT
    assert search.lr == pytest.approx(search.measured_lr * factor, rel=1e-12)
    assert search.horizon_exponent == HORIZON_EXPONENT
    assert f"({horizon}/300)^0.8 for the steps not run" in search.reason


def test_rung_1_runs_where_the_correction_moves_the_best_of_rung_0():
    backend = FormulaBackend(best=-2.0, sweep_minimum=-1.0)
    result = searched(backend, budget=900)
    first_lrs, first_scores = result.search.rung(0)
    second_lrs, _ = result.search.rung(1)
    first_horizon = int(result.search.horizons[result.search.rungs == 0][0])
    factor = horizon_factor(first_horizon, result.search.measured_horizon)
    moved = neighbours(first_lrs, first_scores, search_module.SECOND_CANDIDATES) * factor
    np.testing.assert_allclose(second_lrs[: len(moved)], moved, rtol=1e-12)


def test_runs_as_long_as_the_training_need_no_horizon_correction():
    backend = FormulaBackend(best=-2.0, sweep_minimum=-1.0, training=100)
    result = searched(backend, training=100, budget=3000)
    search = result.search
    assert search.measured_horizon == 100
    assert search.lr == search.measured_lr
    assert "for the steps not run" not in search.reason


def test_the_horizon_factor():
    assert horizon_factor(30, 300) == pytest.approx(0.1**0.8)
    assert horizon_factor(30, 300, exponent=1.0) == pytest.approx(0.1)
    assert horizon_factor(300, 300) == horizon_factor(600, 300) == 1.0
    with pytest.raises(ValueError, match="steps must be positive"):
        horizon_factor(0, 300)


def test_an_optimum_beyond_the_bracket_widens_the_candidates_until_it_is_inside():
    # the sweep's minimum says 1e-1; the best LR is at 1e-5, below the bracket's low end
    backend = FormulaBackend(best=-5.0, sweep_minimum=-1.0, curvature=0.05)
    result = searched(backend, budget=3000)
    first_lrs, first_scores = result.search.rung(0)
    low, _, _ = bracket(result.lrs, result.losses, "one_cycle")
    assert first_lrs.min() < low  # candidates were added below the bracket
    assert np.argmin(first_scores) > 0  # until the best was no longer on the edge
    assert abs(np.log10(result.search.lr) + 5.0) < 0.2


@pytest.mark.filterwarnings("ignore:the search's best candidate")  # next to a diverged one
def test_a_diverged_candidate_scores_inf_and_is_not_chosen():
    backend = FormulaBackend(best=0.3, sweep_minimum=0.9, diverge_above=0.45, drift=0.0)
    result = searched(backend, budget=900)
    assert np.any(np.isinf(result.search.scores))
    assert np.log10(result.search.lr) <= 0.45


def test_the_same_call_gives_the_same_search():
    first = searched(FormulaBackend(noise=0.01), budget=600)
    second = searched(FormulaBackend(noise=0.01), budget=600)
    assert first.search == second.search
    np.testing.assert_array_equal(first.losses, second.losses)
    assert first.suggestions == second.suggestions


def test_without_val_data_training_batches_are_held_out_and_it_says_so():
    backend = FormulaBackend()
    with pytest.warns(UserWarning, match="no val_data: the search holds out the first 5 "):
        result = searched(backend, validation=False)
    assert result.search.held_out_batches == 5  # 10% of the backend's 50 batches
    assert all(plan.data_start == 5 for plan in backend.plans)
    assert all(plan.val_from_train == 5 for plan in backend.plans[1:])


def test_every_plan_of_a_search_keeps_its_batches_and_trains_under_the_schedule():
    backend = FormulaBackend()
    searched(backend, schedule="constant")
    sweep, *candidates = backend.plans
    assert sweep.target is None and sweep.val_every is None and sweep.keep_data
    for plan in candidates:
        assert plan.target == "constant" and plan.keep_data
        assert plan.val_every == plan.num_steps  # one validation point, at the end
        assert np.all(plan.lrs == plan.lrs[:, :1])  # one LR per run
        assert np.all(plan.curves == 0)  # the same batches for every candidate


def test_a_constant_search_brackets_half_a_decade_lower():
    lrs = np.geomspace(1e-7, 10, 100)
    smoothed = FormulaBackend(sweep_minimum=-1.0).sweep_loss(lrs)
    _, cycle_high, _ = bracket(lrs, smoothed, "one_cycle")
    _, constant_high, _ = bracket(lrs, smoothed, "constant")
    assert np.log10(cycle_high / constant_high) == pytest.approx(0.5)


def test_the_result_file_keeps_the_search(tmp_path):
    result = searched(FormulaBackend(), budget=600)
    path = tmp_path / "search.json"
    result.save(path)
    loaded = LRFindResult.load(path)
    assert loaded == result
    assert loaded.suggestion == result.search.lr
    with pytest.raises(ValueError, match="the search measured 'one_cycle' runs"):
        loaded.suggest("search", for_schedule="constant")
    # another schedule falls back to the bracketing sweep's reading
    assert loaded.suggest(for_schedule="constant").method == "minimum"


def test_choose_takes_the_parabola_vertex_between_the_neighbours():
    lrs = np.array([1e-3, 1e-2, 1e-1])
    scores = 1 + (np.log10(lrs) + 1.8) ** 2
    lr, reason = choose(lrs, scores)
    assert np.log10(lr) == pytest.approx(-1.8)
    assert "vertex of a parabola" in reason
    edge, reason = choose(lrs, np.array([1.0, 2.0, 3.0]))
    assert edge == 1e-3 and "at an edge" in reason
    assert choose(lrs, np.full(3, np.inf)) == (None, "every candidate diverged")


def test_beyond_edge_steps_out_at_the_edge_spacing():
    lrs = np.array([1e-3, 1e-2, 1e-1])
    np.testing.assert_allclose(beyond_edge(lrs, np.array([1.0, 2.0, 3.0])), [1e-4])
    np.testing.assert_allclose(beyond_edge(lrs, np.array([3.0, 2.0, 1.0])), [1.0])
    assert len(beyond_edge(lrs, np.array([2.0, 1.0, 3.0]))) == 0
    assert len(beyond_edge(lrs, np.array([3.0, 2.0, np.inf]))) == 0


def test_near_best_spans_the_lrs_within_the_tolerance():
    lrs = np.array([1e-3, 1e-2, 1e-1, 1.0])
    assert near_best(lrs, np.array([1.5, 1.01, 1.0, 1.3]), 0.05) == (1e-2, 1e-1)
    assert near_best(lrs, np.full(4, np.inf), 0.05) is None


@pytest.mark.usefixtures("no_show")
def test_the_plot_shows_the_candidates_the_choice_and_the_near_best_range(tmp_path):
    result = searched(FormulaBackend(), budget=600)
    ax = result.plot(path=tmp_path / "search.png")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    rungs = sorted(set(result.search.rungs.tolist()))
    horizons = [int(result.search.horizons[result.search.rungs == r][0]) for r in rungs]
    assert [f"candidates, {h}-step runs" for h in horizons] == [
        label for label in labels if label.startswith("candidates")
    ]
    search = result.search
    assert f"search: {search.lr:.2e} (one_cycle, 300 steps)" in labels
    assert (f"best of the {search.measured_horizon}-step runs: {search.measured_lr:.2e}"
            in labels)
    assert "within 2% of the best" in labels
    assert ax.get_title().startswith("LR search")
    scores_ax = next(other for other in ax.figure.axes if other is not ax)
    plotted = np.concatenate([line.get_ydata() for line in scores_ax.get_lines()])
    np.testing.assert_allclose(np.sort(plotted), np.sort(result.search.scores))
    assert (tmp_path / "search.png").read_bytes()[:4] == b"\x89PNG"


def test_a_search_takes_no_repeated_sweeps():
    with pytest.raises(ValueError, match=r"mode='search' runs one bracketing sweep .*"
                       r"num_sweeps=3 applies to mode='sweep'"):
        Settings(mode="search", training_steps=100, num_sweeps=3)


def test_a_sweep_cut_short_by_the_data_is_named_rather_than_bracketed():
    class ShortData(FormulaBackend):
        def run(self, plan, notices):
            record = super().run(plan, notices)
            if plan.val_every is None:  # the sweep: the data runs out after 2 steps
                record.made[:] = 2
                record.steps[:] = 2
                record.end_reasons[0] = "data exhausted after 2 steps"
            return record

    with pytest.raises(ValueError, match=r"the bracketing sweep recorded 2 point\(s\) \(data "
                       r"exhausted after 2 steps\): the search has nothing to bracket"):
        searched(ShortData())


def test_num_steps_is_refused_in_search_mode():
    with pytest.raises(ValueError, match="num_steps is the length of a classic sweep; "
                                         "mode='search' sizes its bracketing sweep"):
        call_settings(None, mode="search", training_steps=300, num_steps=77)


@pytest.mark.parametrize("training", [1, 3])
def test_a_training_shorter_than_a_candidate_run_is_refused(training):
    with pytest.raises(ValueError, match=f"training_steps={training}: a search compares "
                                         "candidate runs of at least 4 steps"):
        call_settings(None, mode="search", training_steps=training)


def test_a_default_budget_raised_to_the_minimum_is_announced():
    with pytest.warns(UserWarning, match=re.escape(
            f"budget_steps defaults to training_steps (10), fewer than the {minimum_budget()} "
            "steps a search needs at least")):
        result = searched(FormulaBackend(), training=10)
    assert result.meta["steps_trained"] <= minimum_budget()


@pytest.mark.filterwarnings("ignore:the search's best candidate")
def test_an_explicit_or_sufficient_budget_is_not_announced(recwarn):
    searched(FormulaBackend(), training=10, budget=minimum_budget())
    searched(FormulaBackend(), training=300)
    assert not [w for w in recwarn if "budget_steps defaults" in str(w.message)]


@pytest.mark.parametrize("batches", [1, 2])
def test_too_few_training_batches_to_hold_out_is_a_clear_error(batches):
    from lrfind_core.shell import check_held_out

    with pytest.raises(ValueError, match=f"train_data holds {batches} batches; the search "
                                         "holds out 2 as validation data"):
        check_held_out(False, batches)
    check_held_out(True, batches)  # val_data given: nothing is held out
    check_held_out(False, None)  # length unknown: the backend checks as it reads
    check_held_out(False, 3)
