"""Output that cannot be written never stops a command's work: a pipe closed by its reader
(`| head`), a log on a full disk (/dev/full). The real console script, in its own process."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from newsletter.digest.ingest import ingest_paths
from newsletter.model import Filters
from newsletter.store import Store
from tests.conftest import FIXTURES, TEST_KEY

NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))
CSV = Path(__file__).resolve().parent.parent / "subscribers.example.csv"


def run(
    tmp_path: Path, *args: str, stdout: int, **options: Any
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {"NEWSLETTER_DB": str(tmp_path / "out.db"), "NEWSLETTER_SECRET_KEY": TEST_KEY}
    return subprocess.run(
        [NEWSLETTER, *args],
        cwd=tmp_path,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        **options,
    )


def closed_pipe() -> int:
    """The write end of a pipe whose reader has gone (the caller closes it once passed on)."""
    read, write = os.pipe()
    os.close(read)
    return write


def undated(data: bytes) -> bytes:
    """A preview file without its Date header (the moment it was composed)."""
    return re.sub(rb"(?m)^Date: [^\r\n]*\r?\n", b"", data, count=1)


def stored_dates(tmp_path: Path) -> list[str]:
    with Store(tmp_path / "out.db") as store:
        return [str(day) for day in store.digest_dates()]


def test_a_closed_pipe_stops_the_report_not_the_work(tmp_path: Path) -> None:
    pipe = closed_pipe()
    try:
        ingested = run(tmp_path, "ingest", str(FIXTURES), stdout=pipe)
        imported = run(tmp_path, "subscribers", "import", str(CSV), stdout=pipe)
        previews = run(tmp_path, "preview", "--all", "--out", "previews", stdout=pipe)
    finally:
        os.close(pipe)
    # Every file was stored and every preview written, though not a line could be printed;
    # as for any tool in a pipe whose reader has stopped, no error is made of it.
    for done in (ingested, imported, previews):
        assert (done.returncode, done.stderr) == (0, "")
    assert sorted(stored_dates(tmp_path)) == ["2024-06-28", "2024-10-16", "2024-12-13"]
    with Store(tmp_path / "out.db") as store:
        assert len(store.subscribers(status="active")) == len(CSV.read_text().splitlines()) - 1
    # The same previews as a run whose output is read.
    read = run(tmp_path, "preview", "--all", "--out", "read", stdout=subprocess.PIPE)
    assert read.returncode == 0 and read.stdout.count(".eml") >= 5
    written = sorted(p.name for p in (tmp_path / "previews").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "read").iterdir())


def test_output_to_a_full_disk_is_one_line_and_the_work_is_done(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        done = run(tmp_path, "ingest", str(FIXTURES), stdout=full.fileno())
    assert done.returncode == 1
    assert done.stderr == "error: cannot write the output: No space left on device\n"
    assert sorted(stored_dates(tmp_path)) == ["2024-06-28", "2024-10-16", "2024-12-13"]


def test_previews_on_a_full_disk_are_whole_or_absent_and_never_overwrite_each_other(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "out.db") as store:
        assert not ingest_paths(store, [FIXTURES / "2024-12-13.md"]).failed
        # Three addresses one file name would serve (a/b and a?b are a_b on disk).
        # Small emails (one paper each) first, so some fit under the limit below.
        for address in ("a/b@example.com", "a_b@example.com", "a?b@example.com"):
            store.add_subscriber(address, filters=Filters(keywords=("agent",), max_papers=1))
        for n in range(6):
            store.add_subscriber(f"reader{n}@example.com")
    whole = run(tmp_path, "preview", "--all", "--out", "whole", stdout=subprocess.PIPE)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.splitlines()[-1] == "9 previews of 9 subscribers in whole"
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert len(names) == 27  # none overwrote another
    assert "2024-12-13_a_b@example.com.eml" in names

    def full_disk() -> None:  # writes past 60,000 bytes fail (EFBIG), as a full disk does
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    cut = run(
        tmp_path, "preview", "--all", "--out", "cut", stdout=subprocess.PIPE, preexec_fn=full_disk
    )
    assert cut.returncode == 1
    assert cut.stderr.startswith("error: cut: cannot write previews: File too large")
    # What is there is whole (as the unlimited run wrote it), and each preview all three files.
    written = sorted(p.name for p in (tmp_path / "cut").iterdir())
    for name in written:
        # The same bytes but for the Date header: the two runs need not share a second.
        cut_bytes, whole_bytes = (
            undated((tmp_path / run / name).read_bytes()) for run in ("cut", "whole")
        )
        assert cut_bytes == whole_bytes
    stems = {name.rsplit(".", 1)[0] for name in written}
    assert 3 <= len(stems) < 9  # the small ones went, a big one did not
    assert sorted(written) == sorted(
        f"{stem}.{kind}" for stem in stems for kind in ("eml", "html", "txt")
    )
