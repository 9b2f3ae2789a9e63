"""`newsletter build` on a full disk: one line, exit 1, no temporary file, the old site whole."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.publish import files
from newsletter.publish.searchindex import PENDING

from .conftest import DIGESTS

LIMIT = 64 * 1024  # bytes a file may have in the subprocess


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, hidden ones included."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_untouched(out: Path, before: dict[str, bytes]) -> None:
    """No temporary file left, and every file as the last good build left it."""
    after = snapshot(out)
    assert [name for name in after if name.endswith(".tmp")] == []
    assert sorted(after) == sorted(before)
    assert [name for name in after if after[name] != before[name]] == []


def old_site_then_a_new_day(runner: CliRunner, env: dict[str, str], out: Path) -> dict[str, bytes]:
    """A site built from two days and a subscriber; then a third day is stored, not built."""
    assert runner.invoke(main, ["ingest", *map(str, DIGESTS[:2])], env=env).exit_code == 0
    assert runner.invoke(main, ["subscribers", "add", "reader@example.com"], env=env).exit_code == 0
    built = runner.invoke(main, ["build", "--out", str(out)], env=env)
    assert built.exit_code == 0, built.output
    assert runner.invoke(main, ["ingest", str(DIGESTS[2])], env=env).exit_code == 0
    return snapshot(out)


def test_a_full_disk_leaves_no_temporary_file_and_the_old_site_whole(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "site"
    before = old_site_then_a_new_day(runner, cli_env, out)
    real_write = files._write_file
    calls = 0
    lock = threading.Lock()

    def fills_up(path: Path, data: bytes) -> None:
        """The first two files fit; the third gets half written, as on a disk that fills up."""
        nonlocal calls
        with lock:
            calls += 1
            full = calls >= 3
        if not full:
            real_write(path, data)
            return
        real_write(path, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(files, "_write_file", fills_up)
    result = runner.invoke(main, ["build", "--out", str(out)], env=cli_env)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"error: {out}: cannot write the site: No space left on device"
    ]
    assert calls >= 3
    assert_untouched(out, before)


def test_a_file_size_limit_through_the_real_command(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "site"
    before = old_site_then_a_new_day(runner, cli_env, out)
    # Pages fit under the limit and the main feeds do not: the build writes some files, then fails.
    assert len(before["index.html"]) < LIMIT < len(before["rss.xml"])

    def limited() -> None:
        # Writes past LIMIT fail with EFBIG (SIGXFSZ ignored, so the process is not killed).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    newsletter = str(Path(sys.executable).with_name("newsletter"))
    env = {**os.environ, **cli_env}
    done = subprocess.run(
        [newsletter, "build", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limited,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"error: {out}: cannot write the site: File too large"]
    assert_untouched(out, before)


def test_a_build_killed_among_its_renames_leaves_the_search_note(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "site"
    old_site_then_a_new_day(runner, cli_env, out)
    (out / PENDING).unlink(missing_ok=True)  # as an index made since leaves it: up to date
    real_replace = os.replace
    renamed = 0

    def killed_after_one(source: str, target: str) -> None:  # SIGKILL can strike anywhere
        nonlocal renamed
        if renamed == 1:
            raise KeyboardInterrupt
        real_replace(source, target)
        renamed += 1

    monkeypatch.setattr(os, "replace", killed_after_one)
    assert runner.invoke(main, ["ingest", str(DIGESTS[2])], env=cli_env).exit_code == 0
    with (tmp_path / "new.md").open("w", encoding="utf-8") as new:
        new.write(DIGESTS[2].read_text(encoding="utf-8").replace("2024-12-13", "2024-12-14"))
    assert runner.invoke(main, ["ingest", str(tmp_path / "new.md")], env=cli_env).exit_code == 0
    runner.invoke(main, ["build", "--out", str(out)], env=cli_env)
    assert renamed == 1  # one page changed, the rest did not
    # The note came before the first rename: the next run re-indexes, though its build then
    # finds most pages already written.
    assert (out / PENDING).exists()


def test_temporary_files_of_a_build_killed_outright_are_removed_by_the_next(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "site"
    old_site_then_a_new_day(runner, cli_env, out)
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now
    left = [out / f".index.html.{dead.pid}.tmp", out / "papers" / f".x.html.{dead.pid}.tmp"]
    running = out / ".rss.xml.1.tmp"  # pid 1 runs: a build still writing, kept
    for path in [*left, running]:
        path.write_bytes(b"half a file")
    built = runner.invoke(main, ["build", "--out", str(out)], env=cli_env)
    assert built.exit_code == 0, built.output
    assert [path.exists() for path in left] == [False, False]
    assert running.exists()


def test_a_file_the_build_cannot_replace_is_named(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "site"
    old_site_then_a_new_day(runner, cli_env, out)
    (out / "rss.xml").unlink()
    (out / "rss.xml").mkdir()  # a folder where the feed goes
    (out / "rss.xml" / "x").write_text("x")
    built = runner.invoke(main, ["build", "--out", str(out)], env=cli_env)
    assert built.exit_code == 1
    assert (
        built.stderr == f"error: {out}: cannot write the site: {out / 'rss.xml'}: Is a directory\n"
    )
    assert [p.name for p in out.rglob("*.tmp")] == []


def test_ctrl_c_while_files_are_staged_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = files._write_file
    started = 0

    def slow(path: Path, data: bytes) -> None:
        nonlocal started
        started += 1
        if started == 40:  # Ctrl-C part way through, whatever the machine's pace
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.005)
        real_write(path, data)

    monkeypatch.setattr(files, "_write_file", slow)
    site = {f"page{i}.html": b"<p>%d</p>" % i for i in range(400)}
    with pytest.raises(KeyboardInterrupt):
        files.write_changed(tmp_path, site)
    time.sleep(0.3)  # a write still queued when it returned would show up now
    assert sorted(tmp_path.iterdir()) == []  # nothing staged is left, nothing was renamed
    assert 40 <= started < 400  # it stopped part way: the queued writes were cancelled


def test_ctrl_c_between_a_write_starting_and_its_future_being_kept_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The signal lands right after `submit` returned the 3rd write, already running, and
    # before the loop kept its future: that write's file must go too.
    running = threading.Event()

    def writing(path: Path, data: bytes) -> None:
        if path.name.startswith(".page2.html."):  # the 3rd
            running.set()
        time.sleep(0.05)
        path.write_bytes(data)

    class Interrupted(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args: Any, **kwargs: Any) -> Any:
            future = super().submit(*args, **kwargs)
            Interrupted.submitted += 1
            if Interrupted.submitted == 3:
                assert running.wait(5)
                raise KeyboardInterrupt
            return future

    monkeypatch.setattr(files, "_write_file", writing)
    monkeypatch.setattr(files, "ThreadPoolExecutor", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_changed(tmp_path, {f"page{i}.html": b"x" * i for i in range(10)})
    assert sorted(tmp_path.iterdir()) == []
