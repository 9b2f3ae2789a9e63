"""Feed budgets and RFC 5005 archives: caps by entries and bytes, monthly archive documents."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from newsletter.config import Settings
from newsletter.publish.build import build_site
from newsletter.store import Store

from .sites import BASE, FIXTURE_PAPERS, LoadCountingStore, fixture_ids, make_settings

ATOM = "{http://www.w3.org/2005/Atom}"
FH = "{http://purl.org/syndication/history/1.0}"
FEED_FILES = ("rss.xml", "atom.xml", "feed.json", "digests.xml", "digests.atom")


def _local(out: Path, href: str) -> Path:
    assert href.startswith(f"{BASE}/"), href
    return out / href.removeprefix(f"{BASE}/")


def _atom_chain(out: Path) -> list[tuple[str, list[str], ET.Element]]:
    """(file, entry ids, root) of atom.xml and every document reached by prev-archive."""
    chain = []
    path: Path | None = out / "atom.xml"
    while path is not None:
        root = ET.parse(path).getroot()
        ids = [e.findtext(f"{ATOM}id", "") for e in root.findall(f"{ATOM}entry")]
        chain.append((path.relative_to(out).as_posix(), ids, root))
        prev = [x for x in root.findall(f"{ATOM}link") if x.get("rel") == "prev-archive"]
        assert len(prev) <= 1
        path = _local(out, prev[0].get("href", "")) if prev else None
        assert len(chain) < 50, "prev-archive links loop"
    return chain


def _rss_chain(out: Path) -> list[list[str]]:
    found = []
    path: Path | None = out / "rss.xml"
    while path is not None:
        channel = ET.parse(path).getroot().find("channel")
        assert channel is not None
        found.append([i.findtext("guid", "") for i in channel.findall("item")])
        prev = [x for x in channel.findall(f"{ATOM}link") if x.get("rel") == "prev-archive"]
        path = _local(out, prev[0].get("href", "")) if prev else None
        assert len(found) < 50
    return found


def _every_paper() -> list[str]:
    """The entry ids of every paper in the fixture digests."""
    ids = [f"https://arxiv.org/abs/{a}" for a in fixture_ids()]
    assert len(ids) == FIXTURE_PAPERS
    return ids


def _capped(tmp_path: Path, **changes: object) -> Settings:
    return make_settings(tmp_path, feed_max_entries=10, **changes)


def test_prev_archive_from_the_main_feed_reaches_every_paper_exactly_once(
    loaded_store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    build_site(loaded_store, settings=_capped(tmp_path), out_dir=out)
    chain = _atom_chain(out)
    names = [name for name, _, _ in chain]
    assert names == [
        "atom.xml",
        "archive/2024-12.atom",
        "archive/2024-10.atom",
        "archive/2024-06.atom",
    ]
    seen = [i for _, ids, _ in chain for i in ids]
    assert len(chain[0][1]) == 10
    assert sorted(seen) == _every_paper()  # each paper once: no duplicates
    rss = _rss_chain(out)
    assert sorted(i for ids in rss for i in ids) == _every_paper()
    main = chain[0][2]
    assert main.find(f"{FH}archive") is None and main.find(f"{FH}complete") is None
    for n, (name, _, root) in enumerate(chain[1:], start=1):
        assert root.find(f"{FH}archive") is not None, name
        links = {x.get("rel"): x.get("href") for x in root.findall(f"{ATOM}link")}
        assert links["current"] == f"{BASE}/atom.xml"
        assert links["self"] == f"{BASE}/{name}"
        # next-archive points back up the chain; the newest archive has none.
        assert links.get("next-archive") == (f"{BASE}/{chain[n - 1][0]}" if n > 1 else None)


def test_a_feed_holding_everything_says_complete_and_has_no_archive(
    loaded_store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    build_site(loaded_store, settings=make_settings(tmp_path), out_dir=out)
    assert not (out / "archive").exists()
    for name in ("atom.xml", "digests.atom", "topics/reasoning.atom"):
        root = ET.parse(out / name).getroot()
        assert root.find(f"{FH}complete") is not None, name
    channel = ET.parse(out / "rss.xml").getroot().find("channel")
    assert channel is not None and channel.find(f"{FH}complete") is not None
    # A window narrower than the store does not hold everything.
    build_site(loaded_store, settings=make_settings(tmp_path, feed_days=1), out_dir=out)
    assert ET.parse(out / "digests.atom").getroot().find(f"{FH}complete") is None


def test_every_feed_stays_within_its_byte_budget(loaded_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "site"
    limit = 60_000
    build_site(loaded_store, settings=make_settings(tmp_path, feed_max_bytes=limit), out_dir=out)
    weekly = ("weekly.xml", "weekly.atom", "weekly.json")
    for name in (*FEED_FILES, *weekly, "topics/reasoning.xml", "topics/reasoning.atom"):
        size = (out / name).stat().st_size
        assert size <= limit, (name, size)
    # The three weeks take about 65 KB whole: the budget keeps the newest weeks that fit.
    weeks = ET.parse(out / "weekly.atom").getroot().findall(f"{ATOM}entry")
    titles = [w.findtext(f"{ATOM}title", "") for w in weeks]
    assert titles == ["Daily Papers 2024-W50 주간 (10편)", "Daily Papers 2024-W42 주간 (10편)"]
    entries = ET.parse(out / "atom.xml").getroot().findall(f"{ATOM}entry")
    assert 10 < len(entries) < FIXTURE_PAPERS  # filled, not emptied
    # The papers the budget left out are in the archives, still each exactly once.
    assert sorted(i for _, ids, _ in _atom_chain(out) for i in ids) == _every_paper()


def test_unchanged_archive_months_are_neither_rendered_nor_rewritten(
    loaded_store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    settings = _capped(tmp_path, feed_days=1, db=loaded_store.path)
    build_site(loaded_store, settings=settings, out_dir=out)
    with LoadCountingStore(loaded_store.path) as store:
        store.loaded = []
        again = build_site(store, settings=settings, out_dir=out)
        assert again.written == ()
        assert store.loaded == ["2024-12-13"]  # the feed window only: no archive month rendered
        (out / "archive/2024-06.atom").write_text("edited by hand", encoding="utf-8")
        store.loaded = []
        third = build_site(store, settings=settings, out_dir=out)
        assert third.written == ("archive/2024-06.atom",)
        assert sorted(store.loaded) == ["2024-06-28", "2024-12-13"]


def _categories(chain: list[tuple[str, list[str], ET.Element]]) -> dict[str, list[str]]:
    return {
        e.findtext(f"{ATOM}id", ""): sorted(c.get("term", "") for c in e.findall(f"{ATOM}category"))
        for _, _, root in chain
        for e in root.findall(f"{ATOM}entry")
    }


def test_archived_entries_keep_their_topic_categories(loaded_store: Store, tmp_path: Path) -> None:
    whole, capped = tmp_path / "whole", tmp_path / "capped"
    build_site(loaded_store, settings=make_settings(tmp_path), out_dir=whole)
    build_site(loaded_store, settings=_capped(tmp_path), out_dir=capped)
    in_archives = {i for _, ids, _ in _atom_chain(capped)[1:] for i in ids}
    archived = {k: v for k, v in _categories(_atom_chain(capped)).items() if k in in_archives}
    # The same entries, with the same categories, as when the main feed holds everything.
    assert archived == {k: v for k, v in _categories(_atom_chain(whole)).items() if k in archived}
    assert sum(1 for v in archived.values() if v) >= 3
