"""Compose each subscriber's daily email from pieces rendered once per day.

The day's frame and each paper's card are rendered (Jinja + MJML) once, with markers where
personal values go (`day.DayEmail`); a subscriber's email is then their cards joined into the
frame, base64 assembled from pre-encoded stretches (`splice`), and headers joined around
their address and signed links. The cost of a day grows with its papers, not with the number
of distinct filter sets. A template whose output cannot be split that way is rendered whole
once per distinct selection instead (`whole.Layout`), or per reader where that would read
differently. `compose_naive` builds the same
email the straightforward way (Jinja, MJML and `EmailMessage` per recipient): the reference
both paths are tested against.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address
from pathlib import Path

from ..audience.match import Pick, PreparedDigest, select_papers
from ..config import Settings
from ..errors import ConfigError
from ..model import Digest, Filters, Subscriber
from ..text import clean_text, safe_file_name
from ..tokens import bounce_tag_of, bounce_token, feed_token, subscriber_token
from .day import DayEmail
from .dkim import sign_for, signer_for
from .fragments import NotSpliceable
from .message import (
    NAME_LIMIT,
    MessageSkeleton,
    build_message,
    checked_address,
    digest_headers,
    format_address,
    format_date,
    list_unsubscribe,
    message_domain,
    message_id_for,
    verp_address,
)
from .outgoing import OutgoingMessage
from .render import (
    PERSONAL_FIELDS,
    Personal,
    RenderedEmail,
    greeting_for,
    papers_per_email,
    render_email,
)
from .splice import encode_lines, piece_bytes
from .whole import Layout, build_layout

# Whole renders kept for reuse (templates that do not split), least recently used out.
CACHE_BYTES = 128 * 1024 * 1024


def personal_for(subscriber: Subscriber, *, settings: Settings, key: bytes) -> Personal:
    """A subscriber's greeting, address and signed links (unsubscribe, preferences, feed)."""
    base = settings.base_url.rstrip("/")
    sid, email = subscriber.id, subscriber.email
    unsubscribe = subscriber_token(sid, email=email, purpose="unsubscribe", key=key)
    preferences = subscriber_token(sid, email=email, purpose="preferences", key=key)
    return Personal(
        greeting=greeting_for(subscriber.name),
        email=email,
        unsubscribe_url=f"{base}/u/{unsubscribe}",
        preferences_url=f"{base}/p/{preferences}",
        feed_url=f"{base}/feeds/{feed_token(sid, email=email, key=key)}.xml",
    )


def addressing(
    *,
    settings: Settings,
    subscriber: Subscriber,
    day: dt.date,
    key: bytes,
    domain: str,
    weekly: bool = False,
) -> tuple[str, str]:
    """(Message-ID, envelope sender) of one subscriber's email of `day`.

    Both carry the email's VERP tag, which signs subscriber, day and address: the envelope
    sender is envelope_from with a VERP token (with `verp` off, envelope_from itself), the
    Message-ID holds the tag, so a bounce or complaint names whose email it was whatever it
    looks like, and one written for another subscriber names no one."""
    token = bounce_token(subscriber.id, day, email=subscriber.email, key=key)
    message_id = message_id_for(
        date=day,
        subscriber_id=subscriber.id,
        domain=domain,
        tag=bounce_tag_of(token),
        edition="weekly" if weekly else "digest",
    )
    sender = verp_address(settings.envelope_from, token) if settings.verp else None
    return message_id, sender or settings.envelope_from


