"""Suggestions: each method on curves with a known answer, trimming, clipping, registry."""

import importlib
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lrfind_core import MethodOutput, Suggestion, available_methods, register_method
from lrfind_core.schedules import exponential_schedule, linear_schedule
from lrfind_core.suggestion import suggest
from lrfind_core.suggestion_methods import slide, steep, valley

suggest_module = importlib.import_module("lrfind_core.suggestion")

FAST = settings(max_examples=60, deadline=None)
BUILTIN = ("valley", "steep", "minimum", "slide")
NO_TRIM = {"skip_start": 0, "skip_end": 0}


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the method registry, so registering here leaks nowhere."""
    monkeypatch.setattr(suggest_module, "_METHODS", dict(suggest_module._METHODS))


def sweep(n, start=1e-6, end=1.0):
    return exponential_schedule(start, end, n)


def reference_valley_index(losses):
    """fastai's valley, as its O(n^2) loop writes it."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def reference_slide_index(losses, lr_diff=15, thresh=0.005):
    """fastai's slide, with its negative indices."""
    grad = np.gradient(np.asarray(losses, dtype=np.float64))
    r_idx = -1
    l_idx = r_idx - lr_diff
    chosen = len(losses) + l_idx
    while l_idx >= -len(losses) and abs(grad[r_idx] - grad[l_idx]) > thresh:
        chosen = len(losses) + l_idx
        r_idx -= 1
        l_idx -= 1
    return chosen


# --- the four methods on curves with a known answer --------------------------------------


VALLEY_CURVE = [5, 6, 7, 8, 7, 6, 5, 4, 3, 2, 1, 0.5, 0.6, 0.8, 1.0, 1.5, 3, 6]


def test_valley_on_a_constructed_run():
    # The longest strictly decreasing run is 8 (index 3) down to 0.5 (index 11): L = 9 ends
    # first at e = 11, so s = 11 - 9 = 2, k = 3 and the point is 2 + 3 + int(1.5) = 6.
    lrs = sweep(len(VALLEY_CURVE))
    result = suggest(lrs, VALLEY_CURVE, "valley", **NO_TRIM)
    assert result == Suggestion("valley", float(lrs[6]), 6, result.reason, curve_lr=float(lrs[6]))
    assert "valley of 9 falling points" in result.reason


def test_valley_counts_a_subsequence_through_bumps():
    # 4, 3, 2, 1, 0.5 (skipping the bumps 3.5 and 1.2) gives L = 5 ending at index 6:
    # s = 1, k = 5/3, point 1 + int(1.67) + int(0.83) = 2.
    curve = [4, 3, 3.5, 2, 1, 1.2, 0.5, 2, 5]
    lrs = sweep(len(curve))
    result = suggest(lrs, curve, "valley", **NO_TRIM)
    assert (result.lr, result.index) == (float(lrs[2]), 2)


def test_valley_with_default_trimming():
    # 10 leading and 5 trailing points that would lengthen the valley if they were judged;
    # planned_steps=100 trims the first 100 // 10 = 10, and the last 5 go too.
    curve = list(np.linspace(100.0, 91.0, 10)) + VALLEY_CURVE + [0.1, 0.05, 0.01, 0.005, 0.001]
    lrs = sweep(len(curve))
    result = suggest(lrs, curve, "valley", planned_steps=100)
    assert (result.lr, result.index) == (float(lrs[10 + 6]), 10 + 6)


@FAST
@given(values=st.lists(st.integers(0, 12), min_size=3, max_size=40))
def test_valley_matches_fastai_loop(values):
    losses = [v / 4 for v in values]
    assume(max(losses) > min(losses))
    lrs = sweep(len(losses))
    expected = reference_valley_index(losses)
    # The rule itself (suggest() declines curves that only rise before it gets there).
    result = valley(lrs, np.asarray(losses, dtype=np.float64))
    # fastai can index from the end when the valley starts at point 0; lrfind clamps to 0.
    expected = max(expected, 0)
    assert (result.lr, result.index) == (float(lrs[expected]), expected)


