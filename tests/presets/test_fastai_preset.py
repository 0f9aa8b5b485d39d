"""The fastai preset gives fastai's own numbers on fastai's own curves.

``fastai_2_8_12.json`` holds curves that fastai 2.8.12 recorded with its
``learn.lr_find`` (written by ``record_fastai.py``, which needs fastai; this test
does not): its LRs, the raw loss of every step, its smoothed losses and its four
suggestions. Fed the raw losses, the preset must give fastai's smoothed losses bit
for bit (tolerance 0: ``arithmetic="fastai"`` smooths in float32 as fastai does) and
every suggestion, to the bit, read off the curve.
"""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from lrfind_core import LRFindResult, Settings, register_method
from lrfind_core import suggestion as suggest_module
from lrfind_core.smoothing import ewa_smooth, fma_float32
from lrfind_core.suggestion import suggest
from lrfind_core.suggestion_methods import MethodOutput

FIXTURE = json.loads((Path(__file__).parent / "fastai_2_8_12.json").read_text("utf-8"))
CASES = FIXTURE["cases"]
METHODS = ("valley", "slide", "minimum", "steep")
LRFIND_ARITHMETIC_TOLERANCE = 1.1e-6
"""The float64 EWA (``arithmetic="lrfind"``) against fastai's float32 one: measured
1.03e-6 relative at most on these curves. Most of it is fastai's weight: torch.lerp
rounds beta=0.98 to float32, so the new loss weighs 1 - float32(0.98) = 0.019999981,
while the debiasing divides by float32(1 - 0.98) = 0.02."""


def curve(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    case = CASES[name]
    lrs = np.asarray(case["lrs"], dtype=np.float64)
    raw = np.asarray(case["raw_losses"], dtype=np.float32).astype(np.float64)
    smoothed = np.asarray(case["smoothed_losses"], dtype=np.float32).astype(np.float64)
    return lrs, raw, smoothed


def judge(name: str, settings: Settings | str = "fastai") -> LRFindResult:
    lrs, raw, _ = curve(name)
    # fastai trims num_it // 10 points, whatever the curve's length: num_steps is num_it.
    return LRFindResult.from_curve(
        lrs, raw, settings, methods=METHODS, num_steps=CASES[name]["num_it"]
    )


def test_the_fixture_covers_what_it_should():
    assert FIXTURE["versions"]["fastai"] == "2.8.12"
    models = {case["model"] for case in CASES.values()}
    optimizers = {case["optimizer"].split("{")[0] for case in CASES.values()}
    assert {"mlp", "cnn_bn"} <= models
    assert {"SGD", "Adam"} <= optimizers
    # Some curves ran to num_it, some were ended by fastai's 4x rule.
    assert any(len(case["lrs"]) == case["num_it"] for case in CASES.values())
    assert any(len(case["lrs"]) < case["num_it"] for case in CASES.values())


@pytest.mark.parametrize("name", CASES)
def test_the_preset_sweeps_fastais_lrs_bit_for_bit(name):
    case = CASES[name]
    settings = Settings.preset_named(
        "fastai", start_lr=case["start_lr"], end_lr=case["end_lr"], num_steps=case["num_it"]
    )
    planned = settings.learning_rates()
    assert planned.tolist()[: len(case["lrs"])] == case["lrs"]


@pytest.mark.parametrize("name", CASES)
def test_smoothed_losses_and_stop_equal_fastais(name):
    lrs, _, fastai_smoothed = curve(name)
    result = judge(name)
    assert result.settings.arithmetic == "fastai"
    # Tolerance 0: the same float32 values.
    np.testing.assert_array_equal(result.smoothed_losses, fastai_smoothed)
    # The curve ends where fastai's did: its 4x rule fired on the last recorded point.
    assert len(result.lrs) == len(lrs)
    expected = "completed" if len(lrs) == CASES[name]["num_it"] else "diverged"
    assert result.stop_reason == expected


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("method", METHODS)
def test_every_suggestion_equals_fastais(name, method):
    result = judge(name)
    got = result.suggest(method, for_schedule="curve")
    assert got.lr == CASES[name]["suggestions"][method], got.reason
    if method == "valley":
        assert result.suggestion == got.lr  # the preset's default method


@pytest.mark.parametrize("name", CASES)
def test_lrfind_arithmetic_differs_only_by_float32_rounding(name):
    # The same curve judged with the preset's settings but lrfind's float64 arithmetic.
    _, _, fastai_smoothed = curve(name)
    settings = dataclasses.replace(Settings.preset_named("fastai"), arithmetic="lrfind")
    result = judge(name, settings=dataclasses.replace(settings, num_steps=CASES[name]["num_it"]))
    relative = np.abs(result.smoothed_losses / fastai_smoothed - 1.0)
    assert 0 < relative.max() <= LRFIND_ARITHMETIC_TOLERANCE


# --- the pieces ------------------------------------------------------------------------


def round_to_float32(value: Fraction) -> float:
    """``value`` rounded to the nearest float32 (ties to even), exactly."""
    guess = np.float32(float(value))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess,
                  np.nextafter(guess, np.float32(np.inf))]
    distances = [abs(Fraction(float(candidate)) - value) for candidate in candidates]
    nearest = [c for c, d in zip(candidates, distances, strict=True) if d == min(distances)]
    if len(nearest) > 1:
        nearest = [c for c in nearest if not c.view(np.int32) & 1]
    return float(nearest[0])