class Composer:
    """Builds the day's email for any subscriber from pieces rendered once per day."""

    def __init__(
        self,
        *,
        settings: Settings,
        digest: Digest,
        clock: Callable[[], dt.datetime],
        template_dir: Path | None = None,
        cache_bytes: int = CACHE_BYTES,
        weekly: bool = False,
    ) -> None:
        self.settings = settings
        self.digest = digest
        # The weekly edition: `digest` holds the week's papers once each, dated its Monday.
        self.weekly = weekly
        self._clock = clock
        self._template_dir = template_dir or settings.template_dir
        self._key = settings.require_secret_key()
        self._prepared = PreparedDigest(digest)
        self._domain = message_domain(settings)
        self._skeleton = MessageSkeleton(
            settings=settings, date=digest.date, edition="weekly" if weekly else "digest"
        )
        self._signer = signer_for(settings)  # a missing or bad key fails here, not mid-run
        self._cache: OrderedDict[Filters, Layout | None] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0
        self._lock = threading.Lock()
        self._day: DayEmail | None = None
        self._whole = False  # True: the templates do not split; render each selection whole
        self._last_date: tuple[dt.datetime, str] | None = None
        # Placeholders no digest text can predict, so no paper can smuggle one in.
        nonce = secrets.token_hex(8)
        self._markers = {name: f"nl{nonce}{name.replace('_', '')}" for name in PERSONAL_FIELDS}
        papers = "\0".join(f"{p.arxiv_id}:{p.votes}" for p in self._prepared.papers)
        seed = f"{digest.date}\0{papers}" + ("\0weekly" if weekly else "")
        self._boundary = "=_nl_" + hashlib.sha256(seed.encode()).hexdigest()[:28]
        # Fail now, not mid-run, when the base URL makes List-Unsubscribe too long to keep.
        big = Subscriber(id=99_999_999, email="check@example.com")
        list_unsubscribe(
            url=personal_for(big, settings=settings, key=self._key).unsubscribe_url,
            mailto=settings.unsubscribe_mailto,
        )

    def prepare(self) -> None:
        """Render the day's pieces now (otherwise the first `compose` does): before a send, so
        they are among what the send keeps from the garbage collector, and a template error
        stops it before anything is claimed."""
        self._day_email()

    @property
    def per_paper(self) -> bool:
        """Whether emails are assembled from per-paper pieces (False: whole renders)."""
        return self._day_email() is not None

    def _day_email(self) -> DayEmail | None:
        if self._day is None and not self._whole:
            with self._lock:
                if self._day is None and not self._whole:
                    try:
                        self._day = DayEmail(
                            settings=self.settings,
                            digest=self.digest,
                            papers=self._prepared.papers,
                            template_dir=self._template_dir,
                            weekly=self.weekly,
                        )
                    except NotSpliceable:
                        self._whole = True
        return self._day

    def selection_for(self, subscriber: Subscriber) -> tuple[Pick, ...]:
        """The papers this subscriber gets today (before the per-email cap)."""
        return select_papers(self._prepared, subscriber.filters)

    def rendered_for(self, subscriber: Subscriber) -> RenderedEmail | None:
        """How the subscriber's email renders, or None when it is not sent."""
        day = self._day_email()
        if day is None:
            layout = self._layout(subscriber.filters)
            if layout is None:
                return None
            personal = personal_for(subscriber, settings=self.settings, key=self._key)
            return layout.reader_email(personal).rendered
        picks = self.selection_for(subscriber)
        if not picks and not self.settings.send_empty:
            return None
        personal = personal_for(subscriber, settings=self.settings, key=self._key)
        made = day.assemble(picks, filters=subscriber.filters, personal=personal)
        return RenderedEmail(
            subject=made.subject,
            preheader=made.preheader,
            html=b"".join(map(piece_bytes, made.html)).decode(),
            text=b"".join(map(piece_bytes, made.text)).decode(),
            shown=made.shown,
            total=made.total,
        )

    def compose(self, subscriber: Subscriber) -> OutgoingMessage | None:
        """The subscriber's email, or None when their selection is empty and send_empty is off.

        Raises SubscriberError when the subscriber's address cannot go into a header.
        """
        day = self._day_email()
        if day is None:
            return self._compose_whole(subscriber)
        picks = select_papers(self._prepared, subscriber.filters)
        if not picks and not self.settings.send_empty:
            return None
        address = checked_address(subscriber.email)
        personal = personal_for(subscriber, settings=self.settings, key=self._key)
        made = day.assemble(picks, filters=subscriber.filters, personal=personal)
        return self._message(
            subscriber,
            address=address,
            personal=personal,
            subject=made.subject,
            boundary=self._boundary,
            text=encode_lines(made.text),
            html=encode_lines(made.html),
        )

    def _compose_whole(self, subscriber: Subscriber) -> OutgoingMessage | None:
        layout = self._layout(subscriber.filters)
        if layout is None:
            return None
        address = checked_address(subscriber.email)
        personal = personal_for(subscriber, settings=self.settings, key=self._key)
        made = layout.reader_email(personal)
        return self._message(
            subscriber,
            address=address,
            personal=personal,
            subject=made.rendered.subject,
            boundary=made.boundary,
            text=made.text.fill(made.text_values),
            html=made.html.fill(made.html_values),
        )

    def _message(
        self,
        subscriber: Subscriber,
        *,
        address: str,
        personal: Personal,
        subject: str,
        boundary: str,
        text: list[bytes],
        html: list[bytes],
    ) -> OutgoingMessage:
        message_id, envelope_from = addressing(
            settings=self.settings,
            subscriber=subscriber,
            day=self.digest.date,
            key=self._key,
            domain=self._domain,
            weekly=self.weekly,
        )
        now = self._clock()
        data = self._skeleton.fill(
            to=format_address(name=subscriber.name, address=address),  # it cleans the name
            date=self._date(now),
            message_id=message_id,
            subject=subject,
            list_unsubscribe=list_unsubscribe(
                url=personal.unsubscribe_url, mailto=self.settings.unsubscribe_mailto
            ),
            boundary=boundary,
            text=text,
            html=html,
        )
        if self._signer is not None:
            data = self._signer.sign(data, now=now)
        return OutgoingMessage(
            subscriber_id=subscriber.id,
            recipient=address,
            envelope_from=envelope_from,
            message_id=message_id,
            data=data,
            crlf_only=True,  # the skeleton and the base64 bodies hold CRLF line ends only
        )

    def _date(self, now: dt.datetime) -> str:
        """The Date header of `now`: formatted once per second (it shows whole seconds)."""
        second = now.replace(microsecond=0)
        last = self._last_date
        if last is not None and last[0] == second:
            return last[1]
        text = format_date(second)
        self._last_date = (second, text)
        return text

    def _layout(self, filters: Filters) -> Layout | None:
        with self._lock:
            if filters in self._cache:
                self._cache.move_to_end(filters)
                return self._cache[filters]
            layout = self._build(filters)
            self._cache[filters] = layout
            self._held += layout.nbytes if layout else 0
            while self._held > self._cache_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._held -= dropped.nbytes if dropped else 0
            return layout

    def _build(self, filters: Filters) -> Layout | None:
        picks = select_papers(self._prepared, filters)
        if not picks and not self.settings.send_empty:
            return None

        def render(personal: Personal, limit: int | None) -> RenderedEmail:
            return render_email(
                settings=self.settings,
                digest=self.digest,
                picks=picks,
                filters=filters,
                personal=personal,
                template_dir=self._template_dir,
                limit=limit,
                weekly=self.weekly,
            )

        cap = papers_per_email(settings=self.settings, max_papers=filters.max_papers)
        return build_layout(render, markers=self._markers, cap=cap)