def test_steep_picks_the_steepest_segment():
    # Central differences f[i+1] - f[i-1] on evenly spaced log(lr):
    # i=3: -0.1, i=4: -1.0, i=5: -2.4, i=6: -1.6, i=7: -0.1, the rest 0. Steepest: i=5.
    curve = [3, 3, 3, 3, 2.9, 2.0, 0.5, 0.4, 0.4, 0.4]
    lrs = sweep(len(curve))
    result = suggest(lrs, curve, "steep", **NO_TRIM)
    assert (result.lr, result.index) == (float(lrs[5]), 5)
    # slope per e-fold = -2.4 / (2 * h), h = ln(1e6) / 9
    slope = -2.4 / (2 * np.log(1e6) / 9)
    assert f"{slope:.4g}" in result.reason


def test_steep_with_default_trimming():
    # 20 points planned and recorded: skip 2 at the start and 5 at the end. A steeper
    # fall inside the trimmed ends must be ignored.
    curve = [50, 10] + [3, 3, 3, 3, 2.9, 2.0, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4] + [0, -40] * 2
    curve = curve[:20] + [-90] * (20 - len(curve))
    lrs = sweep(len(curve))
    result = suggest(lrs, curve, "steep")
    assert (result.lr, result.index) == (float(lrs[2 + 5]), 2 + 5)


def test_steep_at_the_first_point_uses_a_one_sided_difference():
    # slope at 0: (1 - 5) / h = -4 / h; at 1: (0.9 - 5) / (2h) = -2.05 / h. Steepest: 0.
    curve = [5.0, 1.0, 0.9, 0.8, 0.7, 0.6]
    lrs = sweep(len(curve))
    result = suggest(lrs, curve, "steep", **NO_TRIM)
    assert (result.lr, result.index) == (float(lrs[0]), 0)


def test_steep_returns_none_when_the_loss_never_falls():
    curve = np.linspace(1.0, 2.0, 30)
    result = steep(sweep(30), curve)
    assert (result.lr, result.index) == (None, None)
    assert result.reason == "the smoothed loss never falls"


def test_steep_ignores_rounding_on_plateaus():
    # Never falls: flat, then a step up, then flat. The plateaus' slopes are exactly 0
    # (log(lr) gaps that differ in the last bit must not turn them into a "fall").
    curve = np.array([3.0] * 15 + [4.0] * 5)
    result = steep(sweep(20), curve)
    assert result.lr is None
    assert result.reason == "the smoothed loss never falls"


def test_steep_on_a_linear_schedule_uses_log_lr_gaps():
    # lrs 0.1, 0.2, ..., 1.0. Slopes (f[i+1] - f[i-1]) / ln(lr[i+1] / lr[i-1]):
    # i=3: -1 / ln(5/3) = -1.96, i=4: -4 / ln(6/4) = -9.87, i=5: -3 / ln(7/5) = -8.92.
    lrs = linear_schedule(0.1, 1.0, 10)
    curve = [5, 5, 5, 5, 4, 1, 1, 1, 1, 1]
    result = suggest(lrs, curve, "steep", **NO_TRIM)
    assert (result.lr, result.index) == (float(lrs[4]), 4)
    assert f"{-4 / np.log(6 / 4):.4g}" in result.reason


def test_minimum_divides_by_ten():
    # 61 points, ten per decade from 1e-6: lr_30 = 1e-3, so the answer is 1e-4 = lr_20.
    lrs = sweep(61)
    curve = (np.arange(61) - 30.0) ** 2 / 100 + 1.0
    result = suggest(lrs, curve, "minimum", **NO_TRIM)
    assert result.lr == pytest.approx(1e-4, rel=1e-12)
    assert result.lr == float(lrs[30]) / 10
    assert result.index == 20


def test_minimum_takes_the_first_of_equal_minima():
    lrs = sweep(61)
    curve = np.full(61, 2.0)
    curve[40] = curve[50] = 0.5
    result = suggest(lrs, curve, "minimum", **NO_TRIM)
    assert result.lr == float(lrs[40]) / 10
    assert result.index == 30


