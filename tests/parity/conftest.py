"""Parity suite setup: needs torch, jax, optax and flax; torch on one thread."""

import importlib.util
import sys
from pathlib import Path

# The registry and checks sit beside the tests; importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).parent))

_NEEDED = ("torch", "jax", "optax", "flax")
collect_ignore_glob = (
    [] if all(importlib.util.find_spec(name) for name in _NEEDED) else ["test_*.py"]
)

if not collect_ignore_glob:
    import torch

    # Tiny models: one thread is as fast, and immune to busy-waiting OpenMP threads
    # when other jobs share the cores.
    torch.set_num_threads(1)
