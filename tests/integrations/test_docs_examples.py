"""Every Python block of docs/integrations.md runs as written and finds an LR."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pytest

from lrfind_core.result import LRFindResult

PAGE = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
NAMES = ["huggingface", "lightning", "accelerate"]


def test_the_page_has_one_example_per_integration() -> None:
    assert len(BLOCKS) == len(NAMES)
    for block, name in zip(BLOCKS, NAMES, strict=True):
        assert name in block


@pytest.mark.parametrize("block", BLOCKS, ids=NAMES)
def test_example_runs_and_finds_an_lr(
    block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # whatever the example writes lands here
    namespace: dict[str, object] = {"__name__": "__docs_example__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(block, str(PAGE), "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, LRFindResult)
    assert result.suggestion is not None and math.isfinite(result.suggestion)
    assert len(result.lrs) >= 15
