"""Sweep config and presets: preset values, overrides, validation, plain-data round trip."""

import dataclasses
import json
import re

import numpy as np
import pytest

from lrfind_core import DEFAULT_METHODS, PRESETS, FinderConfig, make_config


def test_preset_names():
    assert set(PRESETS) == {"lrfind", "fastai", "torch-lr-finder"}
    assert DEFAULT_METHODS == ("valley", "steep", "minimum", "slide")


def test_default_preset():
    config = make_config()
    assert config == FinderConfig()
    assert config == make_config("lrfind")
    assert (config.start_lr, config.end_lr, config.num_steps) == (1e-7, 10.0, 100)
    assert (config.schedule, config.include_end) == ("exponential", True)
    assert (config.beta, config.debias, config.diverge_factor) == (0.98, True, 4.0)
    assert (config.default_method, config.methods) == ("minimum", DEFAULT_METHODS)
    assert config.for_schedule == "one_cycle"
    assert (config.skip_start, config.skip_end) == (None, 5)
    assert config.preset == "lrfind"


def test_fastai_preset():
    config = make_config("fastai")
    assert config.preset == "fastai"
    assert config.include_end is False
    assert (config.beta, config.debias, config.diverge_factor) == (0.98, True, 4.0)
    assert config.default_method == "valley"
    assert (config.skip_start, config.skip_end) == (None, 5)  # num_steps // 10 and 5
    # fastai's sweep: lr_i = s (e / s) ** (i / N), stopping one step short of e.
    lrs = config.learning_rates()
    expected = [1e-7 * (10.0 / 1e-7) ** (i / 100) for i in range(100)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[-1] < 10.0


def test_torch_lr_finder_preset():
    config = make_config("torch-lr-finder")
    assert config.preset == "torch-lr-finder"
    assert config.include_end is True
    assert (config.beta, config.debias, config.diverge_factor) == (0.95, False, 5.0)
    assert config.default_method == "steep"
    assert "steep" in config.methods
    assert (config.skip_start, config.skip_end) == (10, 5)
    lrs = config.learning_rates()
    assert (lrs[0], lrs[-1], len(lrs)) == (1e-7, 10.0, 100)


def test_overrides_win_over_presets():
    config = make_config("torch-lr-finder", beta=0.9, diverge_factor=3.0, num_steps=50, end_lr=1.0)
    assert (config.beta, config.diverge_factor, config.num_steps, config.end_lr) == (
        0.9,
        3.0,
        50,
        1.0,
    )
    # the rest of the preset stays
    assert (config.debias, config.default_method, config.skip_start) == (False, "steep", 10)
    assert make_config("fastai", include_end=True, debias=False).include_end is True
    assert make_config("fastai", default_method="steep").default_method == "steep"


def test_none_overrides_are_ignored():
    config = make_config(
        "torch-lr-finder",
        beta=None,
        debias=None,
        diverge_factor=None,
        default_method=None,
        skip_start=None,
        methods=None,
        start_lr=None,
    )
    assert config == make_config("torch-lr-finder")
    assert make_config(None) == make_config("lrfind")


def test_methods_always_include_the_default():
    assert make_config("torch-lr-finder", methods=["valley"]).methods == ("steep", "valley")
    config = make_config(methods=["slide", "minimum"])
    assert (config.default_method, config.methods) == ("slide", ("slide", "minimum"))
    config = make_config(methods="minimum")
    assert (config.default_method, config.methods) == ("minimum", ("minimum",))
    config = make_config(methods=["minimum"], default_method="valley")
    assert (config.default_method, config.methods) == ("valley", ("valley", "minimum"))


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_config().beta = 0.5  # type: ignore[misc]


def test_unknown_preset():
    message = "unknown preset 'keras'; allowed: ['fastai', 'lrfind', 'torch-lr-finder']"
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config("keras")
    with pytest.raises(TypeError, match="preset must be a string"):
        make_config(3)


def test_unknown_setting():
    with pytest.raises(TypeError, match=re.escape("unknown setting(s) ['learning_rate', 'lr']")):
        make_config("fastai", lr=1e-3, learning_rate=1e-3)


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
    ({"methods": ["nope"]}, ValueError, "unknown suggestion method 'nope'; allowed:"),
    ({"methods": [1]}, TypeError, "methods must be a sequence of method names"),
    ({"default_method": "nope"}, ValueError, "unknown suggestion method 'nope'"),
    ({"skip_start": -1}, ValueError, "skip_start must be an int >= 0, got -1"),
    ({"skip_end": -1}, ValueError, "skip_end must be an int >= 0, got -1"),
    ({"include_end": "yes"}, TypeError, "include_end must be a bool, got 'yes'"),
    ({"debias": 1}, TypeError, "debias must be a bool, got 1"),
]


@pytest.mark.parametrize(("settings", "error", "message"), BAD_SETTINGS)
def test_bad_values(settings, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make_config(**settings)
    with pytest.raises(error, match=re.escape(message)):
        FinderConfig(**settings)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_dict_round_trip(preset):
    config = make_config(preset, num_steps=37, methods=["minimum", "slide"])
    data = config.to_dict()
    assert data["methods"] == list(config.methods)
    assert data["preset"] == preset
    assert FinderConfig.from_dict(data) == config
    # and through JSON text
    assert FinderConfig.from_dict(json.loads(json.dumps(data))) == config


def test_to_dict_holds_every_field():
    config = make_config("torch-lr-finder")
    data = config.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(FinderConfig)}
    assert data["beta"] == 0.95
    assert data["skip_start"] == 10
