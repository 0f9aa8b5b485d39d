"""Argument checks shared by the core and both backends.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument and
says what is allowed. They run once, when a sweep is configured, never in a hot loop.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def check_positive_float(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = ""
        if hasattr(value, "__float__") and np.ndim(value) == 0:  # a 0-d jax/torch array
            hint = f": pass a Python float, {name}=float(...)"
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}{hint}")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` as a float in [0, 1), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1), got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def check_choice(name: str, value: object, allowed: tuple[str, ...] | list[str]) -> str:
    """Return ``value`` if it is one of ``allowed`` strings, else raise."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {sorted(allowed)}, got {value!r}")
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {sorted(allowed)}")
    return value


def check_curve(lrs: Any, losses: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return float64 ``(lrs, losses)`` if they form a curve, else raise.

    Both must be 1-D and of the same length; ``lrs`` finite, > 0 and strictly
    increasing. Losses may hold NaN or infinities.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if lrs.ndim != 1 or losses.ndim != 1 or lrs.shape != losses.shape:
        raise ValueError(
            "lrs and losses must be 1-D arrays of the same length, "
            f"got shapes {lrs.shape} and {losses.shape}"
        )
    if len(lrs) and (not np.all(np.isfinite(lrs)) or np.any(lrs <= 0)):
        raise ValueError("lrs must be finite and > 0")
    if np.any(np.diff(lrs) <= 0):
        raise ValueError("lrs must be strictly increasing")
    return lrs, losses


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool, else raise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_one_cycle_options(options: object, owned: tuple[str, ...]) -> None:
    """``options`` is a dict of keyword names that leaves out the ``owned`` ones
    (the search sets the peak and the length itself)."""
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        raise TypeError(f"one_cycle_options must be a dict of keywords, got {options!r}")
    taken = sorted(set(options) & set(owned))
    if taken:
        raise ValueError(
            f"one_cycle_options may not set {taken}: the search sets each candidate's peak "
            "and length"
        )


def check_callable(name: str, value: object) -> None:
    """Raise unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
