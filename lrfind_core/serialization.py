"""JSON encoding of float arrays that keeps NaN and infinities, and checked decoding.

Standard JSON has no NaN or Infinity, so non-finite values are written as the
strings ``"nan"``, ``"inf"`` and ``"-inf"``; everything else is a JSON number
(``repr`` of a float64, which round-trips exactly).

Decoding checks what it reads. Each ``read_*``/``decode_*`` function takes the
value and the name of its field in the document (a path such as
``ensemble.band_low`` or ``lrs[3]``) and raises :class:`FieldError`, a
``ValueError`` that names the field, says what was expected and what was found.
Sizes are bounded (:data:`MAX_POINTS` values in one array, :data:`MAX_VALUES` in
a nested one) so that a hostile document cannot make a huge array.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

MAX_POINTS = 4_000_000
"""The most values one array of a document may hold (a curve of 4 million points)."""
MAX_VALUES = 16_000_000
"""The most values a nested array (every sweep, every independent run) may hold in all."""
INT64_MAX = 2**63 - 1
"""The largest count a document may hold (steps, points, indices)."""

FLOAT_ITEM = "a number, or one of the strings 'nan', 'inf', '-inf'"
LR = "a finite number > 0"
OPTIONAL_LR = "null or a finite number > 0"


def encode_floats(values: Any) -> list[float | str]:
    """A JSON-safe list from a 1-D float array."""
    encoded: list[float | str] = []
    for value in np.asarray(values, dtype=np.float64).tolist():
        if math.isfinite(value):
            encoded.append(value)
        else:
            encoded.append("nan" if value != value else ("inf" if value > 0 else "-inf"))
    return encoded


def encode_optional_float(value: float | None) -> float | str | None:
    """One float (or None) in the encoding of :func:`encode_floats`."""
    return None if value is None else encode_floats([value])[0]


# --- checked decoding --------------------------------------------------------------------


class FieldError(ValueError):
    """A field of a document that does not hold what the format says.

    ``field`` is its path (``""`` for the whole document), ``problem`` what is wrong,
    usually ``"expected ..., got ..."``.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


def field_path(parent: str, key: object) -> str:
    """The path of ``key`` (a dict key or a list index) inside the field ``parent``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{parent}[{key}]"
    if isinstance(key, str) and key.isidentifier():
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{_short_repr(key)}]"


def _short_repr(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: object) -> str:
    """A short, one-line description of a found value (never the whole of a big one)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        number = int(value)
        if number.bit_length() > 64:
            return f"an integer of {number.bit_length()} bits"
        return repr(number)
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        return _short_repr(value)
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"an object with {len(value)} key{'' if len(value) == 1 else 's'}"
    return f"a {type(value).__name__}"


def expected(field: str, what: str, found: object) -> FieldError:
    """The error of a field that holds ``found`` where ``what`` was expected."""
    return FieldError(field, f"expected {what}, got {describe(found)}")


def read_object(
    value: Any, field: str, required: Iterable[str], optional: Iterable[str] = ()
) -> dict[str, Any]:
    """``value`` if it is an object with every ``required`` key and no unknown one."""
    if not isinstance(value, dict):
        raise expected(field, "an object", value)
    required = tuple(required)
    known = (*required, *optional)
    for key in value:
        if key not in known:
            raise FieldError(
                field_path(field, key) if isinstance(key, str) else field,
                f"unexpected field {_short_repr(key)}; expected only "
                f"{', '.join(known)}",
            )
    for key in required:
        if key not in value:
            raise FieldError(field_path(field, key), "missing: this field is required")
    return value


def read_str(value: Any, field: str) -> str:
    """``value`` if it is a string."""
    if not isinstance(value, str):
        raise expected(field, "a string", value)
    return str(value)


def read_choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of the ``allowed`` strings."""
    if not isinstance(value, str) or value not in allowed:
        raise expected(field, f"one of {', '.join(map(repr, allowed))}", value)
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def read_int(value: Any, field: str, *, minimum: int, maximum: int = INT64_MAX) -> int:
    """``value`` if it is an integer from ``minimum`` to ``maximum``."""
    if not _is_int(value) or not minimum <= int(value) <= maximum:
        limit = f">= {minimum}" if maximum == INT64_MAX else f"from {minimum} to {maximum}"
        raise expected(field, f"an integer {limit}", value)
    return int(value)


def read_optional_int(
    value: Any, field: str, *, minimum: int, maximum: int = INT64_MAX
) -> int | None:
    """None, or ``value`` checked by :func:`read_int`."""
    if value is None:
        return None
    if not _is_int(value) or not minimum <= int(value) <= maximum:
        raise expected(field, f"null or an integer from {minimum} to {maximum}", value)
    return int(value)


def _as_float(value: Any) -> float | None:
    """``value`` as a float if it is a JSON number (bool excluded) in float64 range."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def read_number(value: Any, field: str, *, minimum: float = -math.inf) -> float:
    """``value`` as a float if it is a finite number >= ``minimum``."""
    number = _as_float(value)
    if number is None or not math.isfinite(number) or number < minimum:
        what = "a finite number" if minimum == -math.inf else f"a finite number >= {minimum:g}"
        raise expected(field, what, value)
    return number


