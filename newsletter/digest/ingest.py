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


def find_digest_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into their `*.md` files (sorted); keep files as given, each once."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.md") if p.is_file()))
        else:
            found.append(path)
    # A file named both inside a folder and on its own is one file, not two for one date.
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def read_digest(path: Path) -> tuple[Digest, tuple[Notice, ...]]:
    """Read and parse one file; any problem becomes a DigestError naming the file."""
    source = str(path)
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:  # a name of non-UTF-8 bytes cannot be stored or shown as text
        shown = os.fsencode(source).decode("utf-8", "backslashreplace")
        raise DigestError("file name is not UTF-8 text; rename the file", source=shown) from None
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
    read: list[tuple[str, Digest | DigestError]] = []
    for path in find_digest_files(paths):
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
