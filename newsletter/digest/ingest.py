"""Read digest files from disk, parse them and store them: the file-reading rim of the parser."""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DigestError
from ..model import Digest, Notice
from ..store import Store
from ..text import shown_path


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
    and a `*.md` entry that is no file (a link to nothing, a link loop, a FIFO) or cannot be
    looked at. Names starting with a dot (editors' lock and swap files, hidden folders) are
    passed over, as links to folders are. Never raises for what it finds on disk.
    """
    found: list[Path] = []
    problems: list[DigestError] = []
    for path in paths:
        if _kind(path) == "folder":
            found.extend(_walk(path, problems))
        else:
            found.append(path)  # read_digest says what is wrong with it, if anything
    # A file named both inside a folder and on its own is one file, not two for one date.
    unique: dict[Path, Path] = {}
    for path in found:
        try:
            key = path.resolve()
        except (OSError, RuntimeError):  # a link loop: read_digest names it
            key = path
        unique.setdefault(key, path)
    return list(unique.values()), problems


def _kind(path: Path) -> str:
    """ "file", "folder", or what else `path` is (links followed): "not a regular file", "a
    link to nothing", "a link loop", or why it cannot be looked at."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a link loop"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return "a link to nothing"
        return exc.strerror or str(exc)
    if stat.S_ISDIR(mode):
        return "folder"
    return "file" if stat.S_ISREG(mode) else "not a regular file"


def _walk(folder: Path, problems: list[DigestError]) -> list[Path]:
    """The `*.md` files under `folder`, sorted; what cannot be looked at goes to `problems`
    (sorted by path too). A loop of its own, not recursion: a tree of any depth is walked."""
    found: list[DigestError] = []
    files: list[Path] = []
    folders = [folder]
    while folders:
        top = folders.pop()
        try:
            with os.scandir(top) as scan:
                entries = [entry.name for entry in scan]
        except OSError as exc:
            found.append(DigestError(f"cannot read folder: {exc.strerror}", source=shown_path(top)))
            continue
        for name in entries:
            if name.startswith("."):
                continue
            path = top / name
            try:
                os.lstat(path)
            except FileNotFoundError:  # gone since the listing
                continue
            except OSError as exc:  # a folder whose names can be read, not what they name
                found.append(
                    DigestError(f"cannot read folder: {exc.strerror}", source=shown_path(top))
                )
                break
            kind = _kind(path)
            if kind == "folder":
                if not os.path.islink(path):  # a link to a folder is passed over
                    folders.append(path)
            elif name.endswith(".md"):
                if kind == "file":
                    files.append(path)
                else:
                    found.append(DigestError(f"cannot read: {kind}", source=shown_path(path)))
    problems.extend(sorted(found, key=lambda problem: problem.source))
    return sorted(files)


def read_digest(path: Path) -> tuple[Digest, tuple[Notice, ...]]:
    """Read and parse one file; any problem becomes a DigestError naming the file."""
    source = str(path)
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:  # a name of non-UTF-8 bytes cannot be stored or shown as text
        raise DigestError(
            "file name is not UTF-8 text; rename the file", source=shown_path(path)
        ) from None
    if _kind(path) == "not a regular file":  # a FIFO: reading it would wait for ever
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


AHEAD_DAYS = 1  # how far past today (UTC) a digest's date may be


def _too_late(digest: Digest, *, source: str, latest: dt.date) -> DigestError:
    ahead = (digest.date - latest).days + AHEAD_DAYS
    return DigestError(
        f"dated {digest.date}, {ahead:,} days after today: a digest comes out on its day; "
        "fix the date in its header",
        source=source,
    )


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
    # A digest comes out on its day; a day ahead allows for time zones. A date further on is
    # a typo (2052 for 2025) that would be sent at once, then hold back every real day after
    # it, since only the newest day is sent.
    latest = store.clock().astimezone(dt.UTC).date() + dt.timedelta(days=AHEAD_DAYS)
    read = [
        (source, _too_late(got, source=source, latest=latest))
        if isinstance(got, Digest) and got.date > latest
        else (source, got)
        for source, got in read
    ]
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
