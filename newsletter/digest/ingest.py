"""Read digest files from disk, parse them and store them: the file-reading rim of the parser."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DigestError
from ..model import Digest, Notice
from ..store import Store
from .parse import parse_digest


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
    """Expand folders into their `*.md` files (sorted); keep files as given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.md") if p.is_file()))
        else:
            found.append(path)
    return found


def read_digest(path: Path) -> tuple[Digest, tuple[Notice, ...]]:
    """Read and parse one file; any problem becomes a DigestError naming the file."""
    source = str(path)
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
    result = parse_digest(text, source=source)
    return result.digest, result.warnings


def ingest_paths(store: Store, paths: Sequence[Path]) -> IngestReport:
    """Parse every digest file under `paths` and store the good ones; bad files are reported."""
    report = IngestReport()
    parsed: list[tuple[Digest, str]] = []
    by_date: dict[dt.date, str] = {}
    for path in find_digest_files(paths):
        try:
            digest, warnings = read_digest(path)
        except DigestError as exc:
            report.files.append(FileResult(path=str(path), status="failed", error=str(exc)))
            continue
        report.warnings.extend(warnings)
        if digest.date in by_date:
            report.warnings.append(
                Notice(
                    str(path),
                    None,
                    f"digest {digest.date} also in {by_date[digest.date]}; this file wins",
                )
            )
            parsed = [(d, s) for d, s in parsed if d.date != digest.date]
            report.files = [f for f in report.files if f.date != digest.date]
        by_date[digest.date] = str(path)
        parsed.append((digest, str(path)))
        report.files.append(
            FileResult(
                path=str(path), status="pending", date=digest.date, paper_count=len(digest.papers)
            )
        )
    saved = {s.date: s for s in store.save_digests(parsed)}
    report.files = [
        FileResult(f.path, saved[f.date].status, f.date, f.paper_count) if f.date in saved else f
        for f in report.files
    ]
    return report
