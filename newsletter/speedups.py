"""The compose path, compiled: which modules `scripts/compile.py` builds with mypyc, and when
the build may be used.

mypyc turns these typed modules into C extensions that run the same code about 1.7x faster
(composing each subscriber's email is most of a send's CPU). The build goes to BUILD, a
folder Python's own importer never searches; a finder installed by `newsletter/__init__.py`
owns the module names and loads each from BUILD only while the build is current: every
extension there and a stamp, written last, holding the digest of every source of the
package (checked first, as Python checks its own bytecode cache, by each source's size and
modification time: hashing the sources costs a process ~8 ms; by content when those differ).
Otherwise (a source edited or updated since, a half-finished build, no build,
NEWSLETTER_PURE_PYTHON=1) each loads from its source. So a compiled module can only ever be
the code it was built from, and a checkout of another commit never runs this build.
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
    "newsletter.audience.describe",
    "newsletter.audience.match",
    "newsletter.mail.compose",
    "newsletter.mail.day",
    "newsletter.mail.fragments",
    "newsletter.mail.message",
    "newsletter.mail.pieces",
    "newsletter.mail.splice",
    "newsletter.text",
    "newsletter.tokens",
)
LIBRARY = "newsletter.speedups_lib__mypyc"  # the shared library mypyc builds for the group
BUILD = PACKAGE / "_compiled"  # BUILD/newsletter/mail/splice.<ABI>.so ...; never on sys.path
STAMP = BUILD / "stamp"  # written last: source_digest(), then what built it (scripts/compile.py)
PURE = "NEWSLETTER_PURE_PYTHON"  # set to 1: always load the sources


def source_path(module: str) -> Path:
    """The source file of one of MODULES."""
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def extension_path(module: str) -> Path | None:
    """The compiled extension of one of MODULES (or LIBRARY) for this Python, if built."""
    base = BUILD.joinpath(*module.split("."))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = base.with_name(base.name + suffix)
        if path.is_file():
            return path
    return None


def source_digest() -> str:
    """SHA-256 of the package's sources (every .py under it, with their paths): what mypyc
    read to build the modules, since it compiles them against the types of all they import."""
    import hashlib  # here: most processes never compose, and never need it

    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def listing() -> str:
    """Each source of the package (as `source_digest` reads them) with its size and modification
    time: one line, unchanged while no source is written, moved, added or removed."""
    found = []
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                st = os.stat(path)
                found.append(f"{os.path.relpath(path, PACKAGE)}:{st.st_size}:{st.st_mtime_ns}")
    return " ".join(sorted(found))


def write_stamp(*, digest: str, inputs: str, listing: str) -> None:
    """Write the stamp (`scripts/compile.py`, last of a build): the lines `stamp` reads."""
    text = f"{digest}\n{inputs}\n{listing}\n"
    STAMP.write_text(text, encoding="utf-8", errors="surrogateescape")


def stamp() -> list[str]:
    """The stamp's lines: [source digest, build inputs, listing], or [] without a stamp."""
    try:
        return STAMP.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError:
        return []


def built() -> bool:
    """Whether every module, and the library they share, has a compiled extension."""
    return all(extension_path(m) is not None for m in (*MODULES, LIBRARY))


def current() -> bool:
    """Whether every module is built and the build matches the sources: their sizes and times
    are those of the build's `listing`, or else their content is that of its digest."""
    lines = stamp()
    if not lines or not built():
        return False
    try:
        return (len(lines) > 2 and lines[2] == listing()) or lines[0] == source_digest()
    except OSError:  # a source that cannot be read (e.g. an editor's dangling lock link)
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
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return str(getattr(module, "__file__", "")).endswith(suffixes)


class _Finder:
    """Loads MODULES from BUILD when the build is usable, else from their sources; never from
    anything else (an extension left beside a source by an older build is not looked at).
    A meta path finder: importlib.abc is not imported for its base class (7 ms at start-up)."""

    def __init__(self) -> None:
        self._usable: bool | None = None  # decided at the first import of one of MODULES

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES and fullname != LIBRARY:
            return None
        if self._usable is None:
            self._usable = usable()
        extension = extension_path(fullname) if self._usable else None
        if extension is not None:
            return importlib.util.spec_from_file_location(fullname, extension)
        if fullname == LIBRARY:
            return None  # only compiled modules import it
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def install() -> None:
    """Put the finder first on sys.meta_path (once), before any of MODULES is imported."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
