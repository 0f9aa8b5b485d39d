"""Machine and version facts recorded with every benchmark figure."""

from __future__ import annotations

import importlib
import os
import platform
from typing import Any


def machine_facts(
    packages: tuple[str, ...] = ("numpy", "torch", "jax", "jaxlib", "optax", "flax"),
) -> dict[str, Any]:
    """Platform, CPU count, Python and the versions of ``packages`` that import."""
    versions: dict[str, str] = {}
    for name in packages:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            continue
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
    }
