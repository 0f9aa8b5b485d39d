"""JSON encoding of float arrays that keeps NaN and infinities.

Standard JSON has no NaN or Infinity, so non-finite values are written as the
strings ``"nan"``, ``"inf"`` and ``"-inf"``; everything else is a JSON number
(``repr`` of a float64, which round-trips exactly).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_floats(values: Any) -> list[float | str]:
    """A JSON-safe list from a 1-D float array."""
    encoded: list[float | str] = []
    for value in np.asarray(values, dtype=np.float64).tolist():
        if math.isfinite(value):
            encoded.append(value)
        else:
            encoded.append("nan" if value != value else ("inf" if value > 0 else "-inf"))
    return encoded


def decode_floats(values: list[Any]) -> np.ndarray:
    """Inverse of :func:`encode_floats`: a float64 array."""
    decoded = [_NON_FINITE[v] if isinstance(v, str) else float(v) for v in values]
    return np.asarray(decoded, dtype=np.float64)


def encode_optional_float(value: float | None) -> float | str | None:
    """One float (or None) in the encoding of :func:`encode_floats`."""
    return None if value is None else encode_floats([value])[0]


def decode_optional_float(value: float | str | None) -> float | None:
    """Inverse of :func:`encode_optional_float`."""
    return None if value is None else float(decode_floats([value])[0])
