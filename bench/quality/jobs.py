"""The work the benchmark farms out to worker processes: training runs and finder runs.

Finder runs: :func:`finder_job` runs a curve mode of
:mod:`quality.finders` on a case, :func:`search_job` a search for one protocol.

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


def validation_batches(task: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The task's whole validation set as ``(inputs, targets)`` batches of 64, in order
    (the last one may be shorter)."""
    from quality.task_base import BATCH_SIZE

    return list(zip(task.val_inputs.split(BATCH_SIZE), task.val_targets.split(BATCH_SIZE),
                    strict=True))


def _fresh_case(task_name: str, seed: int) -> tuple[Any, torch.nn.Module, Any, Any]:
    """The task, a fresh model of the case, its optimizer at :data:`FINDER_START_LR`, its
    loader; torch's RNG seeded with the case seed."""
    from quality.tasks import get_task

    task = get_task(task_name)
    model = task.model(seed)
    optimizer = task.optimizer(model.parameters(), FINDER_START_LR)
    loader = task.train_loader(seed)
    torch.manual_seed(seed)
    return task, model, optimizer, loader


def _saved(
    result: Any, path: str, started: float, caught: list[warnings.WarningMessage]
) -> dict[str, Any]:
    """Save ``result`` to ``path``, with the warnings ``lr_find`` gave in its meta
    (``bench_warnings``; kept out of the worker's output)."""
    result.meta["bench_warnings"] = sorted({str(warning.message) for warning in caught})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    return {
        "seconds": time.perf_counter() - started,
        "points": len(result.lrs),
        "steps_trained": int(result.meta["steps_trained"]),
    }


def finder_job(task_name: str, seed: int, mode: str, path: str) -> dict[str, Any]:
    """Run ``lr_find`` in curve ``mode`` (:data:`quality.finders.CURVE_MODES`) on a fresh
    model of the case, on the training loss; save the result to ``path``."""
    from lrfind_core import Settings
    from lrfind_torch import TorchOptions, lr_find
    from quality.finders import CURVE_MODES

    task, model, optimizer, loader = _fresh_case(task_name, seed)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        # Short loaders (digits: 21 batches) are cycled by the finder, with a warning.
        warnings.simplefilter("always")
        result = lr_find(
            model, optimizer, loader, task.loss_fn,
            settings=Settings(**CURVE_MODES[mode]), options=TorchOptions(progress=False),
        )
    return _saved(result, path, started, caught)


def search_job(
    task_name: str, seed: int, protocol: str, training_steps: int, budget_steps: int, path: str
) -> dict[str, Any]:
    """Run ``lr_find(mode="search")`` for ``protocol`` over ``training_steps`` within
    ``budget_steps`` on a fresh model of the case, scoring its candidates on the task's
    validation set; save the result to ``path``."""
    from lrfind_torch import TorchOptions, lr_find

    task, model, optimizer, loader = _fresh_case(task_name, seed)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = lr_find(
            model, optimizer, loader, task.loss_fn, mode="search", for_schedule=protocol,
            val_data=validation_batches(task), training_steps=training_steps,
            budget_steps=budget_steps, options=TorchOptions(progress=False),
        )
    return _saved(result, path, started, caught)


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