def test_fma_float32_rounds_once():
    rng = np.random.default_rng(7)
    triples = rng.standard_normal((400, 3)).astype(np.float32).tolist()
    # a * b = 2^-24 - 2^-60: the exact sum lies just below a float32 halfway point that
    # float64 rounds onto, so rounding twice (float64, then float32) goes wrong.
    a, b = 1 + 2.0**-18, 2.0**-24 * (1 - 2.0**-18)
    triples += [[a, b, 1 + 2.0**-23], [a, b, 1.0], [-a, b, 1.0], [a, -b, 1 + 2.0**-23]]
    for a, b, c in triples:
        exact = Fraction(a) * Fraction(b) + Fraction(c)
        assert fma_float32(a, b, c) == round_to_float32(exact), (a, b, c)
    assert fma_float32(1 + 2.0**-18, 2.0**-24 * (1 - 2.0**-18), 1 + 2.0**-23) == 1 + 2.0**-23
    assert math.isnan(fma_float32(math.inf, 0.5, -math.inf))
    assert fma_float32(math.inf, 0.5, 1.0) == math.inf


def test_fastai_smoothing_in_small_numbers():
    # beta=0.98: torch.lerp weighs the loss by 1 - float32(0.98) = 0.019999981, and the
    # first value divides that by float32(1 - 0.98) = 0.02, so it is not the loss itself.
    smoothed = ewa_smooth([2.0, 1.0], beta=0.98, arithmetic="fastai")
    rest = float(np.float32(1) - np.float32(0.98))
    first = float(np.float32(np.float32(2.0 * rest) / np.float32(1 - 0.98)))
    assert smoothed[0] == first != 2.0
    assert ewa_smooth([2.0], beta=0.98)[0] == 2.0
    # beta=0 smooths nothing in either arithmetic; a NaN spreads to what follows.
    assert ewa_smooth([2.0, 1.5], beta=0.0, arithmetic="fastai").tolist() == [2.0, 1.5]
    assert np.isnan(ewa_smooth([2.0, np.nan, 1.0], arithmetic="fastai")[1:]).all()
    # A loss beyond float32's range overflows, as in fastai.
    assert ewa_smooth([1e39], arithmetic="fastai")[0] == np.inf
    with pytest.raises(ValueError, match="arithmetic"):
        ewa_smooth([1.0], arithmetic="float16")


def test_settings_check_arithmetic():
    assert Settings().arithmetic == "lrfind"
    assert Settings.preset_named("torch-lr-finder").arithmetic == "lrfind"
    assert Settings.preset_named("fastai").arithmetic == "fastai"
    with pytest.raises(ValueError, match="arithmetic"):
        Settings(arithmetic="float32")
    with pytest.raises(TypeError, match="arithmetic"):
        Settings(arithmetic=None)
    data = Settings.preset_named("fastai").to_dict()
    assert Settings.from_dict(data) == Settings.preset_named("fastai")


def test_steep_in_fastai_arithmetic_answers_the_left_point():
    # Forward differences from point 3 on: -1, -2, -1.5, 0. The steepest is from point 4
    # to 5, answered at 4; lrfind's central differences (-1.5 at 4, -1.75 at 5) answer 5.
    losses = np.array([5.0, 5.0, 5.0, 5.0, 4.0, 2.0, 0.5, 0.5, 0.5, 0.5])
    lrs = np.geomspace(1e-5, 1e-1, len(losses))
    fastai = suggest(lrs, losses, "steep", skip_start=0, skip_end=0, arithmetic="fastai")
    lrfind = suggest(lrs, losses, "steep", skip_start=0, skip_end=0)
    assert (fastai.lr, fastai.index) == (float(np.float32(lrs[4])), 4)
    assert (lrfind.lr, lrfind.index) == (float(lrs[5]), 5)


def test_a_float32_lr_at_the_end_of_the_range_is_not_clipped():
    lrs = np.array([1e-4, 2e-4, 4e-4, 8e-4])  # float32(1e-4) < 1e-4
    assert float(np.float32(lrs[0])) < lrs[0]
    losses = np.array([1.0, 2.0, 0.5, 3.0])
    got = suggest(lrs, losses, "minimum", skip_start=0, skip_end=0, arithmetic="fastai")
    assert "clipped" in got.reason  # 4e-5 lies below the range
    assert got.lr == lrs[0]
    valley = suggest(lrs[:3], [3.0, 2.0, 1.0], "valley", skip_start=0, skip_end=0,
                     arithmetic="fastai")
    assert (valley.lr, "clipped" in valley.reason) == (float(np.float32(lrs[0])), False)


def test_a_registered_method_runs_as_it_is(monkeypatch):
    monkeypatch.setattr(suggest_module, "_METHODS", dict(suggest_module._METHODS))
    seen = []

    def mine(lrs, losses):
        seen.append(losses.dtype)
        return MethodOutput(float(lrs[1]), "mine", 1)

    register_method("valley", mine, overwrite=True)
    lrs = np.geomspace(1e-4, 1e-2, 5)
    got = suggest(lrs, [3.0, 2.0, 1.0, 0.5, 0.7], "valley", skip_start=0, skip_end=0,
                  arithmetic="fastai")
    assert (got.lr, got.reason, seen) == (float(lrs[1]), "mine", [np.float64])
