"""Ingest into a real SQLite file: idempotent, updates in place, one paper on two days."""

from __future__ import annotations

import datetime as dt
import sqlite3
import tracemalloc
from pathlib import Path

import pytest

from newsletter.digest.ingest import ingest_paths
from newsletter.model import Filters
from newsletter.store import Store

from .conftest import DIGESTS, FIXTURES

DAY = """## Daily Papers ({date})
### [Shared Paper](https://arxiv.org/abs/2401.00001)
Vote: {votes}
Authors: Ann
- **What's New**: text
"""


def table_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("digests", "papers", "digest_papers")
        }
    finally:
        conn.close()


def test_ingest_real_digests_stores_counts_votes_authors_sections(store: Store) -> None:
    report = ingest_paths(store, [FIXTURES])
    assert sorted(
        (f.date.isoformat() if f.date else "", f.status, f.paper_count) for f in report.files
    ) == [
        ("2024-06-28", "added", 9),
        ("2024-10-16", "added", 18),
        ("2024-12-13", "added", 27),
    ]
    october = store.digest(dt.date(2024, 10, 16))
    assert october is not None and len(october.papers) == 18
    by_id = {p.arxiv_id: p for p in october.papers}
    assert by_id["2410.10814"].votes == 19
    assert by_id["2410.11619"].votes is None
    assert by_id["2410.10814"].authors == ("Ziyue Li", "Tianyi Zhou")
    assert [s.name for s in by_id["2410.11805"].sections] == ["What's New"]
    assert [p.arxiv_id for p in october.papers][:3] == [
        "2410.10814",
        "2406.15786",
        "2410.11779",
    ]  # file order
    assert [(s.date.isoformat(), s.paper_count, s.top_votes) for s in store.digest_summaries()] == [
        ("2024-12-13", 27, 59),
        ("2024-10-16", 18, 19),
        ("2024-06-28", 9, 14),
    ]


def test_reingest_unchanged_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store(db) as store:
        ingest_paths(store, DIGESTS)
    before = table_counts(db)
    conn = sqlite3.connect(db)
    stamps = conn.execute(
        "SELECT date, ingested_at, content_hash FROM digests ORDER BY date"
    ).fetchall()
    conn.close()
    with Store(db, clock=lambda: dt.datetime(2030, 1, 1, tzinfo=dt.UTC)) as store:
        report = ingest_paths(store, DIGESTS)
    assert [f.status for f in report.files] == ["unchanged"] * 3
    assert table_counts(db) == before == {"digests": 3, "papers": 54, "digest_papers": 54}
    conn = sqlite3.connect(db)
    assert (
        conn.execute("SELECT date, ingested_at, content_hash FROM digests ORDER BY date").fetchall()
        == stamps
    )
    conn.close()


