"""A database that fails after opening: read-only, full, damaged, or written by a newer version.

Every fault is real: a file the running user cannot write (tests run as root drop the
capability that lets root write through chmod), a file-size limit the kernel enforces, bytes overwritten in
the middle of a real database file, a migration this version does not know. Through the real
CLI each is one line and exit 1; /healthz names it with a 503.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from newsletter.digest.ingest import ingest_paths
from newsletter.errors import StoreError
from newsletter.store import Store
from newsletter.tokens import subscriber_token
from tests.conftest import TEST_KEY
from tests.smtp_servers import RecordingHandler, smtp_server
from tests.web_server import first_health, free_port, make_site, service

from .conftest import DIGESTS

NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))
NOBODY = 65534
CSV = "email,name,keywords,min_votes\nnew.reader@example.com,New Reader,agents,0\n"


def make_database(path: Path) -> Path:
    """Two real digests and one subscriber; the third digest is left to ingest."""
    with Store(path, clock=lambda: dt.datetime(2024, 12, 13, tzinfo=dt.UTC)) as store:
        assert not ingest_paths(store, DIGESTS[:2]).failed
        store.add_subscriber("reader@example.com")
    path.chmod(0o666)
    return path


def _drop_file_override() -> None:
    # Root passes permission checks by CAP_DAC_OVERRIDE (and DAC_READ_SEARCH); without them
    # in the bounding set, the command that runs next is held to the file's mode like anyone.
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def as_unprivileged() -> dict[str, object]:
    """Subprocess options that make a file's permissions bind: root ignores them otherwise."""
    if os.geteuid() != 0:
        return {}
    probe = subprocess.run(["true"], preexec_fn=_drop_file_override, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("root here cannot drop CAP_DAC_OVERRIDE (needs CAP_SETPCAP)")
    return {"preexec_fn": _drop_file_override}


def cli_env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return {**env, "NEWSLETTER_DB": str(db), "NEWSLETTER_SECRET_KEY": TEST_KEY}


def run_cli(db: Path, *args: str, **options: object) -> subprocess.CompletedProcess[str]:
    options.setdefault("env", cli_env(db))
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [NEWSLETTER, *args],
        cwd=db.parent,
        capture_output=True,
        text=True,
        timeout=120,
        **options,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *, starts: str) -> str:
    """The single stderr line of a failed command, checked to start with `starts`."""
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(starts), lines[0]
    return lines[0]


def corrupt_middle_page(path: Path) -> None:
    """Overwrite a page of paper data with junk, as a failing disk might.

    The papers table's root page: data every command reads, and never the schema, so the
    database still opens (a damaged schema page is a different fault: nothing opens).
    """
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'papers'").fetchone()[
            0
        ]
    conn.close()
    data = bytearray(path.read_bytes())
    middle = (root - 1) * page_size
    data[middle : middle + page_size] = bytes((i * 37 + 11) % 256 for i in range(page_size))
    path.write_bytes(bytes(data))


def test_read_only_database_reads_work_writes_say_so(tmp_path: Path) -> None:
    db = make_database(tmp_path / "news.db")
    (tmp_path / "readers.csv").write_text(CSV, encoding="utf-8")
    db.chmod(0o444)
    user = as_unprivileged()

    listed = run_cli(db, "digests", **user)
    assert listed.returncode == 0, listed.stderr
    assert "2024-10-16" in listed.stdout

    starts = f"error: {db}: cannot write the database: the database is read-only"
    one_line_error(run_cli(db, "ingest", str(DIGESTS[2]), **user), starts=starts)
    one_line_error(run_cli(db, "subscribers", "import", "readers.csv", **user), starts=starts)
    with smtp_server(RecordingHandler()) as (server, handler):
        smtp = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port), "SMTP_TLS": "none"}
        sent = run_cli(
            db,
            "send",
            env={**cli_env(db), **{f"NEWSLETTER_{k}": v for k, v in smtp.items()}},
            **user,
        )
    one_line_error(sent, starts=starts)
    assert handler.received == []  # nothing went out that the ledger could not record


def _file_size_limit(limit: int) -> None:
    # The kernel refuses writes past `limit` bytes (EFBIG), as a full disk refuses with ENOSPC.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_ingest_is_one_line_and_keeps_the_old_data(tmp_path: Path) -> None:
    db = make_database(tmp_path / "news.db")
    # Room for the shared-memory index (32 KiB) and a few WAL frames; not for the third digest.
    result = run_cli(db, "ingest", str(DIGESTS[2]), preexec_fn=lambda: _file_size_limit(40_000))
    one_line_error(result, starts=f"error: {db}: cannot write the database: the disk")
    with Store(db) as store:
        assert store.digest_dates() == [dt.date(2024, 10, 16), dt.date(2024, 6, 28)]
        store.check_integrity(history=True)


def test_full_database_rolls_back_and_the_connection_still_works(tmp_path: Path) -> None:
    with Store(tmp_path / "full.db") as store:
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count={pages}")  # no page may be added
        with pytest.raises(StoreError) as caught:
            ingest_paths(store, DIGESTS)
        assert caught.value.fault == "full"
        assert str(caught.value) == (
            f"{tmp_path / 'full.db'}: cannot write the database: the disk is full;"
            " free some space and run again (sqlite: database or disk is full)"
        )
        assert store.digest_dates() == []
        store.conn.execute("PRAGMA max_page_count=1000000")  # space freed: the next run works
        assert not ingest_paths(store, DIGESTS).failed
        assert len(store.digest_dates()) == 3


