"""Installed versions, recorded in every result's ``meta``."""

from __future__ import annotations

import functools
import importlib.metadata
import platform

from lrfind_core.version import __version__


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """lrfind, Python and each installed package of ``names`` (missing ones are left out)."""
    return dict(_versions(tuple(names)))


@functools.cache
def _versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # Reading package metadata costs about 0.5 ms: once per process is enough.
    versions = {"lrfind": __version__, "python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())
