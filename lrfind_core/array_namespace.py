"""A minimal array namespace over plain Python floats.

The online smoothing and stop rule are written once against an array namespace
``xp`` (``numpy``, ``jax.numpy``, or this one). The PyTorch backend applies the
rule on the host per recorded loss; plain floats make that a few microseconds
instead of the tens that 0-d numpy arrays cost. Only the handful of functions
the rule needs are provided. Arithmetic is IEEE float64, the same as numpy's.
"""

from __future__ import annotations

import math
from typing import Any


class PythonScalarNamespace:
    """``xp``-style functions for Python ``float``/``int``/``bool`` scalars."""

    @staticmethod
    def asarray(value: Any, dtype: Any = None) -> Any:
        """Return ``value`` as a Python scalar (``dtype`` is ignored)."""
        if isinstance(value, bool | int):
            return value
        return float(value)

    @staticmethod
    def where(condition: bool, if_true: Any, if_false: Any) -> Any:
        """Scalar select."""
        return if_true if condition else if_false

    @staticmethod
    def isfinite(value: float) -> bool:
        """True for finite floats."""
        return math.isfinite(value)

    @staticmethod
    def abs(value: float) -> float:
        """Absolute value."""
        return abs(value)

    @staticmethod
    def maximum(a: float, b: float) -> float:
        """Elementwise maximum, propagating NaN like ``numpy.maximum``."""
        if a != a or b != b:
            return math.nan
        return a if a >= b else b

    @staticmethod
    def minimum(a: float, b: float) -> float:
        """Elementwise minimum, propagating NaN like ``numpy.minimum``."""
        if a != a or b != b:
            return math.nan
        return a if a <= b else b

    @staticmethod
    def logical_not(value: bool) -> bool:
        """Boolean not."""
        return not value

    @staticmethod
    def logical_and(a: bool, b: bool) -> bool:
        """Boolean and."""
        return bool(a and b)

    @staticmethod
    def logical_or(a: bool, b: bool) -> bool:
        """Boolean or."""
        return bool(a or b)


python_scalars = PythonScalarNamespace()
