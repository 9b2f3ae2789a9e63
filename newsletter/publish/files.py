"""Writing a set of files all or nothing: each is written aside, then all are renamed into place.

A reader (or the web server) never sees half a file, and a build that fails part way, say on a
full disk, leaves every file as it was and no temporary file behind.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

WRITERS = 4  # threads writing files


def write_changed(
    out_dir: Path, files: Mapping[str, bytes], *, before_changing: Callable[[], None] | None = None
) -> set[str]:
    """Write each file (name relative to `out_dir`) whose bytes changed; the names written.

    Nothing is renamed into place until every changed file is written in full; on a failure the
    OSError propagates and no temporary file is left. `before_changing` runs once every
    changed file is staged and before the first is renamed, when any changed. Folders must
    exist.
    """
    staged = _stage_all(out_dir, files)
    if staged and before_changing is not None:
        try:
            before_changing()
        except BaseException:
            for temporary in staged.values():
                temporary.unlink(missing_ok=True)
            raise
    _replace_all(out_dir, staged)
    return set(staged)


_TEMPORARY = re.compile(r"\.(.+)\.(\d+)\.tmp")  # _stage's names: .NAME.PID.tmp


def leftovers(names: Iterable[str]) -> list[str]:
    """The temporary files among `names` (site paths) that a writer killed outright (SIGKILL,
    a power cut) left behind: its process is gone. A running build's are kept."""
    found = []
    for name in names:
        match = _TEMPORARY.fullmatch(name.rpartition("/")[2])
        if match is not None and not _running(int(match[2])):
            found.append(name)
    return sorted(found)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone; or no process id at all
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to a new file at `path`: the one place a build writes bytes."""
    path.write_bytes(data)


def _temporary_for(path: Path) -> Path:
    """Where `path` is staged: beside it, named for this process (builds may overlap)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _stage(path: Path, data: bytes) -> Path | None:
    """A temporary file beside `path` holding `data`, or None when `path` already holds it."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return None
    except FileNotFoundError:
        pass
    temporary = _temporary_for(path)
    try:
        _write_file(temporary, data)
    except BaseException:
        temporary.unlink(missing_ok=True)  # half a file, say on a full disk
        raise
    return temporary


def _stage_all(out_dir: Path, files: Mapping[str, bytes]) -> dict[str, Path]:
    """Each changed file's temporary file by name; on any failure none is left and it raises."""
    futures: dict[str, Future[Path | None]] = {}
    # File writes are mostly kernel time, which threads overlap (the GIL is released).
    pool = ThreadPoolExecutor(max_workers=WRITERS)
    try:
        for name, data in files.items():
            futures[name] = pool.submit(_stage, out_dir / name, data)
        staged = {name: f.result() for name, f in futures.items()}
    except BaseException:
        # A failed write, or Ctrl-C/SIGTERM while waiting: the queued writes are cancelled
        # and the running ones waited for, so none can leave a file after this cleans up.
        # Each one that ran has its temporary file; a Ctrl-C landing between `submit` and
        # the line that keeps its future leaves one more write than `futures` holds.
        pool.shutdown(wait=True, cancel_futures=True)
        for name in itertools.islice(files, len(futures) + 1):
            _temporary_for(out_dir / name).unlink(missing_ok=True)
        raise
    finally:
        pool.shutdown(wait=True)
    return {name: temporary for name, temporary in staged.items() if temporary is not None}


def _replace_all(out_dir: Path, staged: Mapping[str, Path]) -> None:
    """Rename every staged file over its target; any not renamed is removed."""
    pending = dict(staged)
    try:
        for name, temporary in staged.items():
            os.replace(temporary, out_dir / name)
            del pending[name]
    finally:
        for temporary in pending.values():
            temporary.unlink(missing_ok=True)
