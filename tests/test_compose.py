"""The composer: fast-path messages read exactly like the stdlib's, meet every header rule, and
arrive intact over real SMTP; golden files; the preview command."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import smtplib
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import Settings
from newsletter.digest.ingest import ingest_paths
from newsletter.errors import ConfigError, SubscriberError
from newsletter.mail.compose import Composer, compose_naive
from newsletter.mail.render import HTML_LIMIT
from newsletter.model import Digest, Filters, Subscriber
from newsletter.store import Store
from newsletter.tokens import feed_token, read_bounce_token, read_subscriber_token

from .conftest import DIGESTS, FIXTURES, PINNED_NOW, TEST_KEY
from .smtp_servers import RecordingHandler, smtp_server

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = Settings().replace(
    base_url="https://papers.example.com",
    from_address="Daily Papers <digest@papers.example.com>",
    reply_to="editor@papers.example.com",
    envelope_from="bounces@papers.example.com",
    list_id="daily-papers.papers.example.com",
    unsubscribe_mailto="unsubscribe@papers.example.com",
    secret_key=TEST_KEY,
)
HOSTILE = "<script>alert(1)</script> & \"Q\" 'x'\r\nBcc: evil@example.com"
PEOPLE = [
    Subscriber(id=1, email="all@example.com", name=""),
    Subscriber(
        id=2,
        email="minji.kim@example.com",
        name="김민지",
        filters=Filters(keywords=("RAG", "멀티모달")),
    ),
    Subscriber(
        id=3,
        email="alex@example.org",
        name="Alex Chen",
        filters=Filters(keywords=("LLM",), min_votes=5),
    ),
    Subscriber(
        id=4,
        email="evil@example.net",
        name=HOSTILE,
        filters=Filters(keywords=("diffusion", "video")),
    ),
    Subscriber(
        id=5,
        email="cap@example.com",
        name="O'Neil, Jr.",
        filters=Filters(max_papers=2, exclude=("LLM",)),
    ),
]


def clock() -> dt.datetime:
    return PINNED_NOW


@pytest.fixture(scope="module")
def digests() -> dict[str, Digest]:
    with Store(":memory:") as store:
        assert not ingest_paths(store, DIGESTS).failed
        return {d.date.isoformat(): d for d in store.digests(store.digest_dates())}


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def reading(data: bytes) -> dict[str, Any]:
    """What a mail client sees: decoded headers, part types, charsets and decoded bodies."""
    msg = parse(data)
    headers: dict[str, Any] = {}
    for name, value in msg.items():
        if name == "To":
            headers[name] = [(a.display_name, a.addr_spec) for a in value.addresses]
        elif name != "Content-Type":
            headers[name] = str(value)
    parts = [
        (p.get_content_type(), p.get_content_charset(), p["Content-Transfer-Encoding"])
        for p in msg.iter_parts()
    ]
    bodies = [p.get_content() for p in msg.iter_parts()]
    defects = [*msg.defects, *(d for p in msg.iter_parts() for d in p.defects)]
    return {
        "headers": headers,
        "type": msg.get_content_type(),
        "parts": parts,
        "bodies": bodies,
        "defects": defects,
    }


@pytest.mark.parametrize("day", ["2024-06-28", "2024-10-16", "2024-12-13"])
@pytest.mark.parametrize("person", PEOPLE, ids=lambda p: p.email)
def test_fast_path_reads_exactly_like_the_stdlib_build(
    digests: dict[str, Digest], day: str, person: Subscriber
) -> None:
    composer = Composer(
        settings=SETTINGS.replace(send_empty=True), digest=digests[day], clock=clock
    )
    fast = composer.compose(person)
    assert fast is not None
    rendered = composer.rendered_for(person)
    assert rendered is not None
    slow = compose_naive(
        settings=SETTINGS.replace(send_empty=True),
        digest=digests[day],
        subscriber=person,
        clock=clock,
        limit=rendered.shown,
    )
    assert slow is not None
    assert reading(fast.data) == reading(slow.data)
    assert (fast.message_id, fast.recipient, fast.envelope_from) == (
        slow.message_id,
        slow.recipient,
        slow.envelope_from,
    )


def test_with_verp_off_every_email_returns_to_envelope_from_itself(
    digests: dict[str, Digest],
) -> None:
    settings = SETTINGS.replace(verp=False)
    composer = Composer(settings=settings, digest=digests["2024-12-13"], clock=clock)
    naive = compose_naive(
        settings=settings, digest=digests["2024-12-13"], subscriber=PEOPLE[0], clock=clock
    )
    sent = [composer.compose(person) for person in PEOPLE[:3]]
    assert naive is not None and all(message is not None for message in sent)
    assert (
        {m.envelope_from for m in sent if m}
        == {naive.envelope_from}
        == {"bounces@papers.example.com"}
    )


def test_largest_digest_message_meets_every_rule(digests: dict[str, Digest]) -> None:
    person = PEOPLE[0]  # no keywords: every one of the 27 papers
    message = Composer(settings=SETTINGS, digest=digests["2024-12-13"], clock=clock).compose(person)
    assert message is not None
    holders = {person.id: person}  # the store, for the tokens: who has this id
    data = message.data
    # Wire format: CRLF only, no line over 998 bytes, ASCII headers.
    lines = data.split(b"\r\n")
    assert lines[-1] == b"" and all(b"\n" not in line and b"\r" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    msg = parse(data)
    assert msg["From"] == "Daily Papers <digest@papers.example.com>"
    assert msg["Reply-To"] == "editor@papers.example.com"
    assert msg["To"] == "all@example.com" and msg["Bcc"] is None and msg["Cc"] is None
    assert msg["Subject"] == "Daily Papers 2024-12-13 · 논문 27편"
    assert "=?utf-8?" in head.split("Subject:", 1)[1].split("\r\n", 1)[0]
    assert msg["Date"] == "Fri, 13 Dec 2024 09:00:00 +0000"
    # VERP: the return path names subscriber and day with a token only our key makes; the
    # Message-ID carries the same tag, so a complaint quoting only it is checked alike.
    local, _, domain = message.envelope_from.partition("@")
    assert domain == "papers.example.com" and local.startswith("bounces+1-20241213-")
    tag = local.removeprefix("bounces+1-20241213-")
    assert re.fullmatch("[0-9a-f]{20}", tag)
    assert msg["Message-ID"] == f"<digest.2024-12-13.1.{tag}@papers.example.com>"
    assert message.message_id == f"digest.2024-12-13.1.{tag}@papers.example.com"
    assert read_bounce_token(
        local.removeprefix("bounces+"), key=TEST_KEY.encode(), find=holders.get
    ) == (holders[1], dt.date(2024, 12, 13))
    assert msg["Feedback-ID"] == "20241213:digest:daily-papers.papers.example.com"
    assert msg["List-Id"] == "Daily Papers <daily-papers.papers.example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.search(r"List-Unsubscribe: (.*?)\r\n(?! )", head, re.S)
    assert unsubscribe is not None and "=?" not in unsubscribe.group(1)
    https, mailto = re.findall(r"<([^>]*)>", unsubscribe.group(1))
    assert https.startswith("https://papers.example.com/u/") and len(https) <= 70
    assert mailto == "mailto:unsubscribe@papers.example.com?subject=unsubscribe"
    unsubscribe_token = https.rsplit("/", 1)[1]
    assert (
        read_subscriber_token(
            unsubscribe_token, purpose="unsubscribe", key=TEST_KEY.encode(), find=holders.get
        )
        == holders[1]
    )
    # Parts: text first, HTML last, UTF-8; the HTML stays under Gmail's clip.
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = msg.iter_parts()
    assert (text_part.get_content_type(), html_part.get_content_type()) == (
        "text/plain",
        "text/html",
    )
    assert text_part.get_content_charset() == html_part.get_content_charset() == "utf-8"
    html = html_part.get_content()
    assert len(html.encode()) < HTML_LIMIT
    assert f'href="{https}"' in html and https in text_part.get_content()
    prefs = re.search(r'href="https://papers\.example\.com/p/([^"]+)"', html)
    assert prefs
    assert (
        read_subscriber_token(
            prefs.group(1), purpose="preferences", key=TEST_KEY.encode(), find=holders.get
        )
        == holders[1]
    )
    feed = feed_token(1, email=holders[1].email, key=TEST_KEY.encode())
    assert f"/feeds/{feed}.xml" in html
    assert "오늘의 아카이브에서 논문 7편 더 보기" in html


def test_hostile_name_is_escaped_in_html_text_and_headers(digests: dict[str, Digest]) -> None:
    evil = PEOPLE[3]
    message = Composer(settings=SETTINGS, digest=digests["2024-12-13"], clock=clock).compose(evil)
    assert message is not None
    msg = parse(message.data)
    assert msg["Bcc"] is None and b"\r\nBcc:" not in message.data
    (to,) = msg["To"].addresses
    assert to.addr_spec == "evil@example.net"
    assert to.display_name == "<script>alert(1)</script> & \"Q\" 'x' Bcc: evil@example.com"
    text_part, html_part = msg.iter_parts()
    html = html_part.get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;Q&#34; &#39;x&#39; Bcc" in html
    assert (
        "<script>alert(1)</script> & \"Q\" 'x' Bcc: evil@example.com님" in text_part.get_content()
    )


def test_resend_is_byte_identical_and_recognisable(digests: dict[str, Digest]) -> None:
    person = PEOPLE[1]
    first = Composer(settings=SETTINGS, digest=digests["2024-12-13"], clock=clock).compose(person)
    again = Composer(settings=SETTINGS, digest=digests["2024-12-13"], clock=clock).compose(person)
    assert first is not None and again is not None
    assert first.data == again.data and first.message_id == again.message_id
    other_day = Composer(settings=SETTINGS, digest=digests["2024-10-16"], clock=clock)
    later = other_day.compose(PEOPLE[0])
    assert later is not None and re.fullmatch(
        r"digest\.2024-10-16\.1\.[0-9a-f]{20}@papers\.example\.com", later.message_id
    )
    assert later.message_id.split("@")[0].rsplit(".", 1)[1] in later.envelope_from


def test_date_follows_the_clock(digests: dict[str, Digest]) -> None:
    now = [dt.datetime(2024, 12, 13, 18, 30, tzinfo=dt.timezone(dt.timedelta(hours=9)))]
    composer = Composer(settings=SETTINGS, digest=digests["2024-06-28"], clock=lambda: now[0])
    first = composer.compose(PEOPLE[0])
    now[0] = dt.datetime(2024, 12, 13, 9, 31, tzinfo=dt.UTC)
    second = composer.compose(PEOPLE[0])
    assert first is not None and second is not None
    assert parse(first.data)["Date"] == "Fri, 13 Dec 2024 09:30:00 +0000"
    assert parse(second.data)["Date"] == "Fri, 13 Dec 2024 09:31:00 +0000"


def test_empty_selection_is_skipped_unless_send_empty(digests: dict[str, Digest]) -> None:
    nobody = Subscriber(
        id=9, email="n@example.com", filters=Filters(keywords=("no paper says this",))
    )
    composer = Composer(settings=SETTINGS, digest=digests["2024-06-28"], clock=clock)
    assert composer.selection_for(nobody) == ()
    assert composer.compose(nobody) is None
    eager = Composer(
        settings=SETTINGS.replace(send_empty=True), digest=digests["2024-06-28"], clock=clock
    )
    message = eager.compose(nobody)
    assert message is not None
    assert "오늘은 조건에 맞는 논문이 없습니다" in parse(message.data)["Subject"]


def test_selection_and_cache_eviction_keep_messages_right(digests: dict[str, Digest]) -> None:
    day = digests["2024-12-13"]
    roomy = Composer(settings=SETTINGS, digest=day, clock=clock)
    tight = Composer(settings=SETTINGS, digest=day, clock=clock, cache_bytes=1)
    assert [p.paper.arxiv_id for p in roomy.selection_for(PEOPLE[4])] == [
        p.paper.arxiv_id for p in tight.selection_for(PEOPLE[4])
    ]
    assert len(roomy.selection_for(PEOPLE[4])) == 2
    for person in [*PEOPLE, *PEOPLE]:
        a, b = roomy.compose(person), tight.compose(person)
        assert a is not None and b is not None
        assert reading(a.data) == reading(b.data)


def test_unusable_settings_and_addresses_are_refused(digests: dict[str, Digest]) -> None:
    day = digests["2024-06-28"]
    with pytest.raises(ConfigError, match="70 characters"):
        Composer(
            settings=SETTINGS.replace(base_url="https://" + "n" * 40 + ".example.com"),
            digest=day,
            clock=clock,
        )
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        Composer(settings=Settings(), digest=day, clock=clock)
    composer = Composer(settings=SETTINGS, digest=day, clock=clock)
    with pytest.raises(SubscriberError):
        composer.compose(Subscriber(id=7, email="x@example.com\r\nBcc: y@example.com"))


def test_message_arrives_intact_over_real_smtp(digests: dict[str, Digest]) -> None:
    message = Composer(settings=SETTINGS, digest=digests["2024-12-13"], clock=clock).compose(
        PEOPLE[1]
    )
    assert message is not None
    with (
        smtp_server(RecordingHandler()) as (controller, handler),
        smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client,
    ):
        client.sendmail(message.envelope_from, [message.recipient], message.data)
    (received,) = handler.received
    assert received.mail_from == message.envelope_from
    assert received.mail_from.startswith("bounces+2-20241213-")
    assert received.rcpt_tos == ["minji.kim@example.com"]
    assert reading(received.data) == reading(message.data)
    assert received.message["To"].addresses[0].display_name == "김민지"


def normalised(data: bytes) -> str:
    """The message with boundaries replaced and each part's body decoded, for golden files."""
    msg = parse(data)
    boundary = msg.get_boundary()
    assert boundary
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii").replace(boundary, "BOUNDARY")
    parts = []
    for part in msg.iter_parts():
        body = part.get_content().replace("\r\n", "\n")
        parts.append(f"--- {part.get_content_type()} ({part.get_content_charset()}) ---\n{body}")
    return head.replace("\r\n", "\n") + "\n\n" + "\n".join(parts)


