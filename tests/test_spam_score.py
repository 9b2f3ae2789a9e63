"""Every email we send scores at most 0 in SpamAssassin's local rules (Debian `spamassassin`).

The golden emails, an empty day's email, one with the "more" button and the sign-up
confirmation are composed as the .eml bytes we send and run through `spamassassin -L -t`
(-L: local tests only, nothing leaves the machine). A rule with positive points fails the
test by name, so a template change that looks like spam is caught before a mailbox sees it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.mail.compose import Composer
from newsletter.mail.confirmation import confirmation_message
from newsletter.model import Digest, Filters, Subscriber

from .conftest import TEST_KEY
from .test_compose import GOLDEN_EMAILS, PEOPLE, SETTINGS, clock, digests, parse  # noqa: F401

# One line of the report: points, rule name, description (continuations are indented further).
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")
_SCORE = re.compile(r"^X-Spam-Status: \w+, score=(-?\d+(?:\.\d+)?)", re.M)


def spamassassin_report(data: bytes, *, home: Path) -> tuple[float, list[tuple[float, str, str]]]:
    """(score, [(points, rule, description)]) of `spamassassin -L -t` on the message."""
    if shutil.which("spamassassin") is None:
        pytest.skip("needs SpamAssassin (apt-get install spamassassin)")
    # HOME in tmp: spamassassin writes a user_prefs file there on first use.
    env = {**os.environ, "HOME": str(home)}
    done = subprocess.run(
        ["spamassassin", "-L", "-t"],
        input=data,
        capture_output=True,
        env=env,
        check=True,
        timeout=120,
    )
    out = done.stdout.decode("utf-8", "replace")
    score = _SCORE.search(out)
    assert score, f"no X-Spam-Status in spamassassin's output:\n{out[:2000]}"
    _, _, table = out.partition("Content analysis details:")
    table = table.split("\n---- ", 1)[-1]
    rules = []
    for line in table.splitlines()[1:]:
        if not line.strip():
            break
        match = _RULE.match(line)
        if match:
            rules.append((float(match[1]), match[2], match[3]))
    return float(score[1]), rules


def assert_clean(data: bytes, *, home: Path) -> None:
    score, rules = spamassassin_report(data, home=home)
    scoring = [f"{points:+.1f} {rule}: {text}" for points, rule, text in rules if points > 0]
    assert score <= 0 and not scoring, f"spam score {score}:\n" + "\n".join(scoring)


@pytest.mark.parametrize(("name", "day", "person"), GOLDEN_EMAILS, ids=["minji", "alex"])
def test_golden_emails_score_nothing(
    digests: dict[str, Digest],  # noqa: F811
    tmp_path: Path,
    name: str,
    day: str,
    person: Subscriber,
) -> None:
    message = Composer(settings=SETTINGS, digest=digests[day], clock=clock).compose(person)
    assert message is not None
    assert b"\r\nList-Id: " in message.data and b"Content-Type: text/plain;" in message.data
    assert_clean(message.data, home=tmp_path)


@pytest.mark.parametrize(
    ("filters", "more"),
    [(Filters(keywords=("no-such-topic-anywhere",)), False), (Filters(), True)],
    ids=["empty-day", "more-button"],
)
def test_empty_and_long_emails_score_nothing(
    digests: dict[str, Digest],  # noqa: F811
    tmp_path: Path,
    filters: Filters,
    more: bool,
) -> None:
    settings = SETTINGS.replace(send_empty=True, max_papers_per_email=3)
    composer = Composer(settings=settings, digest=digests["2024-06-28"], clock=clock)
    message = composer.compose(replace(PEOPLE[0], filters=filters))
    assert message is not None
    html = parse(message.data).get_body(("html",))
    assert html is not None
    assert ("더 보기" in html.get_content()) == more
    assert b"Content-Type: text/plain;" in message.data
    assert_clean(message.data, home=tmp_path)


@pytest.mark.parametrize(
    "subscriber", [None, Subscriber(id=3, email="new@example.com")], ids=["confirm", "already"]
)
def test_confirmation_email_scores_nothing(tmp_path: Path, subscriber: Subscriber | None) -> None:
    message = confirmation_message(
        settings=SETTINGS,
        key=TEST_KEY.encode(),
        email="new@example.com",
        signup_id=7,
        nonce="n" * 16,
        subscriber=subscriber,
        days=3,
        clock=clock,
    )
    assert b"Content-Type: text/plain;" in message.data
    assert_clean(message.data, home=tmp_path)
