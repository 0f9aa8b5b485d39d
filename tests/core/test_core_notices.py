"""lr_find never hands back no answer, an edge of the range, or an empty band without a word."""

from __future__ import annotations

import numpy as np
import pytest
from search_fakes import FormulaBackend

from lrfind_core import LRFindResult, Settings
from lrfind_core.schedules import exponential_schedule
from lrfind_core.shell import call_settings, result_notices, run_finder

LRS = exponential_schedule(1e-6, 1.0, 60)


def bowl_at(index: int) -> np.ndarray:
    """A curve lowest at ``index``."""
    return 1.0 + (np.arange(60) - index) ** 2 / 200.0


def test_a_plain_answer_inside_the_range_comes_without_a_word(recwarn):
    result = run_finder(FormulaBackend(sweep_minimum=-2.0), Settings())
    assert result.suggestion is not None
    assert result_notices(result) == []
    assert [str(w.message) for w in recwarn] == []


def test_an_answer_at_the_start_of_the_range_says_so_and_what_to_change():
    # the lowest loss at point 8: minimum / 10 falls below the range and is clipped to it
    result = LRFindResult.from_curve(LRS, bowl_at(8), beta=0.0, for_schedule="curve")
    assert result.suggestion == LRS[0]
    assert result_notices(result) == [
        "the suggestion 1e-06 sits at the start of the swept range (1e-06): the best LR may "
        "be lower. Lower start_lr, or give the sweep more data if it ended early"
    ]


def test_an_answer_at_the_end_of_the_curve_says_so():
    # steep on a loss that falls faster and faster to the end of the curve
    falling = 3.0 - np.exp(np.linspace(0, 3, 60)) / 10
    result = LRFindResult.from_curve(LRS, falling, method="steep", beta=0.0, skip_end=0,
                                     for_schedule="curve")
    assert result.suggestion == LRS[-1]
    assert result_notices(result) == [
        "the suggestion 1 sits at the end of the curve (1): the best LR may be higher. Raise "
        "end_lr, or give the sweep more data if it ended early"
    ]


def test_no_answer_says_why_through_a_warning():
    backend = FormulaBackend(sweep_minimum=-6.5)  # the loss only rises over the judged range
    with pytest.warns(UserWarning, match=r"lr_find has no suggestion: the loss only rises"):
        result = run_finder(backend, Settings(start_lr=1e-7, end_lr=1.0))
    assert result.suggestion is None


def test_identical_curves_are_named_since_their_band_measures_nothing():
    with pytest.warns(UserWarning, match=r"the 3 curves are identical: nothing differed between "
                      r"them"):
        result = run_finder(FormulaBackend(sweep_minimum=-2.0), Settings(num_sweeps=3))
    assert result.ensemble.spread_decades("minimum") == 0.0


def test_a_search_whose_best_stays_at_an_edge_of_its_candidates_says_so():
    # the best LR is 1e-9, far below the bracket, and the budget runs out on the way there
    backend = FormulaBackend(best=-9.0, sweep_minimum=-1.0, curvature=0.05, drift=0.0)
    settings = call_settings(None, mode="search", training_steps=300, budget_steps=150)
    with pytest.warns(UserWarning, match=r"the search's best candidate, .*, is the lowest it "
                      r"ran .*Raise budget_steps or lower start_lr"):
        result = run_finder(backend, settings, has_validation=True)
    lrs, scores = result.search.rung(int(result.search.rungs.max()))
    assert np.argmin(scores) == 0 and result.search.measured_lr == lrs[0]


def test_a_plot_that_cannot_be_saved_is_a_warning_and_the_result_is_kept(tmp_path,
                                                                        monkeypatch):
    import matplotlib.figure

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    with pytest.warns(UserWarning, match=r"the result is complete, but saving the plot to .* "
                      r"failed: OSError: \[Errno 28\] No space left on device"):
        result = run_finder(FormulaBackend(sweep_minimum=-2.0), Settings(),
                            plot_path=tmp_path / "plot.png")
    assert result.suggestion is not None


@pytest.mark.parametrize(("name", "message"), [
    ("plot", "needs a file suffix matplotlib writes .*got none"),
    ("plot.notaformat", "got '.notaformat'"),
])
def test_a_plot_path_without_a_suffix_matplotlib_writes_is_refused_before_any_work(
        tmp_path, name, message):
    backend = FormulaBackend(sweep_minimum=-2.0)
    with pytest.raises(ValueError, match=f"plot_path .*{message}"):
        run_finder(backend, Settings(), plot_path=tmp_path / name)
    assert backend.plans == []
    assert list(tmp_path.iterdir()) == []


def test_the_plot_is_saved_and_its_figure_closed(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    run_finder(FormulaBackend(sweep_minimum=-2.0), Settings(), plot_path=tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert plt.get_fignums() == before


def test_curves_alike_only_in_being_all_nan_are_not_called_identical():
    # two sweeps whose loss is NaN from the first step read different batches: only
    # the missing answer is worth a word
    from core_testing import sweeps_result

    settings = Settings(num_sweeps=2, num_steps=20)
    nan_curves = [np.full(20, np.nan), np.full(20, np.nan)]
    result = sweeps_result(LRS[:20], nan_curves, settings)
    assert result_notices(result) == [
        "lr_find has no suggestion: too short to judge: 0 points left after trimming "
        "(skip_start=2, skip_end=5, finite points=0)"
    ]
    # identical finite points (with the same NaN stop) are still named
    curve = np.linspace(3.0, 1.0, 20)
    curve[15] = np.nan
    twins = sweeps_result(LRS[:20], [curve, curve.copy()], settings)
    assert result_notices(twins)[-1].startswith("the 2 curves are identical: nothing differed")
