"""Every Python example in README.md runs as written.

A line ``name = ...`` in an example is a placeholder for the user's own object; the
test gives it a small stand-in (:data:`STAND_INS`) and runs the rest of the block
unchanged, in a temporary folder (examples save plots and results).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"^\s*(\w+)\s*=\s*\.\.\.\s*(#.*)?$")


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a markdown text, in order."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


BLOCKS = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


def torch_stand_ins() -> dict[str, Any]:
    """A small classifier, its optimizer and loaders, and a recorded curve."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lrfind_core.schedules import exponential_schedule

    torch.manual_seed(0)
    inputs = torch.randn(512, 20)
    targets = (inputs[:, :5].sum(dim=1) > 0).long()
    train_loader = DataLoader(TensorDataset(inputs[:384], targets[:384]), batch_size=32,
                              shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    lrs = exponential_schedule(1e-6, 1.0, 100)
    return {
        "model": model,
        "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3),
        "train_loader": train_loader,
        "loader": train_loader,
        "val_loader": DataLoader(TensorDataset(inputs[384:], targets[384:]), batch_size=64),
        "loss_fn": torch.nn.functional.cross_entropy,
        "loss": torch.nn.functional.cross_entropy,
        "lrs": lrs,
        "losses": 2.0 - np.log1p(np.arange(100)) / 10 + np.where(np.arange(100) > 80, 3.0, 0.0),
    }


def jax_stand_ins() -> dict[str, Any]:
    """A linear classifier's params and apply, and 100 steps of stacked batches."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(100, 32, 20)).astype(np.float32)

    def apply(params: dict, batch_inputs: Any) -> Any:
        return batch_inputs @ params["w"] + params["b"]

    return {
        "params": {"w": jnp.zeros((20, 2)), "b": jnp.zeros(2)},
        "apply": apply,
        "inputs": inputs,
        "labels": (inputs[..., :5].sum(axis=-1) > 0).astype(np.int32),
    }


def integration_stand_ins(folder: Path) -> dict[str, Any]:
    """A Trainer of a tiny BERT, and a LightningModule with its datamodule (the
    adapters' own test fixtures)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for place in ("integrations", "torch"):
        sys.path.insert(0, str(ROOT / "tests" / place))
    from test_huggingface import make_trainer
    from test_lightning import RegressionData, make_module

    return {"trainer": make_trainer(folder), "module": make_module(),
            "datamodule": RegressionData()}


def stand_ins(block: str, folder: Path) -> dict[str, Any]:
    """The stand-ins of the framework a block imports."""
    if "integrations" in block:
        needs = ("torch", "transformers", "accelerate", "lightning")
        make = lambda: integration_stand_ins(folder)  # noqa: E731
    elif "lrfind_jax" in block:
        needs, make = ("jax", "optax"), jax_stand_ins
    else:
        needs, make = ("torch",), torch_stand_ins
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    return make()


def runnable(block: str, given: dict[str, Any]) -> str:
    """The block with its placeholder lines for the stand-ins removed; a placeholder
    with no stand-in is an error (the test would be running a different example)."""
    lines = []
    for line in block.splitlines():
        match = PLACEHOLDER.match(line)
        if match:
            assert match.group(1) in given, f"no stand-in for the placeholder {line.strip()!r}"
            continue
        lines.append(line)
    return "\n".join(lines)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 6
    assert any("mode=\"search\"" in block for block in BLOCKS)
    assert any("lr_find_trainer" in block for block in BLOCKS)


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_a_readme_example_runs_as_written(number, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    block = BLOCKS[number]
    monkeypatch.chdir(tmp_path)
    namespace = stand_ins(block, tmp_path)
    code = compile(runnable(block, namespace), f"README.md python block {number + 1}", "exec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the examples' data are tiny: cycling is expected
        exec(code, namespace)
    results = [value for value in namespace.values() if type(value).__name__ == "LRFindResult"]
    assert results, "the example made no LRFindResult"
