"""`newsletter demo` through the real CLI: what it prints, what it writes, and that a re-run sends none."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "digests"
SUBSCRIBERS = ROOT / "subscribers.example.csv"
NEWEST = "2024-12-13"


def demo(runner: CliRunner, env: dict[str, str], out: Path) -> list[str]:
    args = [
        "demo",
        "--out",
        str(out),
        "--digests",
        str(EXAMPLES),
        "--subscribers",
        str(SUBSCRIBERS),
    ]
    result = runner.invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def line(lines: list[str], start: str) -> str:
    found = [x for x in lines if x.startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


def test_the_demo_runs_the_daily_job_and_a_second_run_sends_none(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "demo-output"
    site, mailbox, previews = out / "site", out / "mailbox", out / "previews"
    with SUBSCRIBERS.open(encoding="utf-8") as f:
        everyone = {row["email"] for row in csv.DictReader(f)}
    assert len(everyone) == 12

    first = demo(runner, cli_env, out)
    assert first[0] == (
        f"Imported subscribers from {SUBSCRIBERS}: 12 added, 0 updated, 0 unchanged, 0 rejected"
    )
    assert first[1] == (
        f"Into {out / 'newsletter.db'}: ingested 3 files: 3 added, 0 updated, 0 unchanged, 0 failed"
    )
    assert [x.split()[0] for x in first[2:5]] == [NEWEST, "2024-10-16", "2024-06-28"]
    built = re.fullmatch(
        rf"Built the site in {re.escape(str(site))}/: (\d+) files written, 0 unchanged",
        first[5],
    )
    assert built is not None
    assert first[6] == f"  archive: {site / 'index.html'} (open it in a browser)"
    # The demo configures no topics, so no topics/ folder is promised.
    assert first[7] == f"  feeds:   {site}/rss.xml, atom.xml, feed.json, digests.xml"
    assert not (site / "topics").exists()
    assert first[8] == "  private: each email links its own feed, served by `newsletter serve`"
    sent = line(first, "Sent over SMTP to an embedded server on 127.0.0.1:")
    assert sent.endswith(f": {NEWEST}: sent 10, skipped 2, deferred 0, failed 0, ambiguous 0")
    assert line(first, "  10 messages landed in") == (
        f"  10 messages landed in {mailbox}/ (one .eml each; a re-run sends none)"
    )
    assert line(first, "Wrote ") == (
        f"Wrote 10 email previews for {NEWEST} (.html, .txt, .eml) to {previews}/"
    )
    # The key came from the environment, so the hint must not print it.
    assert line(first, "  newsletter serve").startswith(
        f"  newsletter serve --db {out / 'newsletter.db'} --site {site}   (then open http"
    )
    assert not any(cli_env["NEWSLETTER_SECRET_KEY"] in x for x in first)

    # What it wrote: the site, one .eml per message received, three files per preview.
    assert (site / "index.html").is_file() and (site / f"{NEWEST}.html").is_file()
    assert (site / "rss.xml").is_file() and (site / "feed.json").is_file()
    assert not (site / "feeds").exists()  # private feeds are served, never written
    files = sorted(mailbox.glob("*.eml"))
    assert len(files) == 10
    for suffix in (".html", ".txt", ".eml"):
        assert len(list(previews.glob(f"*{suffix}"))) == 10
    # Messages arrive in any order over several connections: check every file.
    heads = [f.read_bytes().split(b"\r\n")[:2] for f in files]
    # The return path carries each reader's VERP token: bounces+ID-DAY-TAG@localhost.
    assert all(
        re.fullmatch(rb"Return-Path: <bounces\+\d+-20241213-[0-9a-f]{20}@localhost>", h[0])
        for h in heads
    )
    assert len({h[0] for h in heads}) == len(heads)
    delivered = {h[1].removeprefix(b"Delivered-To: ").decode() for h in heads}
    # Exactly the subscribers the demo says get at least one paper were mailed, once each.
    matched = {
        x.split()[0]
        for x in first
        if re.fullmatch(r"  \S+@\S+ +\d+ of \d+ papers .*", x) and " 0 of " not in x
    }
    assert delivered == matched and len(matched) == 10 and matched <= everyone

    again = demo(runner, cli_env, out)
    assert again[1].endswith("ingested 3 files: 0 added, 0 updated, 3 unchanged, 0 failed")
    assert again[5] == f"Built the site in {site}/: 0 files written, {built.group(1)} unchanged"
    resent = line(again, "Sent over SMTP")
    assert resent.endswith(
        f"{NEWEST}: sent 0, skipped 2, deferred 0, failed 0, ambiguous 0 "
        "(earlier runs: 10 sent, 0 failed)"
    )
    assert line(again, "  0 messages landed in").startswith(f"  0 messages landed in {mailbox}/")
    assert len(list(mailbox.glob("*.eml"))) == 10


def test_the_demo_says_when_the_search_index_failed(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    # A file where Pagefind must write its new index makes the real pagefind fail.
    (out / "site").mkdir(parents=True)
    (out / "site" / ".pagefind.new").write_text("in the way")
    lines = demo(runner, cli_env, out)
    warning = line(lines, "warning: search index not rebuilt: ")
    assert "pagefind failed" in warning
    assert line(lines, "Sent over SMTP").endswith(
        "sent 10, skipped 2, deferred 0, failed 0, ambiguous 0"
    )