# (golden file, day, subscriber): the emails kept as golden files (and spam-scored).
GOLDEN_EMAILS = [
    (
        "email-2024-06-28-minji",
        "2024-06-28",
        replace(PEOPLE[1], filters=Filters(keywords=("LLM", "RAG"))),
    ),
    ("email-2024-10-16-alex", "2024-10-16", PEOPLE[2]),
]


@pytest.mark.parametrize(("name", "day", "person"), GOLDEN_EMAILS, ids=["minji", "alex"])
def test_golden_messages(
    digests: dict[str, Digest],
    request: pytest.FixtureRequest,
    name: str,
    day: str,
    person: Subscriber,
) -> None:
    message = Composer(settings=SETTINGS, digest=digests[day], clock=clock).compose(person)
    assert message is not None
    got = normalised(message.data)
    golden = GOLDEN / f"{name}.txt"
    if request.config.getoption("--update-golden"):
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")


@pytest.fixture
def cli_store(cli_env: dict[str, str]) -> Path:
    db = Path(cli_env["NEWSLETTER_DB"])
    with Store(db) as store:
        assert not ingest_paths(store, DIGESTS).failed
        store.add_subscriber(
            "minji.kim@example.com", name="김민지", filters=Filters(keywords=("RAG", "멀티모달"))
        )
        store.add_subscriber("alex@example.org", name="Alex", filters=Filters(keywords=("LLM",)))
        store.add_subscriber("none@example.org", filters=Filters(keywords=("no paper says this",)))
        store.add_subscriber("gone@example.org", status="unsubscribed")
    return db


