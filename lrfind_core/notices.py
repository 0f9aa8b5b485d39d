"""Notices for the user: collected during a run, warned once it is over.

A run collects what the user should know (data cycled, a sweep cut short...) as
strings; :func:`warn_user` turns each into a ``UserWarning`` that points at the
user's own call, past every frame of lrfind's packages (the core and every
backend: the top-level packages named ``lrfind_*``).
"""

from __future__ import annotations

import sys
import warnings

PACKAGE_PREFIX = "lrfind_"


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside lrfind's packages."""
    level = 1
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.split(".")[0].startswith(PACKAGE_PREFIX):
            return level
        frame = frame.f_back
        level += 1
    return level


def warn_user(messages: list[str], category: type[Warning] = UserWarning) -> None:
    """Warn with each message once (a notice of several plans comes once), pointing at
    the user's call."""
    level = _user_stacklevel()
    for message in dict.fromkeys(messages):
        warnings.warn(message, category, stacklevel=level)


__all__ = ["warn_user"]
