"""A JSON cache of training runs, keyed by (task, seed, protocol, budget, LR to 4 digits).

Runs are trained at the rounded LR itself, so a cached score is exactly the score
of its key. The file carries a version: bump ``CACHE_VERSION`` whenever a task,
the training loop or the scoring changes, and old entries are dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CACHE_FORMAT = "lrfind-bench-quality-cache"
CACHE_VERSION = 1


def round_lr(lr: float) -> float:
    """``lr`` rounded to 4 significant digits: the LR a run is trained and cached at."""
    return float(f"{lr:.4g}")


def run_key(task: str, seed: int, protocol: str, budget: int, lr: float) -> str:
    """The cache key of a training run; ``lr`` is rounded to 4 significant digits."""
    return f"{task}|seed={seed}|{protocol}|budget={budget}|lr={round_lr(lr):.4g}"


class RunCache:
    """Scores of finished training runs, read from and written to one JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.runs: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if data.get("format") == CACHE_FORMAT and data.get("version") == CACHE_VERSION:
                self.runs = data["runs"]

    def __contains__(self, key: str) -> bool:
        return key in self.runs

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.runs[key]

    def put(self, key: str, score: dict[str, Any]) -> None:
        """Record a run's score (see :class:`quality.training.RunScore`)."""
        self.runs[key] = score

    def save(self) -> None:
        """Write the cache atomically (a temp file, then a rename)."""
        if self.path is None:
            return
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(
                {"format": CACHE_FORMAT, "version": CACHE_VERSION, "runs": self.runs},
                handle,
                indent=0,
                sort_keys=True,
            )
        os.replace(temporary, self.path)