def test_preview_writes_html_text_and_eml(
    runner: CliRunner, cli_env: dict[str, str], cli_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "previews"
    result = runner.invoke(
        main,
        ["preview", "--date", "2024-12-13", "--email", "alex@example.org", "--out", str(out)],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output
    stem = out / "2024-12-13_alex@example.org"
    eml = parse(stem.with_name(stem.name + ".eml").read_bytes())
    _, html_part = eml.iter_parts()
    html = stem.with_name(stem.name + ".html").read_text(encoding="utf-8")
    assert html == html_part.get_content().replace("\r\n", "\n")
    assert "Alex님, 안녕하세요." in stem.with_name(stem.name + ".txt").read_text(encoding="utf-8")
    assert "2024-12-13_alex@example.org.html" in result.output


def test_preview_all_and_errors(
    runner: CliRunner, cli_env: dict[str, str], cli_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "all"
    result = runner.invoke(main, ["preview", "--all", "--out", str(out)], env=cli_env)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.eml")) == [
        "2024-12-13_alex@example.org.eml",
        "2024-12-13_minji.kim@example.com.eml",
    ]
    assert "none@example.org: no matching papers" in result.output
    assert "2 previews of 3 subscribers" in result.output
    for args, message in [
        (["preview"], "give either --email ADDRESS or --all"),
        (["preview", "--email", "who@example.com"], "no subscriber who@example.com"),
        (["preview", "--all", "--date", "2020-01-01"], "no digest stored for 2020-01-01"),
    ]:
        failed = runner.invoke(main, args, env=cli_env)
        assert failed.exit_code == 1
        assert failed.output.strip().splitlines() == [
            f"error: {failed.output.split('error: ', 1)[1].strip()}"
        ]
        assert message in failed.output
    no_key = {k: v for k, v in cli_env.items() if k != "NEWSLETTER_SECRET_KEY"}
    failed = runner.invoke(main, ["preview", "--all"], env={**no_key, "NEWSLETTER_SECRET_KEY": ""})
    assert failed.exit_code == 1 and "NEWSLETTER_SECRET_KEY" in failed.output


def test_a_noncharacter_in_a_paper_does_not_stop_the_days_email(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # mjml-python stops at U+FFFE/U+FFFF: one such character failed every email of the day.
    text = (FIXTURES / "2024-06-28.md").read_text(encoding="utf-8")
    title = "Step-DPO: Step-wise Preference Optimization"
    assert title in text
    text = text.replace(title, "Step-DPO\ufffe: Step-wise Preference Optimization")
    text = text.replace("What's New**:", "What's New**: \uffff\ufdd0", 1)
    digest = tmp_path / "2024-06-28.md"
    digest.write_text(text, encoding="utf-8")
    with Store(Path(cli_env["NEWSLETTER_DB"])) as store:
        assert not ingest_paths(store, [digest]).failed
        store.add_subscriber("reader@example.org")
    out = tmp_path / "previews"
    result = runner.invoke(main, ["preview", "--all", "--out", str(out)], env=cli_env)
    assert result.exit_code == 0, result.output
    html = (out / "2024-06-28_reader@example.org.html").read_text(encoding="utf-8")
    assert "Step-DPO: Step-wise Preference Optimization" in html
    assert not {"\ufffe", "\uffff", "\ufdd0"} & set(html)
