"""Every ``python`` block of docs/jax.md runs as written, in order, in one namespace."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
import warnings
from pathlib import Path

import pytest

from lrfind_core.result import LRFindResult

DOC = Path(__file__).resolve().parents[2] / "docs" / "jax.md"


def python_blocks(path: Path) -> list[str]:
    """The ```python fenced blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(encoding="utf-8"),
                      flags=re.MULTILINE | re.DOTALL)


def test_the_jax_guide_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(DOC)
    assert len(blocks) == 5
    # A registered module, as a script's __main__ is: dataclasses look their module up.
    module = types.ModuleType("docs_jax")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    results = []
    for block in blocks:
        if "import equinox" in block and importlib.util.find_spec("equinox") is None:
            pytest.skip("equinox is not installed: the last block needs it")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # short sweeps: edge suggestions
            exec(compile(block, f"{DOC.name} block {len(results)}", "exec"), namespace)
        results.append(namespace.get("result"))
    assert results[0] is None
    # Each later block ran a sweep of its own: a new result, 30 steps or fewer.
    assert len({id(result) for result in results[1:]}) == len(results) - 1
    for result in results[1:]:
        assert isinstance(result, LRFindResult)
        assert 0 < len(result.lrs) <= 30