def test_minimum_near_the_start_is_clipped():
    # Minimum at lr_5 = 1e-5.5; a tenth of it is below the first LR 1e-6, so it is clipped.
    lrs = sweep(61)
    curve = np.abs(np.arange(61) - 5.0) + 1.0
    result = suggest(lrs, curve, "minimum", **NO_TRIM)
    assert result.lr == float(lrs[0])
    assert result.index == 0
    assert "clipped" in result.reason


def test_slide_stops_where_gradients_agree():
    # Flat (1.0) up to point 20, then 1 + 0.02 (i - 20)^2. np.gradient: 0 up to 19,
    # 0.01 at 20, 0.04 (i - 20) from 21. Walking left from (49, 34) the gradients 15 apart
    # differ by > 0.005 down to (20, 5): 0.01 vs 0; at (19, 4) both are 0. Answer: point 5.
    steps = np.arange(50)
    curve = np.where(steps > 20, 1.0 + 0.02 * (steps - 20.0) ** 2, 1.0)
    lrs = sweep(50)
    result = slide(lrs, curve)
    assert (result.lr, result.index) == (float(lrs[5]), 5)
    assert reference_slide_index(curve) == 5


def test_slide_threshold_is_strict():
    # As above with 0.01 (i - 20)^2 from 0.0: the gradient at 20 is exactly 0.01 / 2 = 0.005,
    # which does not differ from 0 by *more* than 0.005, so the walk ends after point 6.
    steps = np.arange(50)
    curve = np.where(steps > 20, 0.01 * (steps - 20.0) ** 2, 0.0)
    assert np.gradient(curve)[20] == 0.005
    lrs = sweep(50)
    result = slide(lrs, curve)
    assert (result.lr, result.index) == (float(lrs[6]), 6)


def test_slide_when_gradients_never_differ():
    # A straight line: equal gradients, so the first left point (49 - 15 = 34) is kept.
    lrs = sweep(50)
    result = suggest(lrs, np.linspace(3.0, 1.0, 50), "slide", **NO_TRIM)
    assert result.index == 34
    assert result.lr == float(lrs[34])


def test_slide_walking_off_the_start():
    # 0.02 i^2: gradients 0.04 i inside, so every pair 15 apart differs by 0.6 > 0.005.
    lrs = sweep(30)
    result = slide(lrs, 0.02 * np.arange(30.0) ** 2)
    assert (result.lr, result.index) == (float(lrs[0]), 0)


def test_slide_needs_more_than_15_points():
    result = suggest(sweep(15), np.linspace(2.0, 1.0, 15), "slide", **NO_TRIM)
    assert result.lr is None
    assert result.reason == "slide needs more than 15 points, got 15"


@FAST
@given(values=st.lists(st.integers(0, 40), min_size=16, max_size=60))
def test_slide_matches_fastai_loop(values):
    losses = [v / 8 for v in values]
    assume(max(losses) > min(losses))
    lrs = sweep(len(losses))
    expected = reference_slide_index(losses)
    result = slide(lrs, np.asarray(losses, dtype=np.float64))
    if losses[expected] > losses[0] and min(losses[: expected + 1]) >= losses[0]:
        # fastai's answer lies up a rise the loss never fell below its start on: declined.
        assert result.lr is None and "rises to the slide point" in result.reason
    else:
        assert (result.lr, result.index) == (float(lrs[expected]), expected)


# --- trimming ------------------------------------------------------------------------------


@pytest.fixture
def recorder(registry):
    """Register a method that records the curve it was given and picks its first point."""
    seen = {}

    def record(lrs, losses):
        seen["lrs"], seen["losses"] = lrs.copy(), losses.copy()
        return MethodOutput(float(lrs[0]), "first point", 0)

    register_method("recorder", record)
    return seen


def noisy_curve(n, seed=0):
    return 2.0 + np.random.default_rng(seed).uniform(-0.5, 0.5, n)


