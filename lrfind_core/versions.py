"""Installed versions, recorded in every result's ``meta``."""

from __future__ import annotations

import importlib.metadata
import platform


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """lrfind, Python and each installed package of ``names`` (missing ones are left out)."""
    from lrfind_core import __version__

    versions = {"lrfind": __version__, "python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