@pytest.mark.parametrize(
    "args", [("digests",), ("subscribers", "list"), ("build",), ("send", "--dry-run")]
)
def test_damaged_page_is_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    db = make_database(tmp_path / "news.db")
    corrupt_middle_page(db)
    result = run_cli(db, *args)
    one_line_error(result, starts=f"error: {db}: ")
    assert "damaged" in result.stderr and "restore it from a backup" in result.stderr


def bump_schema(db: Path) -> None:
    """What a newer newsletter might do: a migration this one lacks, a renamed column."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            """INSERT INTO _sqlite_migrations (migration_set, name, applied_at)
               VALUES ('newsletter', 'm099_topics', '2030-01-01')"""
        )
        conn.execute("ALTER TABLE subscribers RENAME COLUMN keywords TO topics")
    conn.close()


def test_newer_schema_is_refused_at_open(tmp_path: Path) -> None:
    db = make_database(tmp_path / "news.db")
    bump_schema(db)
    for args in (("subscribers", "list"), ("digests",), ("ingest", str(DIGESTS[2]))):
        error = one_line_error(run_cli(db, *args), starts=f"error: {db}: ")
        assert error == (
            f"error: {db}: written by a newer version of newsletter (schema m099_topics);"
            " upgrade newsletter to use it"
        )


def test_another_applications_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "theirs.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE papers (title TEXT)")  # a name we use too
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO papers VALUES ('theirs')")
    conn.close()
    before = db.read_bytes()
    for args in (("subscribers", "list"), ("ingest", str(DIGESTS[2])), ("build",)):
        error = one_line_error(run_cli(db, *args), starts=f"error: {db}: ")
        assert error == (
            f"error: {db}: not a newsletter database (it holds other tables: notes, papers); "
            "give --db (NEWSLETTER_DB) a new file"
        )
    assert db.read_bytes() == before


def test_healthz_names_a_newer_schema_and_damage(tmp_path: Path) -> None:
    with service(tmp_path) as web, web.client() as client:
        assert client.get("/healthz").json()["db"] == "ok"
        bump_schema(web.settings.db)
        newer = client.get("/healthz")
        assert (newer.status_code, newer.json()) == (503, {"ok": False, "db": "newer"})


def test_healthz_finds_a_damaged_page(tmp_path: Path) -> None:
    db = make_database(tmp_path / "service.db")
    corrupt_middle_page(db)
    with service(tmp_path, digests=False) as web, web.client() as client:
        damaged = client.get("/healthz")
    assert (damaged.status_code, damaged.json()) == (503, {"ok": False, "db": "corrupt"})


def test_healthz_says_read_only_when_writes_would_fail(tmp_path: Path) -> None:
    db = make_database(tmp_path / "news.db")
    site = make_site(tmp_path / "site")
    db.chmod(0o444)
    user = as_unprivileged()
    port = free_port()
    env = {**cli_env(db), "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}"}
    command = [NEWSLETTER, "serve", "--port", str(port), "--site", str(site)]
    process = subprocess.Popen(  # type: ignore[call-overload]
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **user
    )
    token = subscriber_token(
        1, email="reader@example.com", purpose="unsubscribe", key=TEST_KEY.encode()
    )
    try:
        health = first_health(process, port)
        # A write cannot happen now, and nothing of it did: 503, try again later (as busy).
        one_click = httpx.post(f"http://127.0.0.1:{port}/u/{token}", timeout=10)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert (health.status_code, health.json()) == (503, {"ok": False, "db": "read-only"})
    assert (one_click.status_code, one_click.headers["retry-after"]) == (503, "10")
    assert b"Traceback" not in stderr and b"Exception in ASGI" not in stderr


def test_a_database_removed_while_serving_is_503_and_never_recreated(tmp_path: Path) -> None:
    with service(tmp_path, setup=lambda store: store.add_subscriber("a@example.com")) as web:
        db = web.settings.db
        unsubscribe, page = web.token(1, "unsubscribe"), web.token(1, "preferences")
        with web.client() as client:
            assert client.get("/healthz").json()["db"] == "ok"
            assert client.get(f"/p/{page}").status_code == 200  # a pooled connection is open
            for name in (db.name, f"{db.name}-wal", f"{db.name}-shm"):
                (db.parent / name).unlink(missing_ok=True)
            health = client.get("/healthz")
            one_click = client.post(f"/u/{unsubscribe}")  # it would go to the deleted file
            preferences = client.get(f"/p/{page}")
            feed = client.get("/rss.xml")  # the site's files do not need the database
    assert (health.status_code, health.json()) == (503, {"ok": False, "db": "gone"})
    assert (one_click.status_code, one_click.headers["retry-after"]) == (503, "10")
    assert preferences.status_code == 503
    assert feed.status_code == 200
    assert not db.exists()  # no empty database made in its place


def test_a_database_moved_away_and_back_is_served_again_another_is_not(tmp_path: Path) -> None:
    with service(tmp_path) as web, web.client() as client:
        db = web.settings.db
        db.rename(tmp_path / "aside.db")
        away = client.get("/healthz")
        (tmp_path / "aside.db").rename(db)
        back = client.get("/healthz")
        # A copy is another file: the open connections would still use the old one.
        copy = tmp_path / "copy.db"
        copy.write_bytes(db.read_bytes())
        copy.replace(db)
        replaced = client.get("/healthz")
    assert (away.status_code, away.json()["db"]) == (503, "gone")
    assert (back.status_code, back.json()["db"]) == (200, "ok")
    assert (replaced.status_code, replaced.json()["db"]) == (503, "gone")


def test_a_store_opened_without_create_never_makes_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "none.db"
    with pytest.raises(StoreError) as caught:
        Store(missing, create=False)
    assert (caught.value.fault, str(caught.value)) == ("gone", f"{missing}: no database here")
    assert list(tmp_path.iterdir()) == []