def test_default_trimming(recorder):
    lrs, losses = sweep(100), noisy_curve(100)
    result = suggest(lrs, losses, "recorder")
    assert np.array_equal(recorder["lrs"], lrs[10:95])
    assert np.array_equal(recorder["losses"], losses[10:95])
    assert (result.lr, result.index) == (float(lrs[10]), 10)


def test_trimming_uses_planned_steps(recorder):
    lrs, losses = sweep(100), noisy_curve(100)
    suggest(lrs, losses, "recorder", planned_steps=250)
    assert np.array_equal(recorder["lrs"], lrs[25:95])


def test_explicit_trimming(recorder):
    lrs, losses = sweep(100), noisy_curve(100)
    suggest(lrs, losses, "recorder", skip_start=3, skip_end=7)
    assert np.array_equal(recorder["losses"], losses[3:93])
    suggest(lrs, losses, "recorder", **NO_TRIM)
    assert np.array_equal(recorder["losses"], losses)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_everything_from_the_first_non_finite_point_is_dropped(recorder, bad):
    lrs, losses = sweep(100), noisy_curve(100)
    losses[60] = bad
    losses[80] = np.nan
    suggest(lrs, losses, "recorder")
    # finite prefix 0..59, minus 10 at the start and 5 at its end
    assert np.array_equal(recorder["losses"], losses[10:55])


def test_too_short_after_trimming(recorder):
    lrs, losses = sweep(100), noisy_curve(100)
    losses[14] = np.nan
    result = suggest(lrs, losses, "recorder")
    assert result == Suggestion(
        "recorder",
        None,
        None,
        "too short to judge: 0 points left after trimming "
        "(skip_start=10, skip_end=5, finite points=14)",
    )
    assert recorder == {}


@pytest.mark.parametrize("method", BUILTIN)
def test_short_curve_gives_none_with_reason(method):
    # 7 points: skip 0 at the start and 5 at the end leaves 2 (< 3).
    result = suggest(sweep(7), np.linspace(2.0, 1.0, 7), method)
    assert result.lr is None
    assert result.index is None
    assert result.reason.startswith("too short to judge: 2 points left after trimming")


@pytest.mark.parametrize("method", BUILTIN)
@pytest.mark.parametrize("value", [1.5, 0.0, -3.0])
def test_flat_curve_gives_none_with_reason(method, value):
    result = suggest(sweep(50), np.full(50, value), method)
    assert result == Suggestion(
        method, None, None, "flat curve: the loss does not change with the LR"
    )


# --- clipping, registry, errors -----------------------------------------------------------


@pytest.mark.usefixtures("registry")
def test_lr_above_the_range_is_clipped():
    register_method("too-high", lambda lrs, losses: MethodOutput(float(lrs[-1]) * 10, "high"))
    lrs = sweep(40)
    result = suggest(lrs, noisy_curve(40), "too-high")
    assert result.lr == float(lrs[-1])
    assert result.index == 39
    assert result.reason.startswith("high; clipped to the swept range")


@pytest.mark.usefixtures("registry")
def test_lr_below_the_range_is_clipped():
    register_method("too-low", lambda lrs, losses: MethodOutput(1e-12, "low", None))
    lrs = sweep(40)
    result = suggest(lrs, noisy_curve(40), "too-low")
    assert result.lr == float(lrs[0])
    assert result.index == 0
    assert "clipped" in result.reason


@pytest.mark.usefixtures("registry")
def test_lr_inside_the_range_is_not_clipped_and_gets_the_nearest_index():
    lrs = sweep(61)  # ten per decade from 1e-6
    register_method("fixed", lambda lrs, losses: MethodOutput(1.1e-3, "fixed"))
    result = suggest(lrs, noisy_curve(61), "fixed")
    assert result == Suggestion("fixed", 1.1e-3, 30, "fixed", curve_lr=1.1e-3)