def compose_naive(
    *,
    settings: Settings,
    digest: Digest | PreparedDigest,
    subscriber: Subscriber,
    clock: Callable[[], dt.datetime],
    template_dir: Path | None = None,
    limit: int | None = None,
    weekly: bool = False,
) -> OutgoingMessage | None:
    """The same email the straightforward way: Jinja, MJML and `EmailMessage` per recipient.

    The reference the fast path is checked against, and the baseline of the benchmark (which
    passes a PreparedDigest, so the digest is not normalised again per recipient).
    """
    key = settings.require_secret_key()
    filters = subscriber.filters
    picks = select_papers(digest, filters)
    if isinstance(digest, PreparedDigest):
        digest = digest.digest
    if not picks and not settings.send_empty:
        return None
    personal = personal_for(subscriber, settings=settings, key=key)
    rendered = render_email(
        settings=settings,
        digest=digest,
        picks=picks,
        filters=filters,
        personal=personal,
        template_dir=template_dir,
        limit=limit,
        weekly=weekly,
    )
    message_id, envelope_from = addressing(
        settings=settings,
        subscriber=subscriber,
        day=digest.date,
        key=key,
        domain=message_domain(settings),
        weekly=weekly,
    )
    now = clock()
    data = build_message(
        settings=settings,
        to=Address(
            display_name=clean_text(subscriber.name, limit=NAME_LIMIT),
            addr_spec=checked_address(subscriber.email),
        ),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id,
        date=now,
        headers=digest_headers(
            settings=settings,
            unsubscribe_url=personal.unsubscribe_url,
            date=digest.date,
            edition="weekly" if weekly else "digest",
        ),
    )
    data = sign_for(data, settings=settings, now=now)
    return OutgoingMessage(
        subscriber_id=subscriber.id,
        recipient=subscriber.email,
        envelope_from=envelope_from,
        message_id=message_id,
        data=data,
    )


