"""The one-shell redesign changed no number: every golden case gives its recorded result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from golden_cases import JAX_CASES, TORCH_CASES, run_case, summary

RECORDED = json.loads((Path(__file__).parent / "golden_results.json").read_text("utf-8"))


@pytest.mark.parametrize("name", [*TORCH_CASES, *JAX_CASES])
def test_the_same_curve_stop_and_suggestions_bit_for_bit(name: str) -> None:
    pytest.importorskip("torch" if name.startswith("torch") else "jax")
    got = summary(run_case(name))
    expected = RECORDED[name]
    for key in expected:
        assert got[key] == expected[key], f"{name}: {key} differs from the recorded result"
    assert set(got) == set(expected)
