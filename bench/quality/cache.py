"""A JSON cache of training runs, keyed by (task, seed, protocol, budget, LR to 4 digits).

Runs are trained at the rounded LR itself, so a cached score is exactly the score
of its key. The file carries a version: bump ``CACHE_VERSION`` whenever a task,
the training loop or the scoring changes, and old entries are dropped.

The cache lives in :data:`CACHE_DIR` (``bench/quality_cache/``), which is
committed, so a clean checkout reruns nothing already trained: the runs as
gzipped JSON (``runs.json.gz``; byte-reproducible, no timestamp in the gzip
header) and the pretrained weights of the fine-tuning tasks.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

CACHE_FORMAT = "lrfind-bench-quality-cache"
CACHE_VERSION = 1
CACHE_DIR = Path(__file__).resolve().parent.parent / "quality_cache"
"""The committed cache folder: training runs and pretrained weights."""
RUNS_PATH = CACHE_DIR / "runs.json.gz"
"""The run cache's default file."""


def round_lr(lr: float) -> float:
    """``lr`` rounded to 4 significant digits: the LR a run is trained and cached at."""
    return float(f"{lr:.4g}")


def run_key(task: str, seed: int, protocol: str, budget: int, lr: float) -> str:
    """The cache key of a training run; ``lr`` is rounded to 4 significant digits."""
    return f"{task}|seed={seed}|{protocol}|budget={budget}|lr={round_lr(lr):.4g}"


def _read_json(path: Path) -> Any:
    """A JSON file, gunzipped first when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _write_json(data: Any, path: Path, compressed: bool) -> None:
    """``data`` as JSON (sorted keys, one entry a line) at ``path``, gzipped or not."""
    text = json.dumps(data, indent=0, sort_keys=True)
    if compressed:
        with open(path, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0
        ) as handle:
            handle.write(text.encode("utf-8"))
    else:
        path.write_text(text, encoding="utf-8")


class RunCache:
    """Scores of finished training runs, read from and written to one (gzipped) JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.runs: dict[str, dict[str, Any]] = self._on_disk()

    def _on_disk(self) -> dict[str, dict[str, Any]]:
        """The runs in the file now (none if it is missing or of another version)."""
        if self.path is None or not self.path.exists():
            return {}
        data = _read_json(self.path)
        if data.get("format") == CACHE_FORMAT and data.get("version") == CACHE_VERSION:
            return data["runs"]
        return {}

    def __contains__(self, key: str) -> bool:
        return key in self.runs

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.runs[key]

    def put(self, key: str, score: dict[str, Any]) -> None:
        """Record a run's score (see :class:`quality.training.RunScore`)."""
        self.runs[key] = score

    def save(self) -> None:
        """Write the cache atomically (a temp file, then a rename).

        Runs another process wrote to the file meanwhile are kept (merged in first).
        """
        if self.path is None:
            return
        self.runs = {**self._on_disk(), **self.runs}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        _write_json(
            {"format": CACHE_FORMAT, "version": CACHE_VERSION, "runs": self.runs},
            temporary,
            compressed=self.path.suffix == ".gz",
        )
        os.replace(temporary, self.path)
