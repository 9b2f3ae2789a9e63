"""One paper order everywhere: email, day page, every feed and `newsletter match` agree.

Most votes first; unknown votes ("Vote: -") after every known count, zero included; then the
normalised title (full-width "Ａpple" sorts as "apple"), then the arXiv id.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import Settings
from newsletter.digest.parse import parse_digest
from newsletter.mail.compose import Composer
from newsletter.model import Subscriber
from newsletter.publish.build import build_site
from newsletter.store import Store

from .conftest import TEST_KEY

DIGEST = """## Daily Papers (2025-03-03)

### [Alpha](https://arxiv.org/abs/2503.00001)
Vote: -
Authors: Kim Minji
- **What's New**: 알파.

### [Zeta](https://arxiv.org/abs/2503.00002)
Vote: 0
Authors: Kim Minji
- **What's New**: 제타.

### [Beta](https://arxiv.org/abs/2503.00003)
Vote: 5
Authors: Kim Minji
- **What's New**: 베타.

### [Ａpple](https://arxiv.org/abs/2503.00004)
Vote: 5
Authors: Kim Minji
- **What's New**: 사과.
"""
# Written out by hand from the rule above, never computed with the code under test.
EXPECTED = ["Ａpple", "Beta", "Zeta", "Alpha"]
IDS = ["2503.00004", "2503.00003", "2503.00002", "2503.00001"]


def settings(tmp_path: Path) -> Settings:
    return Settings().replace(
        db=tmp_path / "order.db",
        base_url="https://papers.example.com",
        from_address="Daily Papers <digest@papers.example.com>",
        secret_key=TEST_KEY,
        site_dir=tmp_path / "site",
    )


def titles_in(text: str) -> list[str]:
    """The order in which the expected titles first appear in `text`."""
    found = {title: text.find(title) for title in EXPECTED}
    assert all(at >= 0 for at in found.values()), found
    return sorted(found, key=found.__getitem__)


def test_email_page_feeds_and_match_share_one_order(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    digest = parse_digest(DIGEST, source="2025-03-03.md").digest
    with Store(conf.db) as store:
        store.save_digests([(digest, "2025-03-03.md")])
        build_site(store, settings=conf)
        store.add_subscriber("reader@example.com")

    composer = Composer(
        settings=conf, digest=digest, clock=lambda: dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
    )
    built = composer.compose(Subscriber(id=1, email="reader@example.com"))
    assert built is not None
    message = email.message_from_bytes(built.data, policy=email.policy.default)
    text_part, html_part = (p.get_content() for p in message.iter_parts())
    assert titles_in(text_part) == EXPECTED
    assert titles_in(html_part) == EXPECTED

    site = conf.site_dir
    assert titles_in((site / "2025-03-03.html").read_text(encoding="utf-8")) == EXPECTED
    rss = ET.parse(site / "rss.xml").getroot()
    assert [i.findtext("title") for i in rss.iter("item")] == EXPECTED
    atom = ET.parse(site / "atom.xml").getroot()
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert [e.findtext("a:title", namespaces=ns) for e in atom.findall("a:entry", ns)] == EXPECTED
    feed = json.loads((site / "feed.json").read_text(encoding="utf-8"))
    assert [item["title"] for item in feed["items"]] == EXPECTED
    index = (site / "index.html").read_text(encoding="utf-8")  # the day's top three
    shown = {title: index.find(title) for title in EXPECTED[:3]}
    assert sorted(shown, key=shown.__getitem__) == EXPECTED[:3] and min(shown.values()) > 0
    assert "Alpha" not in index

    result = CliRunner().invoke(
        main,
        ["match", "--date", "2025-03-03", "--json", "--db", str(conf.db)],
        env={"NEWSLETTER_SECRET_KEY": TEST_KEY},
    )
    assert result.exit_code == 0, result.output
    assert [p["arxiv_id"] for p in json.loads(result.output)] == IDS


def test_feed_entry_times_follow_the_same_order(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    with Store(conf.db) as store:
        store.save_digests([(parse_digest(DIGEST, source="d.md").digest, "d.md")])
        build_site(store, settings=conf)
    rss = (conf.site_dir / "rss.xml").read_text(encoding="utf-8")
    items = rss.split("<item>")[1:]
    stamps = [re.findall(r"<pubDate>[^<]*(\d\d:\d\d:\d\d) \+0000</pubDate>", i)[0] for i in items]
    # One second per paper voted below it that day: time-sorting readers keep the vote order.
    assert stamps == ["00:00:03", "00:00:02", "00:00:01", "00:00:00"]
