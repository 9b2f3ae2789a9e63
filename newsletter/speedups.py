"""The compose path, compiled: which modules `scripts/compile.py` builds with mypyc, and when
the build may be used.

mypyc turns these typed modules into C extensions that run the same code about 1.7x faster
(composing each subscriber's email is most of a send's CPU). The extensions sit beside the
sources, where Python prefers them; the build also writes a stamp, the digest of every
source of the package. A build that no longer matches its sources (a source edited or
updated since, a half-finished build) is stale: its modules then load from their sources,
as they do where nothing was compiled and as they do with NEWSLETTER_PURE_PYTHON=1 set. So
a compiled module can only ever be the code it was built from.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
# The modules compiled together, by their names; each one's source is PACKAGE/<path>.py.
MODULES = (
    "newsletter.audience.match",
    "newsletter.mail.compose",
    "newsletter.mail.day",
    "newsletter.mail.fragments",
    "newsletter.mail.message",
    "newsletter.mail.pieces",
    "newsletter.mail.splice",
    "newsletter.tokens",
)
GROUP = "newsletter.speedups_lib"  # mypyc's group: their shared library is GROUP + "__mypyc"
STAMP = PACKAGE / "speedups.stamp"  # written last by the build: source_digest() it built
PURE = "NEWSLETTER_PURE_PYTHON"  # set to 1: always load the sources


def source_path(module: str) -> Path:
    """The source file of one of MODULES."""
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def source_digest() -> str:
    """SHA-256 of the package's sources (every .py under it, with their paths): what mypyc
    read to build the modules, since it compiles them against the types of all they import."""
    import hashlib  # here: most processes never compose, and never need it

    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def built() -> bool:
    """Whether every module, and the library they share, has a compiled extension."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return all(
        any(source_path(m).with_suffix(s).exists() for s in suffixes)
        for m in (*MODULES, GROUP + "__mypyc")
    )


def current() -> bool:
    """Whether every module is built and the build matches the sources."""
    if not built():
        return False
    try:
        return STAMP.read_text(encoding="ascii").strip() == source_digest()
    except (OSError, UnicodeDecodeError):
        return False


def usable() -> bool:
    """Whether the compiled modules may load: current, and not turned off."""
    return os.environ.get(PURE, "") in ("", "0") and current()


def in_use() -> bool:
    """Whether every one of MODULES that is loaded was loaded from its compiled extension
    (False when none is loaded yet)."""
    loaded = [sys.modules[m] for m in MODULES if m in sys.modules]
    return bool(loaded) and all(_is_extension(m) for m in loaded)


def _is_extension(module: ModuleType) -> bool:
    return str(getattr(module, "__file__", "")).endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES)
    )


class _SourcesFinder:
    """Loads MODULES from their sources when the compiled build may not be used (a meta path
    finder: importlib.abc is not imported for its base class, which costs 7 ms at start-up)."""

    def __init__(self) -> None:
        self._usable: bool | None = None  # decided at the first import of one of MODULES

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        if self._usable is None:
            self._usable = usable()
        if self._usable:
            return None  # the usual finders: the extension beside the source comes first
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def install() -> None:
    """Put the finder first on sys.meta_path (once), before any of MODULES is imported."""
    if not any(isinstance(f, _SourcesFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFinder())
