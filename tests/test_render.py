"""Rendering a selection: what each card shows, escaping, size cap, templates and golden files."""

from __future__ import annotations

import dataclasses
import datetime as dt
from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.audience.match import Pick, Reason, select_papers
from newsletter.config import Settings
from newsletter.digest.parse import parse_digest
from newsletter.errors import TemplateError
from newsletter.mail.render import (
    HTML_LIMIT,
    Personal,
    RenderedEmail,
    authors_label,
    greeting_for,
    papers_per_email,
    render_email,
)
from newsletter.model import Digest, Filters, Section

from .conftest import FIXTURES, TEST_KEY

EVERYTHING = Filters()
SETTINGS = Settings().replace(base_url="https://papers.example.com", secret_key=TEST_KEY)
PERSONAL = Personal(
    greeting=greeting_for("김민지"),
    email="minji@example.com",
    unsubscribe_url="https://papers.example.com/u/UNSUB",
    preferences_url="https://papers.example.com/p/PREFS",
    feed_url="https://papers.example.com/feeds/FEED.xml",
)


def digest(day: str) -> Digest:
    path = FIXTURES / f"{day}.md"
    return parse_digest(path.read_text(encoding="utf-8"), source=path.name).digest


class Tags(HTMLParser):
    """Every start tag with its attributes, and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def tags(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def render(
    d: Digest,
    profile: Filters = EVERYTHING,
    *,
    settings: Settings = SETTINGS,
    template_dir: Path | None = None,
) -> RenderedEmail:
    return render_email(
        settings=settings,
        digest=d,
        picks=select_papers(d, profile),
        filters=profile,
        personal=PERSONAL,
        template_dir=template_dir,
    )


def test_authors_are_shortened_after_five() -> None:
    assert authors_label(("A", "B")) == "A, B"
    assert authors_label(tuple("ABCDE")) == "A, B, C, D, E"
    assert authors_label(tuple("ABCDEFGH")) == "A, B, C, D, E 외 3명"


def test_greeting_uses_a_clean_name() -> None:
    assert greeting_for("") == "안녕하세요."
    assert greeting_for("  김민지\r\nBcc: x ") == "김민지 Bcc: x님, 안녕하세요."


def test_largest_digest_stays_under_the_clip_with_the_footer_and_a_more_link() -> None:
    d = digest("2024-12-13")
    assert len(d.papers) == 27
    for cap in (SETTINGS.max_papers_per_email, 1000):
        result = render(d, settings=SETTINGS.replace(max_papers_per_email=cap))
        size = len(result.html.encode())
        assert size < HTML_LIMIT, (cap, size)
        assert 0 < result.shown < result.total == 27
        more = 27 - result.shown
        html = result.html
        assert f"오늘의 아카이브에서 논문 {more}편 더 보기" in html
        assert f"오늘의 아카이브에서 논문 {more}편 더 보기" in result.text
        # The unsubscribe link is in what is sent, after the last card.
        assert html.rindex("https://papers.example.com/u/UNSUB") > html.rindex("<h2")
        assert 'href="https://papers.example.com/2024-12-13.html"' in html


def test_the_cap_setting_limits_cards() -> None:
    result = render(digest("2024-10-16"), settings=SETTINGS.replace(max_papers_per_email=3))
    assert (result.shown, result.total) == (3, 18)
    assert [t for t, _ in tags(result.html).tags].count("h2") == 3
    assert "오늘의 아카이브에서 논문 15편 더 보기" in result.html


@pytest.mark.parametrize(
    ("newsletter", "subscriber", "cap"), [(20, None, 20), (20, 4, 4), (3, 10, 3), (5, 5, 5)]
)
def test_papers_per_email_is_the_lower_of_both_caps(
    newsletter: int, subscriber: int | None, cap: int
) -> None:
    # The preferences preview announces this cap; the email must keep to the same one.
    settings = SETTINGS.replace(max_papers_per_email=newsletter)
    assert papers_per_email(settings=settings, max_papers=subscriber) == cap


def test_every_card_shows_title_link_votes_authors_sections_and_reason() -> None:
    d = digest("2024-12-13")
    profile = Filters(keywords=("LLM",))
    picks = select_papers(d, profile)
    result = render(d, profile)
    html, text = result.html, result.text
    parsed = tags(html)
    links = [a["href"] for t, a in parsed.tags if t == "a"]
    for pick in picks:
        paper = pick.paper
        assert paper.url in links
        assert paper.display_title in html.replace("&#39;", "'")
        assert f"추천 {paper.votes}" in text
        for section in paper.sections:
            assert section.name.replace("'", "&#39;") in html
    assert "키워드 LLM (제목)" in html and "키워드 LLM (제목)" in text
    imgs = [a for t, a in parsed.tags if t == "img"]
    assert imgs and all(a.get("alt") for a in imgs)
    assert all(str(a["src"]).startswith("https://") for a in imgs)
    titles = {p.paper.display_title for p in picks}
    assert {a["alt"] for a in imgs} <= titles


def test_unknown_votes_avatars_and_headers() -> None:
    base = digest("2024-06-28").papers[0]
    papers = (
        dataclasses.replace(
            base,
            arxiv_id="1",
            votes=None,
            is_thumbnail=False,
            image="https://huggingface.co/avatars/a.svg",
        ),
        dataclasses.replace(base, arxiv_id="2", votes=3, image="http://insecure.example/x.png"),
    )
    d = Digest(date=dt.date(2024, 6, 28), papers=papers)
    result = render(d)
    assert "추천 -" in result.html and "추천 -" in result.text
    assert not [a for t, a in tags(result.html).tags if t == "img"]
    assert result.subject == "Daily Papers 2024-06-28 · 논문 2편"
    assert "2024년 6월 28일 (금)" in result.html
    assert result.preheader.endswith("외 1편")


def test_head_has_preheader_color_scheme_korean_fonts_and_no_web_fonts() -> None:
    result = render(digest("2024-06-28"))
    html = result.html
    assert '<meta name="color-scheme" content="light dark" />' in html
    assert "prefers-color-scheme: dark" in html
    assert "'Apple SD Gothic Neo', 'Malgun Gothic', 'Noto Sans KR'" in html
    assert "fonts.googleapis" not in html and "@import" not in html and "<link" not in html
    assert f">{result.preheader}</div>" in html
    assert '<html lang="ko"' in html


def test_hostile_paper_text_is_escaped_in_html_and_flattened_in_text() -> None:
    base = digest("2024-06-28").papers[0]
    evil = dataclasses.replace(
        base,
        display_title='<script>alert(1)</script> & "quotes"\r\nBcc: x@y',
        url="javascript:alert(1)",
        authors=("<b>Mallory</b>",),
        sections=(Section("What's New", "<img src=x onerror=alert(1)> 그리고 & 등"),),
        image='https://x.example/a.png" onerror="alert(1)',
    )
    d = Digest(date=dt.date(2024, 6, 28), papers=(evil,))
    picks = (Pick(evil, (Reason("<i>kw</i>", "title"),)),)
    result = render_email(
        settings=SETTINGS, digest=d, picks=picks, filters=Filters(), personal=PERSONAL
    )
    html = result.html
    assert "<script>" not in html and "<img src=x" not in html and "<b>Mallory" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34; Bcc: x@y" in html
    assert "&lt;i&gt;kw&lt;/i&gt;" in html
    assert "javascript:" not in html
    assert 'href="https://arxiv.org/abs/' in html
    for tag, attrs in tags(html).tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    assert '<script>alert(1)</script> & "quotes" Bcc: x@y' in result.text
    assert "\r" not in result.text and "\nBcc:" not in result.text
    assert "\r" not in result.subject and "\n" not in result.preheader


def test_empty_selection_says_so() -> None:
    result = render_email(
        settings=SETTINGS,
        digest=digest("2024-06-28"),
        picks=(),
        filters=Filters(keywords=("no such thing",)),
        personal=PERSONAL,
    )
    assert result.total == result.shown == 0
    assert "오늘은 조건에 맞는 논문이 없습니다" in result.html
    assert "오늘은 조건에 맞는 논문이 없습니다" in result.subject
    assert "받는 조건: 키워드 no such thing" in result.text


def test_footer_describes_filters_and_links() -> None:
    profile = Filters(keywords=("LLM", "추론"), exclude=("survey",), min_votes=5, max_papers=4)
    result = render(digest("2024-12-13"), profile)
    text = result.text
    assert "받는 조건: 키워드 LLM, 추론 · 제외 survey · 추천 5 이상 · 하루 최대 4편" in text
    for url in ("/u/UNSUB", "/p/PREFS", "/feeds/FEED.xml", "/2024-12-13.html"):
        assert f"https://papers.example.com{url}" in text
        assert f'href="https://papers.example.com{url}"' in result.html
    assert "minji@example.com" in text


def test_user_templates_override_and_undefined_names_fail(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.txt").write_text("Custom {{ total }} {{ greeting }}\n")
    result = render(digest("2024-06-28"), template_dir=tmp_path)
    assert result.text == "Custom 9 김민지님, 안녕하세요.\n"
    assert "<mjml" not in result.html and "<!doctype html>" in result.html

    (tmp_path / "email" / "digest.txt").write_text("{{ no_such_name }}\n")
    with pytest.raises(TemplateError, match="no_such_name"):
        render(digest("2024-06-28"), template_dir=tmp_path)

    broken = tmp_path / "broken"
    (broken / "email").mkdir(parents=True)
    (broken / "email" / "digest.mjml").write_text("<mjml><mj-body><mj-section></mjml>")
    with pytest.raises(TemplateError, match="MJML does not compile"):
        render(digest("2024-06-28"), template_dir=broken)
