"""Text made safe for one line: control characters out (headers, terminals), file-name-safe names."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Control characters (C0, DEL, C1) and Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
# Noncharacters of the Basic Multilingual Plane: no text holds them, and mjml-python's parser
# stops at U+FFFE and U+FFFF ("unable to parse next template"), failing every email of the day.
_NONCHARACTERS = re.compile("[\ufdd0-\ufdef\ufffe\uffff]+")
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._@+-]+")


def clean_text(text: str, *, limit: int | None = None) -> str:
    """One line of text: control characters and line breaks become spaces, noncharacters go,
    trimmed, capped."""
    # Most text is clean already: printable, single spaces, trimmed (checked in C, fast).
    if not (text.isprintable() and "  " not in text and text.strip() == text):
        text = _SPACES.sub(" ", _CONTROL.sub(" ", _NONCHARACTERS.sub("", text))).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def safe_file_name(text: str, *, limit: int = 100) -> str:
    """`text` as a file-name part: ASCII letters, digits and `._@+-`, the rest as `_`."""
    return _UNSAFE_IN_NAME.sub("_", text)[:limit]


def shown_path(path: Path | str) -> str:
    """The path as text to print and to key reports by: bytes that are not UTF-8 as \\xff,
    never a lone surrogate (the same as str(path) for every UTF-8 name)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
