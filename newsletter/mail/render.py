"""Render one selection of papers as the daily email's HTML (Jinja + MJML) and plain text.

Templates lay out what they are given: every label, link and cut is decided here. The
per-subscriber values (`Personal`) are plain strings, so the composer can render a selection
once with placeholders and fill them in per subscriber (escaped for HTML there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import jinja2
from mjml import mjml2html

from ..audience.describe import KOREAN, describe_filters
from ..audience.match import Pick, Reason
from ..audience.weeks import week_name
from ..config import Settings
from ..errors import TemplateError
from ..links import arxiv_url, day_url, web_url
from ..model import Digest, Filters, Paper, Section
from ..templates import get_template
from ..text import clean_text
from .message import NAME_LIMIT

HTML_LIMIT = 100_000  # bytes; Gmail clips HTML past ~102 KB and hides the footer with it
# What the placeholder render may use, leaving room for the longest personal values.
HTML_BUDGET = 94_000
AUTHORS_SHOWN = 5
WEEKDAYS = "월화수목금토일"
MJML_TEMPLATE = "email/digest.mjml"
TEXT_TEMPLATE = "email/digest.txt"


@dataclass(frozen=True, slots=True)
class Personal:
    """What differs between subscribers who share a selection (plain text, not escaped)."""

    greeting: str  # e.g. "홍길동님, 안녕하세요."
    email: str
    unsubscribe_url: str
    preferences_url: str
    feed_url: str


PERSONAL_FIELDS = tuple(f.name for f in fields(Personal))

# A reader whose values have ordinary shapes (an @, dots, a name), unlike a marker's: what
# the checks of split and whole renders compare a template's output with.
SAMPLE_READER = Personal(
    greeting="Ann님, 안녕하세요.",
    email="ann.lee@example.com",
    unsubscribe_url="https://papers.example.com/u/MTc.sample",
    preferences_url="https://papers.example.com/p/MTc.sample",
    feed_url="https://papers.example.com/feeds/0123456789abcdef.xml",
)


@dataclass(frozen=True, slots=True)
class Card:
    """One paper as the templates show it: labels decided, URLs checked."""

    number: str  # "1", "2"... (text: the composer renders cards once with a marker here)
    title: str
    url: str
    votes: str  # "-" when the digest gave no count
    authors: str  # first five, then "외 N명"
    image: str | None  # absolute https thumbnail, or None
    sections: tuple[Section, ...]  # cleaned to one line each
    reasons: tuple[str, ...]  # e.g. "LLM (제목)"


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered selection: subject, preheader, both bodies and how many papers made it in."""

    subject: str
    preheader: str
    html: str
    text: str
    shown: int
    total: int


def greeting_for(name: str) -> str:
    """The opening line, with the subscriber's (cleaned, shortened) name when there is one."""
    name = clean_text(name, limit=NAME_LIMIT)
    return f"{name}님, 안녕하세요." if name else "안녕하세요."


def authors_label(authors: tuple[str, ...]) -> str:
    """Author names: the first five, then "외 N명" for the rest."""
    names = [clean_text(a) for a in authors if clean_text(a)]
    if len(names) <= AUTHORS_SHOWN:
        return ", ".join(names)
    return f"{', '.join(names[:AUTHORS_SHOWN])} 외 {len(names) - AUTHORS_SHOWN}명"


def date_label(date: dt.date) -> str:
    """A Korean date, e.g. "2024년 12월 13일 (금)"."""
    return f"{date.year}년 {date.month}월 {date.day}일 ({WEEKDAYS[date.weekday()]})"


def week_label(monday: dt.date) -> str:
    """The weekly edition's header, e.g. "주간 에디션 · 2025-W09 (2월 24일 ~ 3월 2일)"."""
    sunday = monday + dt.timedelta(days=6)
    span = f"{monday.month}월 {monday.day}일 ~ {sunday.month}월 {sunday.day}일"
    return f"주간 에디션 · {week_name(monday)} ({span})"


def subject_for(*, settings: Settings, date: dt.date, total: int, weekly: bool = False) -> str:
    """The subject line: site title, date (or week) and how many papers were chosen."""
    title = clean_text(settings.site_title)
    if weekly:
        if total == 0:
            return f"{title} 주간 {week_name(date)} · 이번 주는 조건에 맞는 논문이 없습니다"
        return f"{title} 주간 {week_name(date)} · 논문 {total}편"
    if total == 0:
        return f"{title} {date.isoformat()} · 오늘은 조건에 맞는 논문이 없습니다"
    return f"{title} {date.isoformat()} · 논문 {total}편"


def archive_url(*, settings: Settings, date: dt.date) -> str:
    """The day's page in the web archive."""
    return day_url(settings.base_url, date)


@functools.lru_cache(maxsize=4096)
def paper_card(paper: Paper) -> Card:
    """The view of a paper without number and reasons (cached: each paper shows in many emails)."""
    url = web_url(paper.url) or arxiv_url(paper.arxiv_id)
    image = web_url(paper.image) if paper.is_thumbnail else None
    return Card(
        number="",
        title=clean_text(paper.display_title),
        url=url,
        votes="-" if paper.votes is None else str(paper.votes),
        authors=authors_label(paper.authors),
        image=image if image and image.startswith("https://") else None,
        sections=tuple(Section(clean_text(s.name), clean_text(s.text)) for s in paper.sections),
        reasons=(),
    )


