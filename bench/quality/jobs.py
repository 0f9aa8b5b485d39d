"""The work the benchmark farms out to worker processes: training runs and finder runs.

Each worker runs torch on one thread (the machine is shared). Jobs are plain
tuples and results plain dicts, so they cross process boundaries as they are.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

FINDER_MODES: dict[str, dict[str, Any]] = {
    "classic": {},
    "k_sweeps": {"num_sweeps": 5},
    "independent": {"mode": "independent"},
}
"""``lr_find`` settings of each finder mode (on top of the library defaults)."""

FINDER_DESCRIPTIONS: dict[str, str] = {
    "classic": "one sweep, 1e-7 to 10 in 100 steps, EWA beta 0.98",
    "k_sweeps": "num_sweeps=5: five such sweeps from the same start, median curve",
    "independent": "mode='independent': 24 LRs 1e-7 to 10, 20 steps each from the same "
    "start on the same batches, scored by the mean of the last 5",
}
"""What each finder mode runs, for the report."""

FINDER_START_LR = 1e-3
"""The LR the finder's optimizer is built with (the finder overrides it)."""


def init_worker() -> None:
    """One torch thread per process: the benchmark runs ``--workers`` processes side by side."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*cycl.*")


def train_job(task_name: str, seed: int, protocol: str, lr: float, budget: int) -> dict[str, Any]:
    """Train one run (see :func:`quality.training.train_and_score`); its score as a dict."""
    from quality.tasks import get_task
    from quality.training import train_and_score

    return asdict(train_and_score(get_task(task_name), seed, protocol, lr, budget))


def untrained_job(task_name: str, seed: int) -> float:
    """The cap of a case: the untrained model's validation loss."""
    from quality.tasks import get_task
    from quality.training import untrained_loss

    return untrained_loss(get_task(task_name), seed)


def finder_job(task_name: str, seed: int, mode: str, path: str) -> dict[str, Any]:
    """Run ``lr_find`` in ``mode`` on a fresh model of the case; save the result to ``path``."""
    from lrfind_torch import lr_find
    from quality.tasks import get_task

    task = get_task(task_name)
    model = task.model(seed)
    optimizer = task.optimizer(model.parameters(), FINDER_START_LR)
    loader = task.train_loader(seed)
    torch.manual_seed(seed)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Short loaders (digits: 21 batches) are cycled by the finder, with a warning.
        warnings.simplefilter("ignore")
        result = lr_find(
            model, optimizer, loader, loss_fn=task.loss_fn, progress=False, **FINDER_MODES[mode]
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    return {"seconds": time.perf_counter() - started, "points": len(result.lrs)}


Job = tuple[Callable[..., Any], tuple[Any, ...]]


def run_jobs(jobs: Iterable[tuple[Any, Job]], workers: int) -> Iterator[tuple[Any, Any]]:
    """Run ``(tag, (function, args))`` jobs; yield ``(tag, result)`` as each finishes.

    ``workers <= 1`` runs them in this process, in order.
    """
    jobs = list(jobs)
    if workers <= 1:
        init_worker()
        for tag, (function, args) in jobs:
            yield tag, function(*args)
        return
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=init_worker
    ) as pool:
        futures: dict[Future[Any], Any] = {
            pool.submit(function, *args): tag for tag, (function, args) in jobs
        }
        for future in as_completed(futures):
            yield futures[future], future.result()
