"""Result files: the JSON form of a result, written atomically and read back checked.

The document (format ``"lrfind-result"``, version :data:`FORMAT_VERSION`) holds
the curve, the stop, every suggestion, the settings, the run facts (``meta``)
and, where present, the ensemble of sweeps, the independent runs and the search.
Floats are JSON numbers (their float64 ``repr``), non-finite ones the strings
``"nan"``, ``"inf"`` and ``"-inf"`` (:mod:`lrfind_core.serialization`). The file
is standard JSON (RFC 8259, UTF-8): the tokens ``NaN`` and ``Infinity`` are not.

Version history: 3 renames ``config`` to ``settings`` (``default_method`` to
``method``; independent mode's grid size to ``independent_lrs``) and
``suggestion_details`` to ``suggestions``; 2 added schedule-aware suggestions
(``for_schedule``, ``curve_lr``). Files of versions 1 and 2 still load: version 1
suggestions were read off the curve, so they load with ``for_schedule="curve"``.

**Reading** (:func:`read_json`, :func:`decode_result`) trusts nothing. Every
problem is one ``ValueError`` whose message names the file, the field (a path
such as ``suggestions.valley.lr`` or ``ensemble.band_low[3]``) and what was
expected; no other exception escapes for any input. Checked:

* the file: at most :data:`MAX_FILE_BYTES`, UTF-8 (a byte-order mark is allowed),
  standard JSON, not empty, not truncated, not nested beyond what the JSON parser
  allows (a missing or unreadable file is the ``OSError`` of ``open``);
* the document: an object with ``format`` ``"lrfind-result"`` and an integer
  ``version`` of :data:`READABLE_VERSIONS`; every field of that version present
  (``ensemble``, ``runs`` and ``search`` may be missing or null) and no unknown one;
* the curve: ``lrs`` a list of 1 to :data:`~lrfind_core.serialization.MAX_POINTS`
  finite LRs > 0, strictly increasing; ``losses`` and ``smoothed_losses`` as many
  numbers (or ``"nan"``, ``"inf"``, ``"-inf"``); ``stop_step`` null or a point of
  the curve; ``stop_reason`` a string; ``planned_points`` an integer >= 1;
* ``settings`` (``config`` before version 3): known keys only, a list of method
  names, and whatever :class:`~lrfind_core.settings.Settings` checks of its fields;
* ``suggestions``: per method, ``lr`` and ``curve_lr`` null or finite > 0, ``index``
  null or a point of the curve, ``reason`` a string, ``for_schedule`` null or a
  known schedule; the settings' ``method`` has a suggestion (and ``"search"`` one
  when there is a search, with the search's LR);
* ``meta``: an object of JSON data (objects, lists, strings, finite numbers,
  booleans, null) nested at most :data:`MAX_META_DEPTH` levels;
* ``ensemble``: K >= 1 sweeps of L >= len(lrs) points (raw and smoothed), a band of
  len(lrs) points, per method K suggested LRs, K stop steps within the L; a
  suggestion for every method of ``suggestions`` but the search's;
* ``runs``: K >= 1 curves of M >= len(lrs) runs of n >= 1 steps, ``average_last`` >= 1,
  ``made`` 0..M per curve; with an ensemble, its L is M and its K at most the runs'
  (curves that made no run are left out of it);
* ``search``: see :meth:`~lrfind_core.records.SearchRecord.from_dict`.

Sizes are bounded (the file, the arrays, the nesting of ``meta``) so that a hostile
file cannot exhaust memory or the stack.

**Writing** (:func:`write_json`) refuses, before it touches any file, what reading
would refuse, so ``save`` never writes a file ``load`` cannot read. ``meta`` must
be JSON data that comes back equal: numpy scalars (``np.float32(1.5)``,
``np.int64(3)``, ``np.bool_``) are written as the Python number they equal and load
back as that number (``load(save(r)) == r``); a tuple (it would load back as a
list), a numpy array, a set, a non-string key or any other object is refused with
a ``TypeError``, and a NaN or infinite float or nesting deeper than
:data:`MAX_META_DEPTH` with a ``ValueError``, each naming the key (``meta.shape``).
The text is encoded in full first, then written to a temporary file in the same
folder and moved over ``path`` (``os.replace``): a refused or failed save leaves an
existing file as it was, and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
from typing import Any

import numpy as np

from lrfind_core.records import IndependentRuns, SearchRecord, SweepEnsemble
from lrfind_core.serialization import (
    INT64_MAX,
    FieldError,
    decode_floats,
    describe,
    encode_floats,
    encode_optional_float,
    expected,
    field_path,
    read_choice,
    read_int,
    read_object,
    read_optional_int,
    read_optional_lr,
    read_str,
)
from lrfind_core.settings import FOR_SCHEDULES, Settings
from lrfind_core.suggestion import Suggestion

FORMAT_NAME = "lrfind-result"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

MAX_FILE_BYTES = 256 * 2**20
"""The largest result file read (256 MiB: a curve of a few million points)."""
MAX_META_DEPTH = 100
"""How deeply ``meta`` may nest objects and lists (``meta`` itself is level 1)."""
_MAX_INT_BITS = 13_000
"""The largest integer in ``meta`` (about 3,900 digits: Python reads at most 4,300)."""

_CURVE_FIELDS = ("lrs", "losses", "smoothed_losses", "stop_step", "stop_reason",
                 "planned_points", "meta")
_RECORD_FIELDS = ("ensemble", "runs", "search")
_SUGGESTION_FIELDS = ("lr", "index", "reason")
_SUGGESTION_OPTIONAL = ("curve_lr", "for_schedule")
_SETTINGS_FIELDS = tuple(Settings.__dataclass_fields__)


def encode_suggestion(suggestion: Suggestion) -> dict[str, Any]:
    """One suggestion as plain data."""
    return {
        "lr": encode_optional_float(suggestion.lr),
        "index": None if suggestion.index is None else int(suggestion.index),
        "reason": suggestion.reason,
        "curve_lr": encode_optional_float(suggestion.curve_lr),
        "for_schedule": suggestion.for_schedule,
    }


def encode_result(result: Any) -> dict[str, Any]:
    """The document of ``result`` (an :class:`~lrfind_core.result.LRFindResult`).

    ``meta`` is passed as it is; :func:`write_json` checks it.
    """
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "lrs": encode_floats(result.lrs),
        "losses": encode_floats(result.losses),
        "smoothed_losses": encode_floats(result.smoothed_losses),
        "stop_step": None if result.stop_step is None else int(result.stop_step),
        "stop_reason": result.stop_reason,
        "suggestions": {
            name: encode_suggestion(detail) for name, detail in result.suggestions.items()
        },
        "settings": result.settings.to_dict(),
        "planned_points": int(result.planned_points),
        "meta": result.meta,
        "ensemble": None if result.ensemble is None else result.ensemble.to_dict(),
        "runs": None if result.runs is None else result.runs.to_dict(),
        "search": None if result.search is None else result.search.to_dict(),
    }


# --- meta ------------------------------------------------------------------------------


class _MetaProblem(Exception):
    """A value of ``meta`` with no exact JSON form; ``kind`` is the error a save raises."""

    def __init__(self, field: str, problem: str, kind: type[Exception]) -> None:
        if len(field) > 80:  # deep in a nested value: where it starts is enough
            field = field[:77] + "..."
        super().__init__(field, problem)
        self.field, self.problem, self.kind = field, problem, kind


_JSON_DATA = ("JSON data (an object with string keys, a list, a string, a finite number, a bool "
              "or null)")


def _plain(value: Any, field: str, depth: int, entry: str) -> Any:
    """A copy of ``value`` made of JSON data only; numpy scalars become Python ones.

    ``field`` is its path, ``depth`` its level (``meta`` is 1), ``entry`` the path of
    the entry of ``meta`` that holds it (named when it nests too deeply)."""
    if isinstance(value, np.generic):
        item = value.item()
        if not isinstance(item, bool | int | float | str):
            raise _MetaProblem(field, f"expected {_JSON_DATA}, got a numpy "
                               f"{type(value).__name__}", TypeError)
        value = item
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise _MetaProblem(field, f"expected an integer of at most {_MAX_INT_BITS} bits, "
                               f"got {describe(value)}", ValueError)
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _MetaProblem(field, f"expected a finite number (JSON has no NaN or infinity), "
                               f"got {value!r}", ValueError)
        return float(value)
    if isinstance(value, list | dict):
        if depth > MAX_META_DEPTH:
            raise _MetaProblem(entry, f"nested deeper than {MAX_META_DEPTH} levels; expected "
                               f"at most {MAX_META_DEPTH}", ValueError)
        if isinstance(value, list):
            return [_plain(item, field_path(field, i), depth + 1, entry)
                    for i, item in enumerate(value)]
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _MetaProblem(field, f"expected string keys (JSON has no other), got the "
                                   f"key {key!r} ({type(key).__name__})", TypeError)
            path = field_path(field, key)
            plain[str(key)] = _plain(item, path, depth + 1, path if depth == 1 else entry)
        return plain
    if isinstance(value, tuple):
        raise _MetaProblem(field, "expected a list, got a tuple: JSON has no tuples, so it "
                           "would load back as a list and the result would not round-trip",
                           TypeError)
    raise _MetaProblem(field, f"expected {_JSON_DATA}, got a {type(value).__name__}", TypeError)


def plain_meta(meta: Any, context: str = "") -> dict[str, Any]:
    """A copy of ``meta`` that survives JSON exactly, or a ``TypeError``/``ValueError``
    naming the key that would not (see the module); ``context`` starts the message."""
    if not isinstance(meta, dict):
        raise TypeError(f"{context}meta: expected a dict with string keys, got "
                        f"{type(meta).__name__}")
    try:
        return _plain(meta, "meta", 1, "meta")
    except _MetaProblem as problem:
        raise problem.kind(f"{context}{problem.field}: {problem.problem}") from None


def _read_meta(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise expected("meta", "an object", value)
    try:
        return _plain(value, "meta", 1, "meta")
    except _MetaProblem as problem:
        raise FieldError(problem.field, problem.problem) from None


# --- reading ---------------------------------------------------------------------------


def _settings_of_old_config(config: dict[str, Any], version: int) -> dict[str, Any]:
    """Settings fields from a version 1 or 2 ``config``."""
    data = dict(config)
    if "method" in data:
        raise FieldError("config.method", "unexpected field: before version 3 the method is "
                         "called default_method")
    if "default_method" not in data:
        raise FieldError("config.default_method", "missing: this field is required")
    data["method"] = data.pop("default_method")
    if version == 1:  # before schedule-aware suggestions: all read off the curve
        data.setdefault("for_schedule", "curve")
    if data.get("mode") == "independent":
        if "num_steps" not in data:
            raise FieldError("config.num_steps", "missing: an independent-mode config of "
                             "version 1 or 2 gives its grid size here")
        data["independent_lrs"] = data["num_steps"]
        data["num_steps"] = Settings.num_steps
    return data


def _read_settings(value: Any, version: int) -> Settings:
    field = "settings" if version >= 3 else "config"
    if not isinstance(value, dict):
        raise expected(field, "an object of settings", value)
    for key in value:
        if key not in _SETTINGS_FIELDS and not (version < 3 and key == "default_method"):
            raise FieldError(
                field_path(field, key) if isinstance(key, str) else field,
                f"unexpected field {describe(key)}; expected only Settings fields",
            )
    data = _settings_of_old_config(value, version) if version < 3 else dict(value)
    methods = data.get("methods", Settings.methods)
    if not isinstance(methods, list | tuple) or not all(isinstance(m, str) for m in methods):
        raise expected(f"{field}.methods", "a list of method names", methods)
    data["methods"] = tuple(methods)
    for key, item in data.items():
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT64_MAX:
            raise expected(field_path(field, key), "an integer of at most 64 bits", item)
    try:
        return Settings(**data)
    except (TypeError, ValueError, OverflowError) as error:
        message = str(error)
        name = message.split(" ", 1)[0]
        where = field_path(field, name) if name in _SETTINGS_FIELDS else field
        raise FieldError(where, f"invalid settings: {message}") from None


def _read_suggestions(value: Any, field: str, points: int) -> dict[str, Suggestion]:
    if not isinstance(value, dict):
        raise expected(field, "an object: per method, its suggestion", value)
    details = {}
    for name, entry in value.items():
        if not isinstance(name, str):
            raise FieldError(field, f"expected method names as keys, got {name!r}")
        where = field_path(field, name)
        fields = read_object(entry, where, _SUGGESTION_FIELDS, _SUGGESTION_OPTIONAL)
        lr = read_optional_lr(fields["lr"], f"{where}.lr")
        index = read_optional_int(fields["index"], f"{where}.index", minimum=0,
                                  maximum=points - 1)
        reason = read_str(fields["reason"], f"{where}.reason")
        curve_lr = (read_optional_lr(fields["curve_lr"], f"{where}.curve_lr")
                    if "curve_lr" in fields else lr)
        schedule = fields.get("for_schedule", "curve")
        if schedule is not None:
            schedule = read_choice(schedule, f"{where}.for_schedule", FOR_SCHEDULES)
        details[str(name)] = Suggestion(str(name), lr, index, reason, curve_lr=curve_lr,
                                        for_schedule=schedule)
    return details


def _check_records(decoded: dict[str, Any], suggestions_field: str) -> None:
    """The ensemble, the runs and the search agree with the curve and each other."""
    points = len(decoded["lrs"])
    suggestions = decoded["suggestions"]
    ensemble, runs, search = decoded["ensemble"], decoded["runs"], decoded["search"]
    if ensemble is not None:
        length = ensemble.sweep_losses.shape[1]
        if length < points:
            raise FieldError("ensemble.sweep_losses", f"expected sweeps of at least {points} "
                             f"points (the curve's), got {length}")
        if len(ensemble.band_low) != points:
            raise FieldError("ensemble.band_low", f"expected {points} values (one per point "
                             f"of the curve), got {len(ensemble.band_low)}")
        for name in suggestions:
            if name != "search" and name not in ensemble.sweep_suggestions:
                raise FieldError(field_path("ensemble.sweep_suggestions", name),
                                 f"missing: every method of {suggestions_field} but the "
                                 "search's has the sweeps' LRs")
    if runs is not None:
        grid = runs.run_losses.shape[1]
        if grid < points:
            raise FieldError("runs.run_losses", f"expected at least {points} runs per curve "
                             f"(the curve's points), got {grid}")
        if ensemble is not None and ensemble.sweep_losses.shape[1] != grid:
            raise FieldError("ensemble.sweep_losses", f"expected curves of {grid} points "
                             f"(the runs' grid), got {ensemble.sweep_losses.shape[1]}")
        if ensemble is not None and ensemble.num_sweeps > len(runs.run_losses):
            raise FieldError("ensemble.sweep_losses", f"expected at most {len(runs.run_losses)}"
                             f" curves (the runs'), got {ensemble.num_sweeps}")
    if search is not None:
        where = field_path(suggestions_field, "search")
        if "search" not in suggestions:
            raise FieldError(where, "missing: a result with a search has its suggestion")
        if suggestions["search"].lr != search.lr:
            raise FieldError(f"{where}.lr", f"expected the search's LR {search.lr!r}, got "
                             f"{suggestions['search'].lr!r}")


def _decode(data: Any) -> dict[str, Any]:
    """The constructor arguments of an LRFindResult, or a FieldError."""
    if not isinstance(data, dict):
        raise FieldError("", "expected a JSON object holding an lrfind result, got "
                         f"{describe(data)}")
    found = data.get("format")
    if not (isinstance(found, str) and found == FORMAT_NAME):
        raise FieldError("format", f"not an lrfind result (format={describe(found)}); "
                         f"expected {FORMAT_NAME!r}")
    version = data.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise FieldError("version", f"unsupported lrfind result version {describe(version)}; "
                         f"this lrfind reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    settings_field, suggestions_field = (
        ("settings", "suggestions") if version >= 3 else ("config", "suggestion_details")
    )
    fields = read_object(
        data, "", ("format", "version", *_CURVE_FIELDS, suggestions_field, settings_field),
        _RECORD_FIELDS,
    )
    lrs = decode_floats(fields["lrs"], "lrs", finite=True, positive=True, increasing=True)
    points = len(lrs)
    if points < 1:
        raise FieldError("lrs", "expected at least one point, got an empty list")
    decoded: dict[str, Any] = {
        "lrs": lrs,
        "losses": decode_floats(fields["losses"], "losses", length=points, length_of="lrs"),
        "smoothed_losses": decode_floats(fields["smoothed_losses"], "smoothed_losses",
                                         length=points, length_of="lrs"),
        "stop_step": read_optional_int(fields["stop_step"], "stop_step", minimum=0,
                                       maximum=points - 1),
        "stop_reason": read_str(fields["stop_reason"], "stop_reason"),
        "planned_points": read_int(fields["planned_points"], "planned_points", minimum=1),
        "settings": _read_settings(fields[settings_field], version),
        "suggestions": _read_suggestions(fields[suggestions_field], suggestions_field, points),
        "meta": _read_meta(fields["meta"]),
    }
    for name, record in (("ensemble", SweepEnsemble), ("runs", IndependentRuns),
                         ("search", SearchRecord)):
        value = fields.get(name)
        decoded[name] = None if value is None else record.from_dict(value, name)
    method = decoded["settings"].method
    if method not in decoded["suggestions"]:
        raise FieldError(field_path(suggestions_field, method),
                         f"missing: the settings' method {method!r} has a suggestion")
    _check_records(decoded, suggestions_field)
    return decoded


def decode_result(data: Any, source: str = "result") -> dict[str, Any]:
    """The constructor arguments of an LRFindResult from its document.

    Raises one ``ValueError`` naming ``source``, the field and what was expected
    for anything that is not a valid result document of a readable version.
    """
    try:
        return _decode(data)
    except FieldError as error:
        raise ValueError(f"{source}: invalid lrfind result: {error}") from None
    except RecursionError:
        raise ValueError(f"{source}: invalid lrfind result: nested too deeply") from None
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as error:
        # A safety net: the checks above are meant to leave nothing for it.
        raise ValueError(f"{source}: invalid lrfind result: could not be checked "
                         f"({type(error).__name__}: {error})") from None


def _not_a_result(path: Any, reason: str) -> ValueError:
    return ValueError(f"{path}: not an lrfind result file: {reason}; expected the JSON text "
                      "that LRFindResult.save writes")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document at ``path``; a ``ValueError`` naming the file if it is not
    standard JSON text of at most :data:`MAX_FILE_BYTES` (``OSError`` if it cannot
    be read at all)."""
    with open(path, "rb") as stream:
        info = os.fstat(stream.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_FILE_BYTES:
            raise _not_a_result(path, f"{info.st_size} bytes, larger than the "
                                f"{MAX_FILE_BYTES // 2**20} MiB a result file may have")
        raw = stream.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise _not_a_result(path, f"larger than the {MAX_FILE_BYTES // 2**20} MiB a result "
                            "file may have")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise _not_a_result(path, f"not UTF-8 text (byte {byte:#04x} at offset {error.start}; "
                            "a binary file, such as a pickle?)") from None
    if not text.strip():
        raise _not_a_result(path, "the file is empty")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        truncated = error.pos >= len(text.rstrip())
        hint = "; the text ends early: is the file truncated?" if truncated else ""
        raise _not_a_result(path, f"not valid JSON ({error}){hint}") from None
    except RecursionError:
        raise _not_a_result(path, "JSON nested too deeply to read") from None
    except MemoryError:
        raise _not_a_result(path, "too large to read into memory") from None
    except ValueError as error:  # a NaN or Infinity token; an integer too long to read
        raise _not_a_result(path, f"not standard JSON ({error})") from None


# --- writing ---------------------------------------------------------------------------


def write_json(path: str | os.PathLike[str], document: dict[str, Any]) -> None:
    """Check ``document`` (a result's, from :func:`encode_result`), encode it, then
    replace ``path`` atomically (a temporary file in the same folder, then
    ``os.replace``). Nothing is written when the document is refused: a
    ``TypeError``/``ValueError`` naming the field (see the module)."""
    context = f"cannot save {os.fspath(path)!s}: "
    document = {**document, "meta": plain_meta(document.get("meta"), context)}
    try:
        _decode(document)
    except FieldError as error:
        raise ValueError(f"{context}not a valid lrfind result: {error}") from None
    text = json.dumps(document, indent=1, allow_nan=False)
    target = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(target)
    mode = 0o666  # the umask applies, as for a new file
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(os.stat(target).st_mode)  # an existing file keeps its mode
    while True:
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_BINARY", 0), mode)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(text.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.lexists(temporary):
            os.remove(temporary)
        raise


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_FILE_BYTES",
    "MAX_META_DEPTH",
    "READABLE_VERSIONS",
    "decode_result",
    "encode_result",
    "plain_meta",
    "read_json",
    "write_json",
]
