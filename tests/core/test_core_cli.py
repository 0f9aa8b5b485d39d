"""The ``lrfind show`` command on a saved result."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from lrfind_core import LRFindResult
from lrfind_core.cli import main
from lrfind_core.schedules import exponential_schedule

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def saved_result(tmp_path):
    lrs = exponential_schedule(1e-6, 1.0, 80)
    steps = np.arange(80)
    losses = 2.0 - 1.5 / (1 + np.exp(-(steps - 35) / 5))
    losses += np.where(steps > 60, 0.2 * (steps - 60), 0)
    result = LRFindResult.from_curve(lrs, losses)
    path = tmp_path / "result.json"
    result.save(path)
    return result, path


@pytest.mark.usefixtures("no_show")
def test_show_prints_suggestions_and_writes_the_plot(saved_result, tmp_path, capsys):
    result, path = saved_result
    png = tmp_path / "plot.png"
    assert main(["show", str(path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == repr(result)
    assert len(result.suggestions) == 4
    for detail in result.suggestions.values():
        lr = "None" if detail.lr is None else f"{detail.lr:.3g}"
        assert f"  {detail.method:>8}: {lr}  ({detail.reason})" in lines
    assert lines[-1] == f"plot saved to {png}"
    assert png.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.usefixtures("no_show")
def test_show_without_plot_writes_nothing(saved_result, tmp_path, capsys):
    _, path = saved_result
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valley" in out
    assert "plot saved" not in out
    assert list(tmp_path.iterdir()) == [path]


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    assert "required" in capsys.readouterr().err


def test_demo_without_its_packages_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "sklearn" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'lrfind[demo]'" in err
    assert "(missing: sklearn)" in err


def test_without_an_installed_demo_the_command_says_what_to_install(monkeypatch, capsys):
    import lrfind_core.cli

    monkeypatch.setattr(lrfind_core.cli, "installed_demos", dict)
    assert main(["demo"]) == 2
    assert "pip install 'lrfind[demo]'" in capsys.readouterr().err


def test_the_backends_declare_their_demos_and_the_command_names_the_one_it_runs(
    monkeypatch, capsys
):
    import lrfind_core.cli

    assert "torch" in lrfind_core.cli.installed_demos()  # the entry point in pyproject.toml

    class Entry:
        def __init__(self, name):
            self.name = name

        def load(self):
            return lambda out_dir, seed: print(f"{self.name} demo ran") or 0

    monkeypatch.setattr(lrfind_core.cli, "installed_demos",
                        lambda: {"jax": Entry("jax"), "torch": Entry("torch")})
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "running the torch demo (also installed: jax; choose with --backend)" in out
    assert "torch demo ran" in out
    assert main(["demo", "--backend", "jax"]) == 0
    assert "jax demo ran" in capsys.readouterr().out
    assert main(["demo", "--backend", "mxnet"]) == 2
    assert "no mxnet demo installed; installed: ['jax', 'torch']" in capsys.readouterr().err


def test_demo_command_runs_the_torch_demo_with_its_options(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import lrfind_torch.demo

    calls = []
    monkeypatch.setattr(lrfind_torch.demo, "main",
                        lambda out_dir, seed: calls.append((out_dir, seed)) or 0)
    assert main(["demo", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert calls == [(str(tmp_path), 3)]


@pytest.mark.parametrize(("target", "message"), [
    ("plots", "is a folder"),
    ("plot", "needs a file suffix matplotlib writes"),
])
def test_show_refuses_a_plot_path_it_would_not_write_as_given(saved_result, tmp_path, capsys,
                                                               target, message):
    _, path = saved_result
    (tmp_path / "plots").mkdir()
    assert main(["show", str(path), "--plot", str(tmp_path / target)]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "plot saved" not in captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots", "result.json"]


def test_plot_arguments_are_checked_before_drawing(saved_result, tmp_path):
    result, _ = saved_result
    with pytest.raises(TypeError, match=r"methods must be a sequence of method names, e\.g\. "
                                        r"\['valley'\]"):
        result.plot(methods="valley")
    with pytest.raises(TypeError, match="path must be a file path, got int"):
        result.plot(path=3)
    with pytest.raises(ValueError, match="needs a file suffix"):
        result.plot(path=tmp_path / "curve")


def test_demo_refuses_an_out_path_that_is_a_file_in_one_line(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert main(["demo", "--out", str(taken)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"lrfind demo: --out {str(taken)!r} is a file; the demo writes a folder there"]
    assert taken.read_text() == "mine"
