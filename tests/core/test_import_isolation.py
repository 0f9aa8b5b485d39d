"""lrfind_core must stay numpy-only: importing it never pulls in a framework."""

import subprocess
import sys

FRAMEWORKS = ("torch", "jax", "jaxlib", "flax", "optax")


def test_importing_core_imports_no_framework():
    code = (
        "import sys, lrfind_core, lrfind_core.cli, lrfind_core.plotting\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})\n"
        "print(','.join(loaded))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""