def reason_label(reason: Reason) -> str:
    """Why a paper was chosen, as its keyword chip says it, e.g. "LLM (제목)"."""
    field = "제목" if reason.field == "title" else clean_text(reason.field)
    return f"{clean_text(reason.keyword)} ({field})"


def card_for(pick: Pick, *, number: int) -> Card:
    """The template view of one picked paper."""
    return dataclasses.replace(
        paper_card(pick.paper),
        number=str(number),
        reasons=tuple(reason_label(r) for r in pick.reasons),
    )


def preheader_for(*, cards: tuple[Card, ...], total: int) -> str:
    """The inbox preview line (plain text): the top paper and how many more."""
    if not cards:
        return "오늘은 조건에 맞는 논문이 없습니다." if total == 0 else f"오늘의 논문 {total}편"
    first = clean_text(cards[0].title, limit=90)
    return first if total == 1 else f"{first} 외 {total - 1}편"


def render_template(name: str, template_dir: Path | None, context: Mapping[str, object]) -> str:
    """Render one email template; TemplateError if it fails."""
    template = get_template(name, user_dir=template_dir)
    try:
        return template.render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{name}: cannot render: {exc}") from None
    except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
        # A user template's own logic failing on these values ({% if total > "x" %}, a sum
        # with a string): the template's error, said in one line, not a traceback.
        raise TemplateError(f"{name}: cannot render: {type(exc).__name__}: {exc}") from None


def compile_mjml(mjml: str) -> str:
    """MJML to HTML; TemplateError if it does not compile."""
    try:
        # No font imports: the stack falls back to the reader's Korean system fonts.
        return mjml2html(mjml, disable_comments=False, fonts={})
    except Exception as exc:  # mjml-python raises bare exceptions from Rust
        raise TemplateError(f"{MJML_TEMPLATE}: MJML does not compile: {exc}") from None


def day_values(*, settings: Settings, digest: Digest, weekly: bool = False) -> dict[str, object]:
    """What every email of the day (or of the week, dated its Monday) shows alike."""
    site_url = settings.base_url.rstrip("/") + "/"
    return {
        "site_title": clean_text(settings.site_title),
        "site_url": site_url,
        "date": digest.date.isoformat(),
        "date_label": week_label(digest.date) if weekly else date_label(digest.date),
        # A week has no page of its own: the archive's index lists its days.
        "archive_url": site_url if weekly else archive_url(settings=settings, date=digest.date),
        "weekly": weekly,
        "period": "이번 주" if weekly else "오늘",
        "period_topic": "이번 주는" if weekly else "오늘은",
        "archive_label": "아카이브" if weekly else "오늘의 아카이브",
    }


def papers_per_email(*, settings: Settings, max_papers: int | None) -> int:
    """The most paper cards one email shows: the newsletter's cap, or the subscriber's if lower."""
    cap = settings.max_papers_per_email
    return cap if max_papers is None else min(cap, max_papers)


def render_email(
    *,
    settings: Settings,
    digest: Digest,
    picks: tuple[Pick, ...],
    filters: Filters,
    personal: Personal,
    template_dir: Path | None = None,
    limit: int | None = None,
    weekly: bool = False,
) -> RenderedEmail:
    """Render HTML and text for `picks`; at most `limit` cards (default: what fits the budget).

    Without `limit`, the cards are capped at `papers_per_email` and then cut
    further until the HTML stays under HTML_BUDGET bytes; the cut cards are announced with a
    link to the day's archive, and the footer always stays in.
    """
    template_dir = template_dir or settings.template_dir
    total = len(picks)
    cap = papers_per_email(settings=settings, max_papers=filters.max_papers)
    shown = min(total, cap if limit is None else limit)
    all_cards = tuple(card_for(p, number=i) for i, p in enumerate(picks, start=1))
    subject = subject_for(settings=settings, date=digest.date, total=total, weekly=weekly)
    preheader = preheader_for(cards=all_cards, total=total)
    base = {
        **day_values(settings=settings, digest=digest, weekly=weekly),
        "subject": subject,
        "preheader": preheader,
        "total": total,
        "filters": describe_filters(filters, words=KOREAN),
        **{name: getattr(personal, name) for name in PERSONAL_FIELDS},
    }
    while True:
        context = {**base, "papers": all_cards[:shown], "shown": shown, "more": total - shown}
        html = compile_mjml(render_template(MJML_TEMPLATE, template_dir, context))
        size = len(html.encode())
        if limit is not None or size <= HTML_BUDGET or shown == 0:
            break
        # Cards are of similar size: jump close to the fit, then step down one at a time.
        shown = min(shown - 1, shown * HTML_BUDGET // size)
    text = render_template(TEXT_TEMPLATE, template_dir, context)
    return RenderedEmail(
        subject=subject, preheader=preheader, html=html, text=text, shown=shown, total=total
    )
