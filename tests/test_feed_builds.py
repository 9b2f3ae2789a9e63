"""Builds over time: byte-identical rebuilds, incremental equals full, the feed window,
no private feed files, gzip siblings of large files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from newsletter.model import Filters
from newsletter.publish.build import GZIP_MIN_BYTES
from newsletter.store import Store
from newsletter.tokens import legacy_feed_token

from .conftest import TEST_KEY
from .sites import build, digest_text, make_settings, parsed, save


def test_two_builds_are_byte_identical_and_the_second_writes_nothing(
    loaded_store: Store, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    loaded_store.add_subscriber("reader@example.com", filters=Filters(keywords=("reasoning",)))
    first = build(loaded_store, tmp_path / "a", settings)
    other = build(loaded_store, tmp_path / "b", settings)
    files = sorted(
        p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert files == sorted(
        p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert set(first.written) == set(other.written) and not first.unchanged
    again = build(loaded_store, tmp_path / "a", settings)
    assert again.written == () and again.removed == ()
    assert set(again.unchanged) == set(first.written)
    ids = [e.id for e in parsed(tmp_path / "a", "atom.xml").entries]
    assert ids == [e.id for e in parsed(tmp_path / "b", "atom.xml").entries]


def test_rebuild_after_a_new_digest_matches_a_full_build(store: Store, tmp_path: Path) -> None:
    """Incremental rebuilds render only what changed, yet equal a build from scratch."""
    settings = make_settings(tmp_path, feed_days=2)
    days = [f"2024-03-{n:02d}" for n in range(1, 6)]
    save(
        store,
        *(
            digest_text(d, [{"id": f"2403.{n:05d}", "title": f"Paper {n}"}])
            for n, d in enumerate(days)
        ),
    )
    build(store, tmp_path / "inc", settings)
    # A new day that lists 2403.00001 again with a new summary: the paper's text is stored
    # once, so the 2024-03-02 page changes too; 2024-03-05 gains a "next" link.
    save(
        store,
        digest_text(
            "2024-03-06",
            [{"id": "2403.00001", "title": "Paper 1 v2", "votes": 50, "new": "개정된 요약"}],
        ),
    )
    report = build(store, tmp_path / "inc", settings)
    pages = {p for p in report.written if p.endswith(".html")}
    assert pages == {
        "2024-03-02.html",
        "2024-03-05.html",
        "2024-03-06.html",
        "index.html",
        "papers/2403.00001.html",  # its text changed; the other paper pages did not
    }
    assert {"2024-03-01.html", "2024-03-03.html", "2024-03-04.html"} <= set(report.unchanged)
    build(store, tmp_path / "full", settings)
    for path in (tmp_path / "full").rglob("*"):
        if path.is_file():
            name = path.relative_to(tmp_path / "full")
            assert (tmp_path / "inc" / name).read_bytes() == path.read_bytes(), name
    assert "개정된 요약" in (tmp_path / "inc" / "2024-03-02.html").read_text(encoding="utf-8")
    # A page deleted or edited by hand is noticed and rewritten.
    (tmp_path / "inc" / "2024-03-03.html").unlink()
    (tmp_path / "inc" / "2024-03-04.html").write_text("edited", encoding="utf-8")
    report = build(store, tmp_path / "inc", settings)
    assert set(report.written) == {"2024-03-03.html", "2024-03-04.html"}


def test_a_paper_on_several_days_is_one_entry_dated_its_first_day(
    store: Store, tmp_path: Path
) -> None:
    save(
        store,
        digest_text(
            "2024-05-01", [{"id": "2405.00001", "title": "Repeat", "votes": 3, "new": "첫 요약"}]
        ),
        digest_text("2024-05-02", [{"id": "2405.00002", "title": "Other", "votes": 1}]),
        digest_text(
            "2024-05-03",
            [
                {"id": "2405.00001", "title": "Repeat", "votes": 30, "new": "새 요약"},
                {"id": "2405.00003", "title": "Third", "votes": 2},
            ],
        ),
    )
    out = tmp_path / "site"
    build(store, out, make_settings(tmp_path))
    feed = parsed(out, "atom.xml")
    ids = [e.id.rsplit("/", 1)[1] for e in feed.entries]
    assert ids == ["2405.00003", "2405.00002", "2405.00001"]
    repeat = feed.entries[-1]
    assert repeat.published.startswith("2024-05-01") and repeat.updated.startswith("2024-05-03")
    assert "새 요약" in repeat.content[0].value and "추천 30" in repeat.content[0].value
    # Published as it went out on 05-01, alone that day (no paper below it); updated to its
    # place on 05-03 (one paper below it).
    rss = parsed(out, "rss.xml")
    assert rss.entries[-1].published == "Wed, 01 May 2024 00:00:00 +0000"
    data = json.loads((out / "feed.json").read_text(encoding="utf-8"))
    assert data["items"][-1]["date_published"] == "2024-05-01T00:00:00Z"
    assert data["items"][-1]["date_modified"] == "2024-05-03T00:00:01Z"


def test_feeds_cover_only_the_newest_days(loaded_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "site"
    build(loaded_store, out, make_settings(tmp_path, feed_days=1))
    assert len(parsed(out, "rss.xml").entries) == 27
    assert len(parsed(out, "digests.atom").entries) == 1
    assert (out / "2024-06-28.html").exists()  # the archive keeps every day


def test_build_writes_no_private_feed_and_removes_old_ones_once(
    loaded_store: Store, tmp_path: Path
) -> None:
    reader = loaded_store.add_subscriber("reader@example.com")
    out = tmp_path / "site"
    old = f"feeds/{legacy_feed_token(reader.id, key=TEST_KEY.encode())}.xml"
    (out / "feeds").mkdir(parents=True)
    for name in (old, "feeds/index.html"):
        (out / name).write_text("<rss/>", encoding="utf-8")
    report = build(loaded_store, out, make_settings(tmp_path))
    assert report.removed == tuple(sorted((old, "feeds/index.html")))
    assert not (out / "feeds").exists()
    assert not any(name.startswith("feeds/") for name in report.written)
    again = build(loaded_store, out, make_settings(tmp_path, secret_key=None))
    assert again.removed == () and again.written == () and again.notices == ()


def test_large_files_get_a_deterministic_gzip_sibling(loaded_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "site"
    report = build(loaded_store, out, make_settings(tmp_path))
    for name in report.written:
        path = out / name
        if name.endswith(".gz"):
            raw = path.read_bytes()
            assert raw[4:8] == b"\0\0\0\0"  # gzip MTIME field: 0, so rebuilds give equal bytes
            assert gzip.decompress(raw) == (out / name.removesuffix(".gz")).read_bytes(), name
        elif path.stat().st_size > GZIP_MIN_BYTES:
            assert f"{name}.gz" in report.written, name
        else:
            assert not (out / f"{name}.gz").exists(), name
    assert "rss.xml.gz" in report.written
    # A feed that shrinks below the threshold loses its sibling, never keeps a stale one.
    with Store(tmp_path / "tiny.db") as tiny:
        save(tiny, digest_text("2024-12-14", [{"id": "2412.99999", "title": "Tiny"}]))
        small = build(tiny, out, make_settings(tmp_path))
    assert "rss.xml.gz" in small.removed and not (out / "rss.xml.gz").exists()
