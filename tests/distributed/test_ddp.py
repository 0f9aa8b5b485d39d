"""lr_find under torch.distributed: 2 CPU processes on gloo, spawned from pytest."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lrfind_torch import TorchOptions, lr_find

WORKER = Path(__file__).with_name("ddp_worker.py")
sys.path.insert(0, str(WORKER.parent))
import ddp_worker  # noqa: E402


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _run_ranks(scenario: str, out_dir: Path, timeout: float = 120) -> tuple[list[dict], float]:
    port = _free_port()
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), scenario, str(rank), "2", port, str(out_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for rank, process in enumerate(processes):
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail(f"{scenario}: a rank hung for more than {timeout} s")
        (out_dir / f"stderr{rank}.txt").write_text(stderr)
    elapsed = time.perf_counter() - started
    records = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(2)]
    return records, elapsed


def _single_process_result():
    """The same sweep in one process, each batch being both ranks' batches together."""
    model = ddp_worker.make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    result = lr_find(
        model,
        optimizer,
        ddp_worker.full_batches(),
        loss_fn=nn.functional.cross_entropy,
        num_steps=ddp_worker.STEPS,
        start_lr=1e-4,
        end_lr=100.0,
        options=TorchOptions(progress=False),
    )
    return result


@pytest.fixture(scope="module")
def single_process():
    return _single_process_result()


@pytest.mark.parametrize("scenario", ["ddp", "fsdp"])
def test_ranks_agree_and_match_one_process_with_the_joint_batch(scenario, tmp_path, single_process):
    records, _ = _run_ranks(scenario, tmp_path)
    for record in records:
        assert "error" not in record, record.get("traceback")
        assert record["restored"], f"rank {record['rank']} not restored"
    first, second = (record["result"] for record in records)
    assert first == second  # identical results, meta included
    losses = np.asarray(first["losses"], dtype=np.float64)
    assert single_process.stop_step is not None
    assert first["stop_step"] == single_process.stop_step
    np.testing.assert_allclose(losses, single_process.losses, rtol=1e-5)
    assert first["meta"]["world_size"] == 2
    assert (tmp_path / "plot0.png").exists() and not (tmp_path / "plot1.png").exists()
    # Both ranks asked for a progress bar; only rank 0 draws one (tqdm on stderr).
    assert "lr_find: " in (tmp_path / "stderr0.txt").read_text()
    assert "lr_find" not in (tmp_path / "stderr1.txt").read_text()


def test_ranks_agree_on_skipped_updates_under_amp(tmp_path):
    """Float16 autocast with a GradScaler: every rank skips the same updates (the
    found-inf flags are averaged with the losses) and records the same curve."""
    records, _ = _run_ranks("ddp_amp", tmp_path)
    for record in records:
        assert "error" not in record, record.get("traceback")
        assert record["restored"], f"rank {record['rank']} not restored"
    first, second = (record["result"] for record in records)
    assert first == second
    skipped = [entry["step"] for entry in first["meta"]["skipped_steps"]]
    assert skipped[:3] == [0, 1, 2]  # the scale starts too high: the first updates overflow
    assert first["meta"]["autocast_dtype"] == "torch.float16"
    assert len(first["losses"]) > len(skipped)


@pytest.mark.parametrize("scenario", ["failure", "failure_stay"])
def test_an_exception_on_one_rank_ends_the_sweep_everywhere(scenario, tmp_path):
    records, elapsed = _run_ranks(scenario, tmp_path)
    failed, other = records[1], records[0]
    assert failed["error_type"] == "ArithmeticError"
    assert failed["error"] == "rank 1 failed on purpose"
    assert other["error_type"] == "RuntimeError"
    assert "another rank raised or stopped responding" in other["error"]
    assert failed["restored"] and other["restored"]
    assert elapsed < 60
