"""Read digest files from disk, parse them and store them: the file-reading rim of the parser."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DigestError
from ..model import Digest, Notice
from ..store import Store


@dataclass(frozen=True, slots=True)
class FileResult:
    """What happened to one file."""

    path: str
    status: str  # added | updated | unchanged | failed
    date: dt.date | None = None
    paper_count: int = 0
    error: str | None = None


@dataclass
class IngestReport:
    """The outcome of one `ingest` run."""

    files: list[FileResult] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def changed(self) -> bool:
        """Whether any digest was added or updated (what makes a rebuild and a send worth it)."""
        return any(f.status in ("added", "updated") for f in self.files)

    def summary(self) -> str:
        """The one-line summary, e.g. `ingested 3 files: 1 added, 0 updated, 2 unchanged, 0 failed`."""
        counts = ", ".join(
            f"{self.count(s)} {s}" for s in ("added", "updated", "unchanged", "failed")
        )
        return f"ingested {len(self.files)} files: {counts}"


def find_digest_files(paths: Iterable[Path]) -> tuple[list[Path], list[DigestError]]:
    """Expand folders into their `*.md` files (sorted); keep files as given, each once.

    Also what could not be looked at, one DigestError each: a sub-folder that cannot be read,
    and a `*.md` entry that is no file (a link to nothing, a FIFO). Names starting with a dot
    (editors' lock and swap files, hidden folders) are passed over, as links to folders are.
    """
    found: list[Path] = []
    problems: list[DigestError] = []
    for path in paths:
        if path.is_dir():
            found.extend(_walk(path, problems))
        else:
            found.append(path)
    # A file named both inside a folder and on its own is one file, not two for one date.
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values()), problems


def _walk(folder: Path, problems: list[DigestError]) -> list[Path]:
    """The `*.md` files under `folder`, sorted; what cannot be looked at goes to `problems`
    (sorted by path too)."""
    found: list[DigestError] = []

    def unreadable(exc: OSError) -> None:
        where = exc.filename or folder
        found.append(DigestError(f"cannot read folder: {exc.strerror}", source=str(where)))

    files: list[Path] = []
    for top, folders, names in os.walk(folder, onerror=unreadable):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            if name.startswith(".") or not name.endswith(".md"):
                continue
            path = Path(top, name)
            if path.is_file():
                files.append(path)
            else:
                kind = "a link to nothing" if path.is_symlink() else "not a regular file"
                found.append(DigestError(f"cannot read: {kind}", source=str(path)))
    problems.extend(sorted(found, key=lambda problem: problem.source))
    return sorted(files)


def read_digest(path: Path) -> tuple[Digest, tuple[Notice, ...]]:
    """Read and parse one file; any problem becomes a DigestError naming the file."""
    source = str(path)
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:  # a name of non-UTF-8 bytes cannot be stored or shown as text
        shown = os.fsencode(source).decode("utf-8", "backslashreplace")
        raise DigestError("file name is not UTF-8 text; rename the file", source=shown) from None
    if path.exists() and not path.is_file() and not path.is_dir():  # reading would wait for ever
        raise DigestError("cannot read: not a regular file", source=source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DigestError("no such file", source=source) from None
    except OSError as exc:
        raise DigestError(f"cannot read: {exc.strerror}", source=source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DigestError("not UTF-8 text", source=source, line=line) from None
    from .parse import parse_digest  # here: `send` imports this module for its report only

    result = parse_digest(text, source=source)
    return result.digest, result.warnings


def ingest_paths(store: Store, paths: Sequence[Path]) -> IngestReport:
    """Parse every digest file under `paths` and store the good ones; bad files are reported.

    Two files with the same date in one run both fail and neither is stored: which one is
    right is for the user to say. (In separate runs the later one updates the stored digest.)
    """
    report = IngestReport()
    files, problems = find_digest_files(paths)
    read: list[tuple[str, Digest | DigestError]] = [(p.source, p) for p in problems]
    for path in files:
        try:
            digest, warnings = read_digest(path)
        except DigestError as exc:
            read.append((exc.source, exc))  # the name as shown, even when not UTF-8
            continue
        report.warnings.extend(warnings)
        read.append((str(path), digest))
    sources: dict[dt.date, list[str]] = {}
    for source, got in read:
        if isinstance(got, Digest):
            sources.setdefault(got.date, []).append(source)
    parsed: list[tuple[Digest, str]] = []
    for source, got in read:
        if isinstance(got, Digest) and len(sources[got.date]) > 1:
            others = ", ".join(s for s in sources[got.date] if s != source)
            got = DigestError(
                f"digest {got.date} is also in {others}; one file per date, none stored",
                source=source,
            )
        if isinstance(got, DigestError):
            report.files.append(FileResult(path=source, status="failed", error=str(got)))
            continue
        parsed.append((got, source))
        report.files.append(
            FileResult(path=source, status="pending", date=got.date, paper_count=len(got.papers))
        )
    saved = {s.date: s for s in store.save_digests(parsed)}
    report.files = [
        FileResult(f.path, saved[f.date].status, f.date, f.paper_count) if f.date in saved else f
        for f in report.files
    ]
    return report