@pytest.mark.usefixtures("registry")
@pytest.mark.parametrize("bad_lr", [np.nan, -1e-3, 0.0, np.inf])
def test_invalid_lr_from_a_method(bad_lr):
    register_method("broken", lambda lrs, losses: MethodOutput(bad_lr, "oops"))
    result = suggest(sweep(40), noisy_curve(40), "broken")
    assert result.lr is None
    assert result.reason == f"method returned an invalid LR {float(bad_lr)!r}: oops"


@pytest.mark.usefixtures("registry")
def test_method_declining_passes_its_reason_on():
    register_method("shrug", lambda lrs, losses: MethodOutput(None, "no idea"))
    result = suggest(sweep(40), noisy_curve(40), "shrug")
    assert result == Suggestion("shrug", None, None, "no idea")


@pytest.mark.usefixtures("registry")
def test_registry():
    assert available_methods() == BUILTIN
    register_method("mine", lambda lrs, losses: MethodOutput(float(lrs[1]), "mine", 1))
    assert available_methods() == (*BUILTIN, "mine")
    with pytest.raises(
        ValueError,
        match=re.escape("suggestion method 'mine' exists; pass overwrite=True to replace it"),
    ):
        register_method("mine", lambda lrs, losses: MethodOutput(None, "again"))
    with pytest.raises(ValueError, match="suggestion method 'valley' exists"):
        register_method("valley", lambda lrs, losses: MethodOutput(None, "again"))
    register_method("valley", lambda lrs, losses: MethodOutput(None, "replaced"), overwrite=True)
    assert suggest(sweep(40), noisy_curve(40), "valley").reason == "replaced"
    with pytest.raises(TypeError, match="method name must be a non-empty string"):
        register_method("", lambda lrs, losses: None)
    with pytest.raises(TypeError, match="method must be callable, got int"):
        register_method("number", 3)


def test_registry_fixture_did_not_leak():
    assert available_methods() == BUILTIN


def test_unknown_method_names_the_allowed_ones():
    message = "unknown suggestion method 'nope'; allowed: ['minimum', 'slide', 'steep', 'valley']"
    with pytest.raises(ValueError, match=re.escape(message)):
        suggest(sweep(40), noisy_curve(40), "nope")


