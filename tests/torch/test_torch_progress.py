"""The tqdm bar goes to stderr when asked for, and nothing is printed when not."""

from __future__ import annotations

from typing import Any

import torch
from torch_helpers import batches, cross_entropy, tiny_mlp

from lrfind_torch import TorchOptions, lr_find


def run(progress: bool) -> None:
    torch.manual_seed(0)
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    lr_find(
        model, optimizer, batches(12), loss_fn=cross_entropy, start_lr=1e-4, end_lr=1.0,
        num_steps=12, options=TorchOptions(progress=progress),
    )


def test_progress_false_prints_nothing(capsys: Any) -> None:
    run(progress=False)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_progress_true_draws_a_tqdm_bar_on_stderr(capsys: Any) -> None:
    run(progress=True)
    captured = capsys.readouterr()
    assert "lr_find" in captured.err
    assert "/12" in captured.err  # tqdm's n/total counter
    assert "\r" in captured.err
    assert captured.out == ""
