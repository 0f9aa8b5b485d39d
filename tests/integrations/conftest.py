"""Test setup for the framework adapters: each test file needs its framework installed
(the ``huggingface`` and ``lightning`` extras) and is skipped where it is not; nothing
is downloaded (``HF_HUB_OFFLINE``)."""

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# torch_helpers (state capture and exact-restore checks) sits in tests/torch.
sys.path.insert(0, str(Path(__file__).parent.parent / "torch"))

NEEDS = {
    "test_huggingface.py": ("torch", "transformers", "accelerate"),
    "test_accelerate.py": ("torch", "accelerate"),
    "test_lightning.py": ("torch", "lightning"),
    "test_docs_examples.py": ("torch", "transformers", "accelerate", "lightning"),
    "test_imports.py": ("torch",),
}

collect_ignore = [
    name for name, packages in NEEDS.items()
    if not all(importlib.util.find_spec(package) for package in packages)
]

if importlib.util.find_spec("torch"):
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is as fast and shares the cores