@pytest.mark.parametrize(
    ("lrs", "losses", "message"),
    [
        ([1e-3, 1e-2], [1.0, 2.0, 3.0], "lrs and losses must be 1-D arrays of the same length"),
        ([1e-2, 1e-3, 1e-1], [1.0, 2.0, 3.0], "lrs must be strictly increasing"),
        ([1e-3, 1e-3, 1e-1], [1.0, 2.0, 3.0], "lrs must be strictly increasing"),
        ([0.0, 1e-3, 1e-1], [1.0, 2.0, 3.0], "lrs must be finite and > 0"),
        ([1e-3, 1e-2, np.inf], [1.0, 2.0, 3.0], "lrs must be finite and > 0"),
    ],
)
def test_bad_curves(lrs, losses, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        suggest(lrs, losses)


def test_bad_trimming_arguments():
    with pytest.raises(ValueError, match=re.escape("skip_end must be an int >= 0, got -1")):
        suggest(sweep(40), noisy_curve(40), skip_end=-1)
    with pytest.raises(TypeError, match=re.escape("skip_start must be an int, got float")):
        suggest(sweep(40), noisy_curve(40), skip_start=2.0)
    with pytest.raises(ValueError, match=re.escape("planned_steps must be an int >= 1, got 0")):
        suggest(sweep(40), noisy_curve(40), planned_steps=0)


# --- properties ----------------------------------------------------------------------------

any_curves = st.lists(
    st.one_of(
        st.floats(min_value=-1e3, max_value=1e3),
        st.sampled_from([np.nan, np.inf]),
    ),
    min_size=1,
    max_size=80,
)


@FAST
@given(
    losses=any_curves,
    method=st.sampled_from(BUILTIN),
    skip_start=st.one_of(st.none(), st.integers(0, 10)),
    skip_end=st.integers(0, 6),
)
def test_suggestion_lies_in_the_swept_range(losses, method, skip_start, skip_end):
    lrs = sweep(len(losses), start=1e-5, end=10.0) if len(losses) > 1 else np.array([1e-3])
    result = suggest(lrs, losses, method, skip_start=skip_start, skip_end=skip_end)
    assert result.method == method
    assert isinstance(result.reason, str)
    assert result.reason
    if result.lr is None:
        assert result.index is None
    else:
        assert lrs[0] <= result.lr <= lrs[-1]
        assert 0 <= result.index < len(lrs)


def distinct_steepest(ints):
    """True when the steepest slope on an even log grid is unique (no near-ties to flip)."""
    scaled = [2 * (ints[1] - ints[0])]
    scaled += [ints[i + 1] - ints[i - 1] for i in range(1, len(ints) - 1)]
    scaled += [2 * (ints[-1] - ints[-2])]
    return scaled.count(min(scaled)) == 1


@FAST
@given(
    ints=st.lists(st.integers(0, 80), min_size=3, max_size=60),
    shift=st.integers(-400, 400),
    method=st.sampled_from(BUILTIN),
)
def test_adding_a_constant_changes_nothing(ints, shift, method):
    # Losses on a 1/8 grid and shifts on the same grid: every sum and difference is exact.
    if method == "steep":
        assume(distinct_steepest(ints))
    lrs = sweep(len(ints))
    losses = np.asarray(ints, dtype=np.float64) / 8
    base = suggest(lrs, losses, method, **NO_TRIM)
    shifted = suggest(lrs, losses + shift / 8, method, **NO_TRIM)
    assert (shifted.lr, shifted.index) == (base.lr, base.index)


@FAST
@given(
    steps_up=st.lists(st.integers(0, 20), min_size=20, max_size=80),
    start=st.integers(-50, 50),
)
def test_rising_curve_gives_none_or_the_low_end(steps_up, start):
    n = len(steps_up)
    begin = n // 10
    assume(any(steps_up[begin + 1 : n - 5]))  # not flat after trimming
    losses = (start + np.cumsum(steps_up)) / 8.0
    lrs = sweep(n)
    results = {m: suggest(lrs, losses, m) for m in BUILTIN}
    # A curve that only rises holds no suggestion: no method hands back the low end.
    for method, result in results.items():
        assert (result.lr, result.index) == (None, None), method
        assert result.reason.startswith("the loss only rises over the judged range"), method
        assert f"lowest at its first point, {lrs[begin]:.3g}" in result.reason
        assert result.reason.endswith("lower start_lr")


@pytest.mark.parametrize("curve", [np.linspace(1.0, 3.0, 100), 1.0 + np.linspace(0, 1, 100) ** 3])
def test_slide_declines_a_curve_that_only_rises(curve):
    # fastai's walk would answer point 79 (the line) or 47 (the cubic), far up the rise.
    result = suggest(sweep(100), curve, "slide")
    assert result.lr is None and result.index is None
    assert "the loss only rises" in result.reason
    # ... and the rule alone declines it too
    alone = slide(sweep(100)[10:95], np.asarray(curve)[10:95])
    assert alone.lr is None and "rises to the slide point" in alone.reason


def test_judging_reads_a_checked_curve_as_suggest_does():
    # judge_curve checks a curve once and reads every method with read_curve
    from lrfind_core.judging import judge_curve, suggest_on
    from lrfind_core.settings import Settings
    rng = np.random.default_rng(3)
    lrs = exponential_schedule(1e-6, 1.0, 80)
    for chosen in (Settings(), Settings(for_schedule="constant", skip_start=3)):
        for trial in range(20):
            losses = np.cumsum(rng.standard_normal(80)) + np.linspace(5, 0, 80) ** 2
            if trial % 4 == 0:
                losses[60 + trial % 7] = np.inf
            judgement = judge_curve(lrs, losses, chosen, planned_points=80)
            for method, got in judgement.suggestions.items():
                checked_by_suggest = suggest_on(judgement.lrs, judgement.smoothed_losses,
                                                chosen, 80, method)
                assert got == checked_by_suggest, method