@dataclass(frozen=True, slots=True)
class Preview:
    """The files written for one subscriber's email."""

    subscriber: Subscriber
    eml: Path
    html: Path
    text: Path
    shown: int
    total: int
    html_bytes: int


def preview_stem(*, date: dt.date, address: str) -> str:
    """A file name (without suffix) for a preview: date and address, filesystem-safe."""
    return f"{date.isoformat()}_{safe_file_name(address, limit=120)}"


def write_preview(
    *, composer: Composer, subscriber: Subscriber, out_dir: Path, taken: set[str] | None = None
) -> Preview | None:
    """Write the subscriber's email as .eml, .html and .txt; None when nothing would be sent.

    The .html and .txt are decoded from the .eml, so they show exactly what is sent. The three
    files appear together, each whole, or not at all (a full disk leaves the old ones). `taken`:
    the names this run wrote so far; an address whose file name another already has (a/b@ and
    a_b@ are both a_b@) gets its subscriber id added instead of overwriting it.
    """
    from ..publish.files import write_changed  # here: sending never writes previews

    message = composer.compose(subscriber)
    rendered = composer.rendered_for(subscriber)
    if message is None or rendered is None:
        return None
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    parts = {part.get_content_type(): part for part in parsed.walk()}
    html = parts["text/html"].get_content().replace("\r\n", "\n")
    text = parts["text/plain"].get_content().replace("\r\n", "\n")
    stem = preview_stem(date=composer.digest.date, address=subscriber.email)
    if taken is not None:
        while stem in taken:
            stem = f"{stem}-{subscriber.id}"
        taken.add(stem)
    contents = {".eml": message.data, ".html": html.encode(), ".txt": text.encode()}
    try:
        if out_dir.exists() and not out_dir.is_dir():  # /dev/null: mkdir says "File exists"
            raise ConfigError(f"{out_dir}: cannot write previews: not a folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        write_changed(out_dir, {f"{stem}{suffix}": data for suffix, data in contents.items()})
    except OSError as exc:
        raise ConfigError(f"{out_dir}: cannot write previews: {exc.strerror or exc}") from None
    paths = [out_dir / f"{stem}{suffix}" for suffix in contents]
    return Preview(
        subscriber=subscriber,
        eml=paths[0],
        html=paths[1],
        text=paths[2],
        shown=rendered.shown,
        total=rendered.total,
        html_bytes=len(html.encode()),
    )
