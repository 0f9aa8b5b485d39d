"""Test setup for the torch backend: skipped entirely where torch is not installed."""

import importlib.util
import sys
from pathlib import Path

# torch_helpers sits beside the tests; make it importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).parent))

collect_ignore_glob = [] if importlib.util.find_spec("torch") else ["test_*.py"]

if not collect_ignore_glob:
    import torch

    # The models are tiny: one thread is as fast, and immune to busy-waiting
    # OpenMP threads when other jobs share the cores.
    torch.set_num_threads(1)
