"""Result files: the JSON form of a result, written atomically and read back checked.

The document (format ``"lrfind-result"``, version :data:`FORMAT_VERSION`) holds
the curve, the stop, every suggestion, the settings, the run facts (``meta``)
and, where present, the ensemble of sweeps and the independent runs. Floats are
JSON numbers (their float64 ``repr``), non-finite ones the strings ``"nan"``,
``"inf"`` and ``"-inf"`` (:mod:`lrfind_core.serialization`).

Version history: 3 renames ``config`` to ``settings`` (``default_method`` to
``method``; independent mode's grid size to ``independent_lrs``) and
``suggestion_details`` to ``suggestions``; 2 added schedule-aware suggestions
(``for_schedule``, ``curve_lr``). Files of versions 1 and 2 still load: version 1
suggestions were read off the curve, so they load with ``for_schedule="curve"``.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from lrfind_core.records import IndependentRuns, SearchRecord, SweepEnsemble
from lrfind_core.serialization import (
    decode_floats,
    decode_optional_float,
    encode_floats,
    encode_optional_float,
)
from lrfind_core.settings import Settings
from lrfind_core.suggestion import Suggestion

FORMAT_NAME = "lrfind-result"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


def encode_suggestion(suggestion: Suggestion) -> dict[str, Any]:
    """One suggestion as plain data."""
    return {
        "lr": encode_optional_float(suggestion.lr),
        "index": suggestion.index,
        "reason": suggestion.reason,
        "curve_lr": encode_optional_float(suggestion.curve_lr),
        "for_schedule": suggestion.for_schedule,
    }


def encode_result(result: Any) -> dict[str, Any]:
    """The document of ``result`` (an :class:`~lrfind_core.result.LRFindResult`)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "lrs": encode_floats(result.lrs),
        "losses": encode_floats(result.losses),
        "smoothed_losses": encode_floats(result.smoothed_losses),
        "stop_step": result.stop_step,
        "stop_reason": result.stop_reason,
        "suggestions": {
            name: encode_suggestion(detail) for name, detail in result.suggestions.items()
        },
        "settings": result.settings.to_dict(),
        "planned_points": result.planned_points,
        "meta": result.meta,
        "ensemble": None if result.ensemble is None else result.ensemble.to_dict(),
        "runs": None if result.runs is None else result.runs.to_dict(),
        "search": None if result.search is None else result.search.to_dict(),
    }


def _settings_of_old_config(config: dict[str, Any], version: int) -> dict[str, Any]:
    """Settings fields from a version 1 or 2 ``config``."""
    data = dict(config)
    data["method"] = data.pop("default_method")
    if version == 1:  # before schedule-aware suggestions: all read off the curve
        data.setdefault("for_schedule", "curve")
    if data.get("mode") == "independent":
        data["independent_lrs"] = data["num_steps"]
        data["num_steps"] = Settings.num_steps
    return data


def decode_result(data: Any, source: str = "result") -> dict[str, Any]:
    """The constructor arguments of an LRFindResult from its document.

    Raises ``ValueError`` naming ``source`` for anything that is not a result
    document of a readable version.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{source}: not an lrfind result (format={found!r})")
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        raise ValueError(
            f"{source}: unsupported lrfind result version {version!r}; this lrfind reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        if version < 3:
            settings = Settings.from_dict(_settings_of_old_config(data["config"], version))
            suggestions = data["suggestion_details"]
        else:
            settings = Settings.from_dict(data["settings"])
            suggestions = data["suggestions"]
        details = {
            name: Suggestion(
                name,
                decode_optional_float(d["lr"]),
                d["index"],
                d["reason"],
                curve_lr=decode_optional_float(d.get("curve_lr", d["lr"])),
                for_schedule=d.get("for_schedule", "curve"),
            )
            for name, d in suggestions.items()
        }
        return {
            "lrs": decode_floats(data["lrs"]),
            "losses": decode_floats(data["losses"]),
            "smoothed_losses": decode_floats(data["smoothed_losses"]),
            "stop_step": data["stop_step"],
            "stop_reason": data["stop_reason"],
            "suggestions": details,
            "settings": settings,
            "planned_points": data["planned_points"],
            "meta": data["meta"],
            "ensemble": None
            if data.get("ensemble") is None
            else SweepEnsemble.from_dict(data["ensemble"]),
            "runs": None if data.get("runs") is None else IndependentRuns.from_dict(data["runs"]),
            "search": None
            if data.get("search") is None
            else SearchRecord.from_dict(data["search"]),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(
            f"{source}: malformed lrfind result ({type(error).__name__}: {error})"
        ) from None


def write_json(path: str | os.PathLike[str], document: dict[str, Any]) -> None:
    """Encode ``document`` first, then replace ``path`` atomically (temp file + rename)."""
    text = json.dumps(document, indent=1, allow_nan=False)
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    handle, temporary = tempfile.mkstemp(prefix=".lrfind-", suffix=".json.tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document at ``path``; a ``ValueError`` naming the file if it is not JSON."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: not an lrfind result file ({type(error).__name__})") from None


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "decode_result", "encode_result"]
