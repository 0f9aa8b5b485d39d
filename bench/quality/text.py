"""Text that ships with Python, as ASCII byte tokens: the fine-tuning tasks' data.

Three slices of the running interpreter's standard library (read from
``sysconfig.get_paths()["stdlib"]``, nothing downloaded):

* code: the top-level ``*.py`` modules (about 4.7 MB on CPython 3.11), the
  pretraining corpus;
* package code: the non-test ``*.py`` files of a few packages (``asyncio``,
  ``email``, ``xml``), one character a token, each labelled with the kind of Python
  token it belongs to (:func:`package_kinds`): the classification fine-tune;
* prose: the language and library reference topics of ``pydoc_data.topics``
  (about 0.46 MB of English), the corpus of the LM fine-tune.

Tokens are bytes below 128; any other byte becomes :data:`OTHER_BYTE`. The text
depends on the Python version, so :func:`fingerprint` is recorded next to what is
built from it.
"""

from __future__ import annotations

import hashlib
import io
import sysconfig
import tokenize
from functools import cache
from pathlib import Path

import numpy as np

VOCAB = 128
"""Token values 0..127: the ASCII bytes."""
OTHER_BYTE = 127
"""The token of every non-ASCII byte (DEL never occurs in the sources)."""


def stdlib_root() -> Path:
    """The directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def encode(text: bytes) -> np.ndarray:
    """``text`` as uint8 tokens in ``0..127`` (non-ASCII bytes as :data:`OTHER_BYTE`)."""
    tokens = np.frombuffer(text, dtype=np.uint8).copy()
    tokens[tokens >= VOCAB] = OTHER_BYTE
    return tokens


def _read(paths: list[Path]) -> bytes:
    return b"\n".join(path.read_bytes() for path in paths)


@cache
def code_corpus() -> np.ndarray:
    """The stdlib's top-level modules (``<stdlib>/*.py``, sorted by name), as tokens."""
    return encode(_read(sorted(stdlib_root().glob("*.py"))))


def package_files(package: str) -> list[Path]:
    """The ``*.py`` files of stdlib ``package`` outside its test folders, sorted."""
    root = stdlib_root() / package
    paths = sorted(
        path for path in root.rglob("*.py")
        if not any(part.startswith("test") for part in path.relative_to(root).parts[:-1])
    )
    if not paths:
        raise FileNotFoundError(f"no Python files under {root}")
    return paths


@cache
def prose_topics() -> tuple[np.ndarray, ...]:
    """The reference topics of ``pydoc_data.topics``, sorted by topic name, as tokens."""
    from pydoc_data.topics import topics

    return tuple(encode(topics[name].encode("utf-8")) for name in sorted(topics))


def windows(tokens: np.ndarray, length: int) -> np.ndarray:
    """``tokens`` cut into non-overlapping rows of ``length`` (the tail dropped), int64."""
    rows = len(tokens) // length
    return tokens[: rows * length].reshape(rows, length).astype(np.int64)


def fingerprint(*corpora: np.ndarray) -> str:
    """A short SHA-256 of ``corpora``: tells which Python's text something was built on."""
    digest = hashlib.sha256()
    for tokens in corpora:
        digest.update(tokens.tobytes())
    return digest.hexdigest()[:16]


KINDS = ("name", "operator", "number", "string", "comment", "blank")
"""The syntax classes of a source character: the kind of Python token it belongs to
(keywords count as names, f-string parts as strings); ``blank`` for everything
between tokens and for newlines and indentation."""

_KIND_OF_TOKEN = {
    tokenize.NAME: 0,
    tokenize.OP: 1,
    tokenize.NUMBER: 2,
    tokenize.STRING: 3,
    tokenize.COMMENT: 4,
    **{
        getattr(tokenize, name): 3
        for name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
        if hasattr(tokenize, name)
    },
}


def _source_kinds(source: str) -> np.ndarray:
    """The :data:`KINDS` index of every character of ``source``, uint8."""
    kinds = np.full(len(source), KINDS.index("blank"), dtype=np.uint8)
    starts = np.cumsum([0] + [len(line) for line in io.StringIO(source).readlines()])
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        kind = _KIND_OF_TOKEN.get(token.type)
        if kind is not None:
            begin = starts[token.start[0] - 1] + token.start[1]
            kinds[begin : starts[token.end[0] - 1] + token.end[1]] = kind
    return kinds


@cache
def package_kinds(package: str) -> tuple[np.ndarray, np.ndarray]:
    """Stdlib ``package``'s non-test sources, one character a token, and each
    character's syntax class (:data:`KINDS`): ``(tokens, kinds)``, files joined by a blank
    line. Files the tokenizer rejects are left out."""
    tokens, kinds = [], []
    for path in package_files(package):
        source = path.read_text(encoding="utf-8") + "\n"
        try:
            source_kinds = _source_kinds(source)
        except (tokenize.TokenError, SyntaxError):
            continue
        tokens.append(encode_chars(source))
        kinds.append(source_kinds)
    return np.concatenate(tokens), np.concatenate(kinds)


def encode_chars(text: str) -> np.ndarray:
    """``text`` one character a token (``ord`` below 128, else :data:`OTHER_BYTE`), uint8."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.where(codes < VOCAB, codes, OTHER_BYTE).astype(np.uint8)
