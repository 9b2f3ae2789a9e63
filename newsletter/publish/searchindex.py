"""Writing the Pagefind index of the paper pages into `<site>/pagefind/` (runs the pagefind binary).

Pagefind reads the built paper pages (what it indexes is declared in them, see search.py) and
has no incremental update, so the index is rebuilt whole into a folder beside the live one and
swapped in: the search page never sees half an index.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError

INDEX_DIR = "pagefind"
PENDING = f".{INDEX_DIR}.pending"  # the site changed since the index was made
LANGUAGE = "ko"
PAGES = "papers/*.html"
TIMEOUT = 900  # seconds; 25,000 paper pages index in well under a minute


def _failure(output: str) -> str:
    """One line saying why pagefind failed, from its output (a Rust panic names the cause on
    the line after "panicked at"; its last line is only a note about backtraces)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if any("No module named" in line and "pagefind" in line for line in lines):
        return "pagefind is not installed; install it with: pip install 'pagefind[bin]'"
    for i, line in enumerate(lines):
        if "panicked at" in line and i + 1 < len(lines):
            return f"pagefind failed: {lines[i + 1]}"
        if line.lower().startswith("error"):
            return f"pagefind failed: {line}"
    return f"pagefind failed: {lines[-1] if lines else 'no output'}"


def write_search_index(out_dir: Path) -> Path:
    """Index the paper pages of the site in `out_dir` into `out_dir/pagefind/`, replacing it whole."""
    live = out_dir / INDEX_DIR
    fresh = out_dir / f".{INDEX_DIR}.new"
    old = out_dir / f".{INDEX_DIR}.old"
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pagefind",
        "--site",
        str(out_dir),
        "--glob",
        PAGES,
        "--force-language",
        LANGUAGE,
        "--output-path",
        str(fresh),
    ]
    try:
        # A separate process by design: Pagefind is a native binary, run once per build.
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        shutil.rmtree(fresh, ignore_errors=True)
        raise ConfigError(f"pagefind did not finish within {TIMEOUT} s") from None
    except OSError as exc:
        raise ConfigError(f"cannot run pagefind: {exc.strerror or exc}") from None
    if done.returncode != 0:
        shutil.rmtree(fresh, ignore_errors=True)
        raise ConfigError(_failure(done.stderr or done.stdout))
    try:
        if live.exists():
            live.rename(old)
        fresh.rename(live)
    except OSError as exc:
        raise ConfigError(f"cannot put the search index in place: {exc.strerror or exc}") from None
    shutil.rmtree(old, ignore_errors=True)
    return live


def mark_stale(out_dir: Path) -> None:
    """Note that the site changed since its index was made (the build calls this as it writes).

    The note stays until an index is made: a run that fails or is killed between its build and
    the index (the daily job indexes after the mail) leaves it, and the next run indexes even
    though its own build changes nothing.
    """
    (out_dir / PENDING).touch()


def refresh_search_index(out_dir: Path) -> bool:
    """Rebuild the index when the site changed since it was made, or when it is missing; whether
    it ran. Pagefind rebuilds its index whole, so an unchanged site keeps the one it has.
    """
    pending = out_dir / PENDING
    if not pending.exists() and (out_dir / INDEX_DIR).is_dir():
        return False
    write_search_index(out_dir)
    pending.unlink(missing_ok=True)
    return True
