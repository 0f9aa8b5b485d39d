"""Record fastai's own ``lr_find`` curves and suggestions for the fastai preset's test.

Run with a virtualenv that has fastai 2.8.12 and torch (not the project's)::

    python3 -m venv /tmp/fastai_env
    /tmp/fastai_env/bin/pip install torch==2.13.0 fastai==2.8.12
    /tmp/fastai_env/bin/pip uninstall -y torchvision   # not needed, and it may not import
    /tmp/fastai_env/bin/python tests/presets/record_fastai.py

It writes ``fastai_2_8_12.json`` beside this file. Each case trains a small model on
scikit-learn's digits (shipped with the package, nothing is downloaded) with fixed
seeds and runs ``learn.lr_find(suggest_funcs=(valley, slide, minimum, steep))``. A
case records fastai's LRs (``recorder.lrs``), the raw loss of every step (read from
``learn.loss`` by a callback that runs before ``LRFinder`` can stop the fit), fastai's
smoothed losses (``recorder.losses``) and the four suggestions as ``lr_find`` returns
them. Losses are float32 values, written as their shortest decimal (read them back
as float32); LRs and suggestions are written in full.

``test_fastai_preset.py`` (run in the normal suite, without fastai) judges each raw
curve with ``LRFindResult.from_curve(..., "fastai")`` and checks it against this file.
"""

from __future__ import annotations

import json
import platform
import re
import tempfile
from pathlib import Path
from typing import Any

import fastai
import numpy as np
import torch
from fastai.basics import Callback, DataLoader, DataLoaders, Learner
from fastai.callback.schedule import minimum, slide, steep, valley
from fastai.optimizer import SGD, Adam
from fastai.torch_core import set_seed
from sklearn.datasets import load_digits
from torch import nn

FIXTURE = Path(__file__).with_name("fastai_2_8_12.json")
METHODS = (valley, slide, minimum, steep)

# name: (model, optimizer, optimizer keywords, lr_find keywords, seed)
CASES: dict[str, tuple[str, Any, dict[str, Any], dict[str, Any], int]] = {
    "mlp_sgd": ("mlp", SGD, {}, {}, 0),
    "mlp_adam": ("mlp", Adam, {}, {}, 1),
    "cnn_bn_sgd": ("cnn_bn", SGD, {}, {}, 2),
    "cnn_bn_adam": ("cnn_bn", Adam, {}, {}, 3),
    "mlp_sgd_momentum_200": ("mlp", SGD, {"mom": 0.9}, {"num_it": 200}, 4),
    "cnn_bn_adam_range": ("cnn_bn", Adam, {"wd": 0.01},
                          {"start_lr": 1e-6, "end_lr": 1.0, "num_it": 80}, 5),
    # These two diverge: fastai's 4x rule ends them before num_it.
    "mlp_sgd_momentum_diverges": ("mlp", SGD, {"mom": 0.99}, {}, 6),
    "cnn_bn_sgd_momentum_diverges": ("cnn_bn", SGD, {"mom": 0.9}, {}, 7),
}


class RawLosses(Callback):
    """Keeps the raw loss of every training step. Its order (55) runs it after the
    Recorder (50) and before LRFinder (60), whose after_batch may end the fit."""

    order = 55

    def before_fit(self) -> None:
        self.raw: list[float] = []

    def after_batch(self) -> None:
        if self.training:
            self.raw.append(float(self.learn.loss.detach()))


def make_model(kind: str) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )


def make_dls(seed: int) -> DataLoaders:
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    train = list(zip(x[:1500], y[:1500], strict=True))
    valid = list(zip(x[1500:], y[1500:], strict=True))
    set_seed(seed)
    return DataLoaders(
        DataLoader(train, bs=64, shuffle=True, drop_last=True), DataLoader(valid, bs=128)
    )


def shortest32(values: Any) -> list[float]:
    """float32 values as their shortest decimal (exact once read back as float32)."""
    return [float(str(np.float32(value))) for value in values]


def record(name: str, path: Path) -> dict[str, Any]:
    kind, opt_func, opt_kwargs, find_kwargs, seed = CASES[name]
    dls = make_dls(seed)
    set_seed(seed)
    model = make_model(kind)
    raw = RawLosses()

    def optimizer(params: Any, lr: float) -> Any:
        return opt_func(params, lr, **opt_kwargs)

    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), opt_func=optimizer,
                    cbs=[raw], path=path)
    with learn.no_bar():
        found = learn.lr_find(suggest_funcs=METHODS, show_plot=False, **find_kwargs)
    lrs = [float(lr) for lr in learn.recorder.lrs]
    smoothed = [float(loss) for loss in learn.recorder.losses]
    assert len(raw.raw) == len(lrs) == len(smoothed), name
    return {
        "model": kind,
        "optimizer": f"{opt_func.__name__}{opt_kwargs or ''}",
        "start_lr": find_kwargs.get("start_lr", 1e-7),
        "end_lr": find_kwargs.get("end_lr", 10.0),
        "num_it": find_kwargs.get("num_it", 100),
        "seed": seed,
        "lrs": lrs,
        "raw_losses": shortest32(raw.raw),
        "smoothed_losses": shortest32(smoothed),
        "suggestions": {field: float(value) for field, value in found._asdict().items()},
    }


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        cases = {name: record(name, Path(scratch)) for name in CASES}
    data = {
        "made_by": f"tests/presets/{Path(__file__).name}",
        "versions": {
            "fastai": fastai.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "note": (
            "fastai's learn.lr_find(suggest_funcs=(valley, slide, minimum, steep)) on "
            "scikit-learn digits. lrs: recorder.lrs; raw_losses: learn.loss of each step; "
            "smoothed_losses: recorder.losses; both float32, written as shortest decimals. "
            "suggestions: as lr_find returned them."
        ),
        "cases": cases,
    }
    # One line per list of numbers keeps the file small and its diffs readable.
    text = re.sub(r"\[\s+([^][{}]*?)\s+\]", lambda m: f"[{' '.join(m[1].split())}]",
                  json.dumps(data, indent=1))
    FIXTURE.write_text(text + "\n", encoding="utf-8")
    for name, case in cases.items():
        print(name, len(case["lrs"]), case["suggestions"])


if __name__ == "__main__":
    main()