def test_edited_file_updates_in_place(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "2024-01-02.md"
    path.write_text(DAY.format(date="2024-01-02", votes=3), encoding="utf-8")
    assert ingest_paths(store, [path]).files[0].status == "added"
    path.write_text(
        DAY.format(date="2024-01-02", votes=8)
        + "### [New One](https://arxiv.org/abs/2401.00002)\nVote: 1\n",
        encoding="utf-8",
    )
    assert ingest_paths(store, [path]).files[0].status == "updated"
    digest = store.digest(dt.date(2024, 1, 2))
    assert digest is not None
    assert [(p.arxiv_id, p.votes) for p in digest.papers] == [("2401.00001", 8), ("2401.00002", 1)]
    assert table_counts(store.path) == {"digests": 1, "papers": 2, "digest_papers": 2}


def test_one_paper_on_two_days_is_one_paper_in_two_digests(tmp_path: Path, store: Store) -> None:
    for date, votes in (("2024-01-02", 3), ("2024-01-03", 9)):
        (tmp_path / f"{date}.md").write_text(DAY.format(date=date, votes=votes), encoding="utf-8")
    ingest_paths(store, [tmp_path])
    assert table_counts(store.path) == {"digests": 2, "papers": 1, "digest_papers": 2}
    assert store.first_seen() == {"2401.00001": dt.date(2024, 1, 2)}
    later = store.digest(dt.date(2024, 1, 3))
    assert later is not None and later.papers[0].votes == 9  # votes belong to the day


def test_a_paper_reads_as_its_newest_day_says_whatever_order_the_days_came_in(
    tmp_path: Path, store: Store
) -> None:
    def day(date: str, summary: str) -> Path:
        path = tmp_path / date / f"{date}.md"
        path.parent.mkdir()
        path.write_text(DAY.format(date=date, votes=3).replace("text", summary), encoding="utf-8")
        return path

    newer = day("2024-01-02", "corrected text")
    older = day("2024-01-01", "first text")
    assert not ingest_paths(store, [newer]).failed
    assert not ingest_paths(store, [older]).failed  # a backfill, after the newer day
    (paper,) = store.digest_for(dt.date(2024, 1, 1)).papers
    assert paper.sections[0].text == "corrected text"
    newer.write_text(newer.read_text(encoding="utf-8").replace("corrected", "final"), "utf-8")
    assert [f.status for f in ingest_paths(store, [newer]).files] == ["updated"]
    (paper,) = store.digest_for(dt.date(2024, 1, 1)).papers
    assert paper.sections[0].text == "final text"


def test_bad_files_reported_good_files_stored(tmp_path: Path, store: Store) -> None:
    (tmp_path / "2024-01-02.md").write_text(
        DAY.format(date="2024-01-02", votes=3), encoding="utf-8"
    )
    (tmp_path / "2024-01-03.md").write_text(
        DAY.format(date="2024-01-03", votes="lots"), encoding="utf-8"
    )
    (tmp_path / "notes.md").write_text("just some notes\n", encoding="utf-8")
    (tmp_path / "2024-01-04.md").write_bytes(b"## Daily Papers (2024-01-04)\n\xff\xfe bad bytes\n")
    report = ingest_paths(store, [tmp_path])
    assert sorted(f.status for f in report.files) == ["added", "failed", "failed", "failed"]
    errors = sorted(f.error or "" for f in report.failed)
    assert errors[0].endswith("2024-01-03.md:3: bad vote count 'lots' (expected a number or '-')")
    assert errors[1].endswith("2024-01-04.md:2: not UTF-8 text")
    assert "notes.md:1: not a digest" in errors[2]
    assert [d.isoformat() for d in store.digest_dates()] == ["2024-01-02"]


def test_store_uses_wal(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_statements_leave_nothing_behind_in_memory(tmp_path: Path) -> None:
    # A send asks state_now once per message: what each statement leaves behind adds up
    # (Cursor subclasses made as _Cursor(conn) kept ~75 bytes each: 200 MB per million).
    with Store(tmp_path / "m.db") as store:
        person = store.add_subscriber("a@example.com")
        for _ in range(1000):  # warm: statement cache, interned strings
            store.state_now(person)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(20_000):
                store.state_now(person)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert grown < 100_000, grown


@pytest.mark.parametrize(
    ("email", "filters"),
    [
        ("reader@example.com", Filters(min_votes=-1)),
        ("reader@example.com", Filters(max_papers=0)),
        ("reader@example.com", Filters(max_papers=-3)),
        ("not-an-address", Filters()),
        (" reader@example.com", Filters()),
        ("@example.com", Filters()),
    ],
)
def test_the_store_refuses_what_validation_would_have_refused(
    store: Store, email: str, filters: Filters
) -> None:
    # The forms and the CSV validate first; a library caller that skips them gets an error,
    # not a row that would later select nothing or mail nobody.
    with pytest.raises(ValueError):
        store.add_subscriber(email, filters=filters)
    good = store.add_subscriber("good@example.com")
    with pytest.raises(ValueError):
        store.update_filters(good.id, filters=Filters(min_votes=-1))
    assert store.subscribers() == [good]
