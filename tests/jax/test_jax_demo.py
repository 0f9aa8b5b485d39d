"""``lrfind demo --backend jax``: the Flax demo runs end to end (one epoch), and the
command falls back to it where the torch demo cannot import."""

from __future__ import annotations

import re
import warnings
from typing import Any

import jax
import numpy as np
import pytest
from flax import nnx

import lrfind_jax.demo
from lrfind_core.cli import main as cli_main
from lrfind_core.result import LRFindResult


class TinyNet(nnx.Module):
    """The demo's interface (``model(x, rngs)``, dropout fed at call time) without its
    convolutions, whose compilation on the CPU would take most of a minute here."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.dropout = nnx.Dropout(0.2)
        self.linear = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x: Any, rngs: nnx.Rngs | None = None) -> Any:
        return self.linear(self.dropout(x.reshape(x.shape[0], -1), rngs=rngs))


def test_the_demo_cnn_gives_logits_for_digit_images() -> None:
    def logits_of(images: jax.Array) -> jax.Array:
        return lrfind_jax.demo.SmallCNN(rngs=nnx.Rngs(0))(images, nnx.Rngs(1))

    # Built and called while tracing: shapes only, nothing initialised or compiled.
    logits = jax.eval_shape(logits_of, jax.ShapeDtypeStruct((3, 8, 8, 1), np.float32))
    assert logits.shape == (3, 10)


@pytest.mark.slow
def test_jax_demo_writes_the_plots_and_the_results(tmp_path: Any, capsys: Any,
                                                   monkeypatch: Any) -> None:
    """The whole demo at one epoch, its CNN replaced by a small dense net."""
    pytest.importorskip("sklearn")
    from lrfind_jax.demo import main

    monkeypatch.setattr(lrfind_jax.demo, "SmallCNN", TinyNet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one epoch of data is cycled: expected
        assert main(out_dir=str(tmp_path), epochs=1) == 0
    assert all((tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
               for name in ("lr_find", "lr_search"))
    classic = LRFindResult.load(tmp_path / "lr_find.json")
    searched = LRFindResult.load(tmp_path / "lr_search.json")
    assert classic.meta["backend"] == searched.meta["backend"] == "jax"
    assert searched.meta["steps_trained"] <= searched.search.budget_steps
    out = capsys.readouterr().out
    assert "one-cycle training, 1 epochs, AdamW; test images (seen by neither finder):" in out
    # Each row trains at the LR the saved results give and prints its test scores.
    peak = searched.search.lr
    for label, lr in (("classic suggestion", classic.suggestion), ("search / 3", peak / 3),
                      ("search", peak), ("search x 3", peak * 3)):
        if lr is None:
            assert f"{label}: no suggestion" in out
        else:
            assert re.search(rf"{label} \({lr:.2e}\): loss \d+\.\d{{4}}, accuracy [01]\.\d{{3}}\n",
                             out)


def test_the_jax_demo_is_declared_and_runs_where_torch_cannot(monkeypatch: Any,
                                                              capsys: Any) -> None:
    import lrfind_core.cli

    assert lrfind_core.cli.installed_demos()["jax"].value == "lrfind_jax.demo:main"

    class Entry:
        def __init__(self, name: str, importable: bool) -> None:
            self.name, self.importable = name, importable

        def load(self) -> Any:
            if not self.importable:
                raise ModuleNotFoundError(f"No module named '{self.name}'")
            return lambda out_dir, seed: print(f"{self.name} demo ran in {out_dir}") or 0

    monkeypatch.setattr(lrfind_core.cli, "installed_demos",
                        lambda: {"torch": Entry("torch", False), "jax": Entry("jax", True)})
    assert cli_main(["demo", "--out", "here"]) == 0
    out = capsys.readouterr().out
    assert ("running the jax demo (the torch demo cannot run: No module named 'torch')"
            in out)
    assert "jax demo ran in here" in out
    assert cli_main(["demo", "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert "the torch demo cannot run: No module named 'torch'; pip install 'lrfind[demo]'" in err
    monkeypatch.setattr(lrfind_core.cli, "installed_demos",
                        lambda: {"torch": Entry("torch", False), "jax": Entry("jax", False)})
    assert cli_main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "the torch demo cannot run" in err and "the jax demo cannot run" in err
    assert "'lrfind[jax]' scikit-learn" in err


def test_the_demo_needs_scikit_learn_and_says_so(monkeypatch: Any, capsys: Any) -> None:
    import importlib.util

    from lrfind_jax.demo import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args, **kwargs: (
        None if name == "sklearn" else real_find_spec(name, *args, **kwargs)))
    assert main(out_dir="unused") == 2
    assert ("the jax demo trains on scikit-learn's bundled digits: pip install 'lrfind[jax]' "
            "scikit-learn (missing: sklearn)") in capsys.readouterr().err
