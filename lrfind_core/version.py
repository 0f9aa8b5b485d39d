"""lrfind's version (one place; the package metadata reads it from pyproject)."""

__version__ = "0.1.0"