def read_optional_lr(value: Any, field: str) -> float | None:
    """None, or ``value`` as a float if it is a finite number > 0 (an LR)."""
    if value is None:
        return None
    number = _as_float(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise expected(field, OPTIONAL_LR, value)
    return number


def _check_length(
    values: Any, field: str, length: int | None, what: str, length_of: str | None = None
) -> None:
    if not isinstance(values, list):
        raise expected(field, f"a list of {what}", values)
    if len(values) > MAX_POINTS:
        raise FieldError(
            field, f"expected at most {MAX_POINTS} values, got {len(values)}: too large to read"
        )
    if length is not None and len(values) != length:
        like = "" if length_of is None else f" (as many as {length_of})"
        raise FieldError(field, f"expected {length} values{like}, got {len(values)}")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def decode_floats(
    values: Any,
    field: str = "values",
    *,
    length: int | None = None,
    length_of: str | None = None,
    finite: bool = False,
    positive: bool = False,
    increasing: bool = False,
) -> np.ndarray:
    """Inverse of :func:`encode_floats`: a float64 array, checked.

    ``values`` must be a list of numbers and the strings ``"nan"``, ``"inf"``,
    ``"-inf"``: ``length`` items when given (``length_of`` names, in the message,
    the field whose length that is); with ``finite``, ``positive`` and
    ``increasing``, every value finite, > 0 and each greater than the one before.
    """
    _check_length(values, field, length, "numbers", length_of)
    kinds = set(map(type, values))
    items: list[Any] = values
    if not kinds <= {float, int}:
        items = [_float_item(value, field_path(field, i)) for i, value in enumerate(values)]
    try:
        array = np.array(items, dtype=np.float64)
    except OverflowError:  # an integer beyond float64: find it
        items = [_float_item(value, field_path(field, i)) for i, value in enumerate(values)]
        array = np.array(items, dtype=np.float64)
    if finite or positive:
        bad = ~np.isfinite(array) | (array <= 0 if positive else False)
        if np.any(bad):
            at = _first(bad)
            what = LR if positive else "a finite number"
            raise expected(field_path(field, at), what, values[at])
    if increasing and len(array) > 1:
        falls = np.diff(array) <= 0
        if np.any(falls):
            at = _first(falls) + 1
            raise expected(
                field_path(field, at),
                f"a value greater than the one before it ({float(array[at - 1])!r}): the values "
                "must be strictly increasing",
                values[at],
            )
    return array


def _float_item(value: Any, field: str) -> float:
    if isinstance(value, str):
        if value in _NON_FINITE:
            return _NON_FINITE[value]
        raise expected(field, FLOAT_ITEM, value)
    number = _as_float(value)
    if number is None:
        what = "a number within the float64 range" if _is_int(value) else FLOAT_ITEM
        raise expected(field, what, value)
    return number


def decode_optional_float(value: Any, field: str = "value") -> float | None:
    """Inverse of :func:`encode_optional_float`."""
    return None if value is None else float(decode_floats([value], field)[0])


def decode_float_rows(
    values: Any, field: str, *, rows: int | None = None, min_rows: int = 0
) -> np.ndarray:
    """A 2-D float64 array from a list of equally long lists (:func:`decode_floats`)."""
    _check_length(values, field, rows, "lists of numbers")
    if len(values) < min_rows:
        raise FieldError(field, f"expected at least {min_rows} lists of numbers, got {len(values)}")
    decoded: list[np.ndarray] = []
    for number, row in enumerate(values):
        width = None if not decoded else len(decoded[0])
        if width is not None and len(values) * width > MAX_VALUES:
            raise FieldError(
                field,
                f"expected at most {MAX_VALUES} values in all, got {len(values)} x {width}: "
                "too large to read",
            )
        decoded.append(decode_floats(row, field_path(field, number), length=width))
    if not decoded:
        return np.empty((0, 0), dtype=np.float64)
    return np.array(decoded, dtype=np.float64)


def decode_ints(values: Any, field: str, *, length: int | None = None, minimum: int) -> np.ndarray:
    """An int64 array from a list of integers >= ``minimum``."""
    _check_length(values, field, length, "integers")
    for number, value in enumerate(values):
        if not _is_int(value) or not minimum <= int(value) <= INT64_MAX:
            raise expected(field_path(field, number), f"an integer >= {minimum}", value)
    return np.array([int(value) for value in values], dtype=np.int64)


__all__ = [
    "INT64_MAX",
    "LR",
    "MAX_POINTS",
    "MAX_VALUES",
    "FieldError",
    "decode_float_rows",
    "decode_floats",
    "decode_ints",
    "decode_optional_float",
    "describe",
    "encode_floats",
    "encode_optional_float",
    "expected",
    "field_path",
    "read_choice",
    "read_int",
    "read_number",
    "read_object",
    "read_optional_int",
    "read_optional_lr",
    "read_str",
]
