"""Settings and presets: preset values, overrides, validation, plain-data round trip."""

import dataclasses
import json
import re

import numpy as np
import pytest

from lrfind_core import PRESETS, Settings
from lrfind_core.settings import DEFAULT_METHODS, resolve_settings
from lrfind_core.shell import call_settings, check_settings


def test_preset_names():
    assert set(PRESETS) == {"lrfind", "fastai", "torch-lr-finder"}
    assert DEFAULT_METHODS == ("valley", "steep", "minimum", "slide")


def test_default_preset():
    settings = resolve_settings()
    assert settings == Settings()
    assert settings is PRESETS["lrfind"]
    assert settings == resolve_settings("lrfind")
    assert (settings.start_lr, settings.end_lr, settings.num_steps) == (1e-7, 10.0, 100)
    assert (settings.schedule, settings.include_end) == ("exponential", True)
    assert (settings.beta, settings.debias, settings.diverge_factor) == (0.98, True, 4.0)
    assert (settings.method, settings.methods) == ("minimum", DEFAULT_METHODS)
    assert settings.for_schedule == "one_cycle"
    assert (settings.skip_start, settings.skip_end) == (None, 5)
    assert settings.preset == "lrfind"


def test_fastai_preset():
    settings = resolve_settings("fastai")
    assert settings.preset == "fastai"
    assert settings.include_end is False
    assert (settings.beta, settings.debias, settings.diverge_factor) == (0.98, True, 4.0)
    assert settings.method == "valley"
    assert (settings.skip_start, settings.skip_end) == (None, 5)  # num_steps // 10 and 5
    # fastai's sweep: lr_i = s (e / s) ** (i / N), stopping one step short of e.
    lrs = settings.learning_rates()
    expected = [1e-7 * (10.0 / 1e-7) ** (i / 100) for i in range(100)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[-1] < 10.0


def test_torch_lr_finder_preset():
    settings = resolve_settings("torch-lr-finder")
    assert settings.preset == "torch-lr-finder"
    assert settings.include_end is True
    assert (settings.beta, settings.debias, settings.diverge_factor) == (0.95, False, 5.0)
    assert settings.method == "steep"
    assert "steep" in settings.methods
    assert (settings.skip_start, settings.skip_end) == (10, 5)
    lrs = settings.learning_rates()
    assert (lrs[0], lrs[-1], len(lrs)) == (1e-7, 10.0, 100)


def test_overrides_win_over_presets():
    settings = resolve_settings(
        "torch-lr-finder", beta=0.9, diverge_factor=3.0, num_steps=50, end_lr=1.0
    )
    assert (settings.beta, settings.diverge_factor, settings.num_steps, settings.end_lr) == (
        0.9,
        3.0,
        50,
        1.0,
    )
    # the rest of the preset stays
    assert (settings.debias, settings.method, settings.skip_start) == (False, "steep", 10)
    assert resolve_settings("fastai", include_end=True, debias=False).include_end is True
    assert resolve_settings("fastai", method="steep").method == "steep"


def test_none_overrides_are_ignored():
    settings = resolve_settings(
        "torch-lr-finder",
        beta=None,
        debias=None,
        diverge_factor=None,
        method=None,
        skip_start=None,
        methods=None,
        start_lr=None,
    )
    assert settings == resolve_settings("torch-lr-finder")
    assert resolve_settings(None) == resolve_settings("lrfind")


def test_methods_always_include_the_default():
    assert resolve_settings("torch-lr-finder", methods=["valley"]).methods == ("steep", "valley")
    settings = resolve_settings(methods=["slide", "minimum"])
    assert (settings.method, settings.methods) == ("minimum", ("slide", "minimum"))
    settings = resolve_settings(methods="slide")
    assert (settings.method, settings.methods) == ("minimum", ("minimum", "slide"))
    settings = resolve_settings(methods=["minimum"], method="valley")
    assert (settings.method, settings.methods) == ("valley", ("valley", "minimum"))
    assert Settings(methods=["steep"]).methods == ("minimum", "steep")  # a tuple, always


def test_preset_named_applies_changes():
    settings = Settings.preset_named("fastai", beta=0.9)
    assert (settings.preset, settings.beta, settings.method) == ("fastai", 0.9, "valley")
    with pytest.raises(ValueError, match="unknown preset 'keras'"):
        Settings.preset_named("keras")


def test_settings_argument_must_be_settings_or_a_preset_name():
    with pytest.raises(TypeError, match="settings must be an lrfind Settings, a preset name"):
        resolve_settings({"beta": 0.9})


def test_method_names_are_checked_against_the_registry_before_a_run():
    settings = Settings(methods=("nope",))  # data: a method registered later may be named
    with pytest.raises(ValueError, match=re.escape("unknown suggestion method 'nope'")):
        check_settings(settings)
    with pytest.raises(ValueError, match=re.escape("unknown suggestion method 'nope'")):
        check_settings(Settings(method="nope"))


def test_a_plan_beyond_ten_million_steps_is_refused_before_any_work():
    with pytest.raises(ValueError, match="at most 10,000,000 micro-batches"):
        check_settings(Settings(num_steps=10**12))
    with pytest.raises(ValueError, match="at most 10,000,000 micro-batches"):
        check_settings(Settings(mode="independent", steps_per_lr=10**6, average_last=1))


def test_call_keywords_keep_their_meaning():
    with pytest.raises(ValueError, match="num_steps is the length of a classic sweep"):
        call_settings(None, mode="independent", num_steps=30)
    with pytest.raises(ValueError, match="training_steps belongs to mode='search'"):
        call_settings(None, training_steps=1000)
    assert call_settings("fastai", num_steps=30, mode=None).num_steps == 30


def test_settings_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolve_settings().beta = 0.5  # type: ignore[misc]


def test_unknown_preset():
    message = "unknown preset 'keras'; allowed: ['fastai', 'lrfind', 'torch-lr-finder']"
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_settings("keras")
    with pytest.raises(TypeError, match="settings must be an lrfind Settings, a preset name"):
        resolve_settings(3)


def test_unknown_setting():
    with pytest.raises(TypeError, match=re.escape("unknown setting(s) ['learning_rate', 'lr']")):
        resolve_settings("fastai", lr=1e-3, learning_rate=1e-3)


BAD_SETTINGS = [
    ({"beta": 1.0}, ValueError, "beta must be in [0, 1), got 1.0"),
    ({"beta": -0.5}, ValueError, "beta must be in [0, 1), got -0.5"),
    ({"diverge_factor": 1.0}, ValueError, "diverge_factor must be > 1, got 1.0"),
    ({"diverge_factor": 0.0}, ValueError, "diverge_factor must be a finite number > 0, got 0.0"),
    ({"num_steps": 1}, ValueError, "num_steps must be an int >= 2, got 1"),
    ({"num_steps": 10.5}, TypeError, "num_steps must be an int, got float"),
    ({"start_lr": 0.0}, ValueError, "start_lr must be a finite number > 0, got 0.0"),
    ({"end_lr": float("inf")}, ValueError, "end_lr must be a finite number > 0, got inf"),
    ({"start_lr": 1.0, "end_lr": 0.5}, ValueError, "start_lr must be < end_lr"),
    ({"schedule": "cosine"}, ValueError, "unknown schedule 'cosine'"),
    ({"methods": [1]}, TypeError, "methods must be a sequence of method names"),
    ({"method": 3}, TypeError, "method must be a method name, got 3"),
    ({"mode": "grid"}, ValueError, "unknown mode 'grid'"),
    ({"num_sweeps": 0}, ValueError, "num_sweeps must be an int >= 1, got 0"),
    ({"independent_lrs": 1}, ValueError, "independent_lrs must be an int >= 2, got 1"),
    ({"steps_per_lr": 4, "average_last": 5}, ValueError, "average_last must be <= steps_per_lr"),
    ({"accumulation_steps": 0}, ValueError, "accumulation_steps must be an int >= 1, got 0"),
    ({"val_every": 0}, ValueError, "val_every must be an int >= 1, got 0"),
    ({"training_steps": 0}, ValueError, "training_steps must be an int >= 1, got 0"),
    ({"skip_start": -1}, ValueError, "skip_start must be an int >= 0, got -1"),
    ({"skip_end": -1}, ValueError, "skip_end must be an int >= 0, got -1"),
    ({"include_end": "yes"}, TypeError, "include_end must be a bool, got 'yes'"),
    ({"debias": 1}, TypeError, "debias must be a bool, got 1"),
]


@pytest.mark.parametrize(("settings", "error", "message"), BAD_SETTINGS)
def test_bad_values(settings, error, message):
    with pytest.raises(error, match=re.escape(message)):
        resolve_settings(**settings)
    with pytest.raises(error, match=re.escape(message)):
        Settings(**settings)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_dict_round_trip(preset):
    settings = resolve_settings(preset, num_steps=37, methods=["minimum", "slide"])
    data = settings.to_dict()
    assert data["methods"] == list(settings.methods)
    assert data["preset"] == preset
    assert Settings.from_dict(data) == settings
    # and through JSON text
    assert Settings.from_dict(json.loads(json.dumps(data))) == settings


def test_to_dict_holds_every_field():
    settings = resolve_settings("torch-lr-finder")
    data = settings.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(Settings)}
    assert data["beta"] == 0.95
    assert data["skip_start"] == 10
