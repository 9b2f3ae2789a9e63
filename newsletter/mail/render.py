"""Render one selection of papers as the daily email's HTML (Jinja + MJML) and plain text.

Templates lay out what they are given: every label, link and cut is decided here. The
per-subscriber values (`Personal`) are plain strings, so the composer can render a selection
once with placeholders and fill them in per subscriber (escaped for HTML there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import quote, urlsplit

import jinja2
from mjml import mjml2html

from ..audience.match import Pick, Profile
from ..config import Settings
from ..errors import TemplateError
from ..model import Digest, Paper
from ..templates import get_template
from .message import NAME_LIMIT, clean_text

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


@dataclass(frozen=True, slots=True)
class SectionView:
    """A summary section as the templates show it."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Card:
    """One paper as the templates show it: labels decided, URLs checked."""

    number: int
    title: str
    url: str
    votes: str  # "-" when the digest gave no count
    authors: str  # first five, then "외 N명"
    image: str | None  # absolute https thumbnail, or None
    sections: tuple[SectionView, ...]
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


def subject_for(*, settings: Settings, date: dt.date, total: int) -> str:
    """The subject line: site title, date and how many papers were chosen."""
    title = clean_text(settings.site_title)
    if total == 0:
        return f"{title} {date.isoformat()} · 오늘은 조건에 맞는 논문이 없습니다"
    return f"{title} {date.isoformat()} · 논문 {total}편"


def archive_url(*, settings: Settings, date: dt.date) -> str:
    """The day's page in the web archive."""
    return f"{settings.base_url.rstrip('/')}/{date.isoformat()}.html"


def filters_description(profile: Profile) -> tuple[str, ...]:
    """The subscriber's filters in words, for the footer."""
    keywords = [clean_text(k) for k in profile.keywords if clean_text(k)]
    exclude = [clean_text(k) for k in profile.exclude if clean_text(k)]
    parts = [f"키워드 {', '.join(keywords)}" if keywords else "모든 논문"]
    if exclude:
        parts.append(f"제외 {', '.join(exclude)}")
    if profile.min_votes > 0:
        parts.append(f"추천 {profile.min_votes} 이상")
    if profile.max_papers is not None:
        parts.append(f"하루 최대 {profile.max_papers}편")
    return tuple(parts)


def _web_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL without spaces, else None."""
    if not url or any(c.isspace() for c in url):
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


@functools.lru_cache(maxsize=4096)
def _paper_card(paper: Paper) -> Card:
    """The view of a paper without number and reasons (cached: each paper shows in many emails)."""
    url = _web_url(paper.url) or f"https://arxiv.org/abs/{quote(paper.arxiv_id, safe='./')}"
    image = _web_url(paper.image) if paper.is_thumbnail else None
    return Card(
        number=0,
        title=clean_text(paper.display_title),
        url=url,
        votes="-" if paper.votes is None else str(paper.votes),
        authors=authors_label(paper.authors),
        image=image if image and image.startswith("https://") else None,
        sections=tuple(SectionView(clean_text(s.name), clean_text(s.text)) for s in paper.sections),
        reasons=(),
    )


def card_for(pick: Pick, *, number: int) -> Card:
    """The template view of one picked paper."""
    return dataclasses.replace(
        _paper_card(pick.paper),
        number=number,
        reasons=tuple(
            f"{clean_text(r.keyword)} ({'제목' if r.field == 'title' else clean_text(r.field)})"
            for r in pick.reasons
        ),
    )


def preheader_for(*, cards: tuple[Card, ...], total: int) -> str:
    """The inbox preview line (plain text): the top paper and how many more."""
    if not cards:
        return "오늘은 조건에 맞는 논문이 없습니다." if total == 0 else f"오늘의 논문 {total}편"
    first = clean_text(cards[0].title, limit=90)
    return first if total == 1 else f"{first} 외 {total - 1}편"


def _render(name: str, template_dir: Path | None, context: dict[str, object]) -> str:
    template = get_template(name, user_dir=template_dir)
    try:
        return template.render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{name}: cannot render: {exc}") from None


def _compile(mjml: str) -> str:
    try:
        # No font imports: the stack falls back to the reader's Korean system fonts.
        return mjml2html(mjml, disable_comments=False, fonts={})
    except Exception as exc:  # mjml-python raises bare exceptions from Rust
        raise TemplateError(f"{MJML_TEMPLATE}: MJML does not compile: {exc}") from None


def papers_per_email(*, settings: Settings, max_papers: int | None) -> int:
    """The most paper cards one email shows: the newsletter's cap, or the subscriber's if lower."""
    cap = settings.max_papers_per_email
    return cap if max_papers is None else min(cap, max_papers)


def render_email(
    *,
    settings: Settings,
    digest: Digest,
    picks: tuple[Pick, ...],
    profile: Profile,
    personal: Personal,
    template_dir: Path | None = None,
    limit: int | None = None,
) -> RenderedEmail:
    """Render HTML and text for `picks`; at most `limit` cards (default: what fits the budget).

    Without `limit`, the cards are capped at `papers_per_email` and then cut
    further until the HTML stays under HTML_BUDGET bytes; the cut cards are announced with a
    link to the day's archive, and the footer always stays in.
    """
    template_dir = template_dir or settings.template_dir
    total = len(picks)
    cap = papers_per_email(settings=settings, max_papers=profile.max_papers)
    shown = min(total, cap if limit is None else limit)
    all_cards = tuple(card_for(p, number=i) for i, p in enumerate(picks, start=1))
    subject = subject_for(settings=settings, date=digest.date, total=total)
    preheader = preheader_for(cards=all_cards, total=total)
    base = {
        "subject": subject,
        "preheader": preheader,
        "site_title": clean_text(settings.site_title),
        "site_url": settings.base_url.rstrip("/") + "/",
        "date": digest.date.isoformat(),
        "date_label": date_label(digest.date),
        "total": total,
        "archive_url": archive_url(settings=settings, date=digest.date),
        "filters": filters_description(profile),
        **{name: getattr(personal, name) for name in PERSONAL_FIELDS},
    }
    while True:
        context = {**base, "papers": all_cards[:shown], "shown": shown, "more": total - shown}
        html = _compile(_render(MJML_TEMPLATE, template_dir, context))
        size = len(html.encode())
        if limit is not None or size <= HTML_BUDGET or shown == 0:
            break
        # Cards are of similar size: jump close to the fit, then step down one at a time.
        shown = min(shown - 1, shown * HTML_BUDGET // size)
    text = _render(TEXT_TEMPLATE, template_dir, context)
    return RenderedEmail(
        subject=subject, preheader=preheader, html=html, text=text, shown=shown, total=total
    )
