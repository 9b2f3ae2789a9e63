"""Compose each subscriber's daily email: render once per distinct selection, then personalise.

Subscribers with the same filters (`Profile`) get the same papers, so their email is rendered
(Jinja + MJML) and laid out as MIME once, with placeholders where the personal values go: the
greeting, the address, and the unsubscribe, preferences and private-feed links. Each
subscriber then costs a few HMACs, escaping and base64 of the seams (`SplicedBody`): tens of
microseconds instead of the milliseconds of rendering and `EmailMessage` per recipient, which
`compose_naive` still does as the reference the fast path is tested against.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address
from pathlib import Path

from markupsafe import escape

from ..audience.match import Pick, PreparedDigest, Profile, select_papers
from ..config import Settings
from ..errors import ConfigError
from ..model import Digest, Subscriber
from ..tokens import feed_token, make_token
from .message import (
    CRLF,
    NAME_LIMIT,
    MessageSkeleton,
    SplicedBody,
    build_message,
    checked_address,
    clean_text,
    digest_headers,
    format_address,
    format_date,
    list_unsubscribe,
    message_domain,
    message_id_for,
)
from .outgoing import OutgoingMessage
from .render import (
    PERSONAL_FIELDS,
    Personal,
    RenderedEmail,
    greeting_for,
    render_email,
)

# Pre-encoded bodies kept for reuse, least recently used out: ~2,000 distinct selections of
# ~60 KB, and low enough that a send of a million very different subscribers stays < 300 MB.
CACHE_BYTES = 128 * 1024 * 1024


def personal_for(subscriber: Subscriber, *, settings: Settings, key: bytes) -> Personal:
    """A subscriber's greeting, address and signed links (unsubscribe, preferences, feed)."""
    base = settings.base_url.rstrip("/")
    sid = subscriber.id
    return Personal(
        greeting=greeting_for(subscriber.name),
        email=subscriber.email,
        unsubscribe_url=f"{base}/u/{make_token(sid, purpose='unsubscribe', key=key)}",
        preferences_url=f"{base}/p/{make_token(sid, purpose='preferences', key=key)}",
        feed_url=f"{base}/feeds/{feed_token(sid, key=key)}.xml",
    )


def canonical_body(text: str) -> str:
    """A body as the stdlib encodes it: CRLF line endings and a final line break."""
    # Bytes split only at CR and LF, as `email.contentmanager` does (str.splitlines does more).
    return CRLF.join(line.decode() for line in text.encode().splitlines()) + CRLF


@dataclass(frozen=True, slots=True)
class _Layout:
    """One selection rendered and laid out as MIME, waiting for personal values."""

    rendered: RenderedEmail
    skeleton: MessageSkeleton
    html: SplicedBody
    text: SplicedBody
    nbytes: int


class Composer:
    """Builds the day's email for any subscriber; renders each distinct selection only once."""

    def __init__(
        self,
        *,
        settings: Settings,
        digest: Digest,
        clock: Callable[[], dt.datetime],
        template_dir: Path | None = None,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.settings = settings
        self.digest = digest
        self._clock = clock
        self._template_dir = template_dir or settings.template_dir
        self._key = settings.require_secret_key()
        self._prepared = PreparedDigest(digest)
        self._domain = message_domain(settings)
        self._cache: OrderedDict[Profile, _Layout | None] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0
        self._lock = threading.Lock()
        self._last_date: tuple[dt.datetime, str] | None = None
        # Placeholders no digest text can predict, so no paper can smuggle one in.
        nonce = secrets.token_hex(8)
        self._markers = {name: f"nl{nonce}{name.replace('_', '')}" for name in PERSONAL_FIELDS}
        # Fail now, not mid-run, when the base URL makes List-Unsubscribe too long to keep.
        big = Subscriber(id=99_999_999, email="check@example.com")
        list_unsubscribe(
            url=personal_for(big, settings=settings, key=self._key).unsubscribe_url,
            mailto=settings.unsubscribe_mailto,
        )

    def selection_for(self, subscriber: Subscriber) -> tuple[Pick, ...]:
        """The papers this subscriber gets today (before the per-email cap)."""
        return select_papers(self._prepared, Profile.of(subscriber))

    def message_id_for(self, subscriber: Subscriber) -> str:
        """The Message-ID of this subscriber's email for this digest (same on every resend)."""
        return message_id_for(
            date=self.digest.date, subscriber_id=subscriber.id, domain=self._domain
        )

    def rendered_for(self, subscriber: Subscriber) -> RenderedEmail | None:
        """How the subscriber's selection renders (with placeholders), or None when not sent."""
        layout = self._layout(Profile.of(subscriber))
        return None if layout is None else layout.rendered

    def compose(self, subscriber: Subscriber) -> OutgoingMessage | None:
        """The subscriber's email, or None when their selection is empty and send_empty is off.

        Raises SubscriberError when the subscriber's address cannot go into a header.
        """
        layout = self._layout(Profile.of(subscriber))
        if layout is None:
            return None
        address = checked_address(subscriber.email)
        personal = personal_for(subscriber, settings=self.settings, key=self._key)
        text_values = {}
        html_values = {}
        for name in PERSONAL_FIELDS:
            value = getattr(personal, name)
            text_values[name] = value.encode()
            html_values[name] = str(escape(value)).encode()
        message_id = self.message_id_for(subscriber)
        data = layout.skeleton.fill(
            to=format_address(name=clean_text(subscriber.name, limit=NAME_LIMIT), address=address),
            date=self._date(),
            message_id=message_id,
            list_unsubscribe=list_unsubscribe(
                url=personal.unsubscribe_url, mailto=self.settings.unsubscribe_mailto
            ),
            text_values=text_values,
            html_values=html_values,
        )
        return OutgoingMessage(
            subscriber_id=subscriber.id,
            recipient=address,
            envelope_from=self.settings.envelope_from,
            message_id=message_id,
            data=data,
        )

    def _date(self) -> str:
        now = self._clock()
        last = self._last_date
        if last is not None and last[0] == now:
            return last[1]
        text = format_date(now)
        self._last_date = (now, text)
        return text

    def _layout(self, profile: Profile) -> _Layout | None:
        with self._lock:
            if profile in self._cache:
                self._cache.move_to_end(profile)
                return self._cache[profile]
            layout = self._build(profile)
            self._cache[profile] = layout
            self._held += layout.nbytes if layout else 0
            while self._held > self._cache_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._held -= dropped.nbytes if dropped else 0
            return layout

    def _build(self, profile: Profile) -> _Layout | None:
        picks = select_papers(self._prepared, profile)
        if not picks and not self.settings.send_empty:
            return None
        markers = self._markers
        rendered = render_email(
            settings=self.settings,
            digest=self.digest,
            picks=picks,
            profile=profile,
            personal=Personal(**markers),
            template_dir=self._template_dir,
        )
        holes = {marker: name for name, marker in markers.items()}
        html_body = canonical_body(rendered.html)
        text_body = canonical_body(rendered.text)
        html = SplicedBody(html_body, holes)
        text = SplicedBody(text_body, holes)
        # The boundary depends on the content only (not the random markers): a resend is
        # byte-identical. Base64 lines never hold "=_", so it cannot occur in a body.
        content = f"{html_body}\0{text_body}"
        for name, marker in markers.items():
            content = content.replace(marker, name)
        digest = hashlib.sha256(content.encode()).hexdigest()
        skeleton = MessageSkeleton(
            settings=self.settings,
            subject=rendered.subject,
            text=text,
            html=html,
            boundary=f"=_nl_{digest[:28]}",
        )
        return _Layout(rendered, skeleton, html, text, html.nbytes + text.nbytes)


def compose_naive(
    *,
    settings: Settings,
    digest: Digest | PreparedDigest,
    subscriber: Subscriber,
    clock: Callable[[], dt.datetime],
    template_dir: Path | None = None,
    limit: int | None = None,
) -> OutgoingMessage | None:
    """The same email the straightforward way: Jinja, MJML and `EmailMessage` per recipient.

    The reference the fast path is checked against, and the baseline of the benchmark (which
    passes a PreparedDigest, so the digest is not normalised again per recipient).
    """
    key = settings.require_secret_key()
    profile = Profile.of(subscriber)
    picks = select_papers(digest, profile)
    if isinstance(digest, PreparedDigest):
        digest = digest.digest
    if not picks and not settings.send_empty:
        return None
    personal = personal_for(subscriber, settings=settings, key=key)
    rendered = render_email(
        settings=settings,
        digest=digest,
        picks=picks,
        profile=profile,
        personal=personal,
        template_dir=template_dir,
        limit=limit,
    )
    message_id = message_id_for(
        date=digest.date, subscriber_id=subscriber.id, domain=message_domain(settings)
    )
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
        date=clock(),
        headers=digest_headers(settings=settings, unsubscribe_url=personal.unsubscribe_url),
    )
    return OutgoingMessage(
        subscriber_id=subscriber.id,
        recipient=subscriber.email,
        envelope_from=settings.envelope_from,
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
    return f"{date.isoformat()}_{re.sub(r'[^A-Za-z0-9@._+-]', '_', address)[:120]}"


def write_preview(*, composer: Composer, subscriber: Subscriber, out_dir: Path) -> Preview | None:
    """Write the subscriber's email as .eml, .html and .txt; None when nothing would be sent.

    The .html and .txt are decoded from the .eml, so they show exactly what is sent.
    """
    message = composer.compose(subscriber)
    rendered = composer.rendered_for(subscriber)
    if message is None or rendered is None:
        return None
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    parts = {part.get_content_type(): part for part in parsed.walk()}
    html = parts["text/html"].get_content().replace("\r\n", "\n")
    text = parts["text/plain"].get_content().replace("\r\n", "\n")
    stem = preview_stem(date=composer.digest.date, address=subscriber.email)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{stem}{suffix}" for suffix in (".eml", ".html", ".txt")]
        paths[0].write_bytes(message.data)
        paths[1].write_text(html, encoding="utf-8")
        paths[2].write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{out_dir}: cannot write previews: {exc.strerror}") from None
    return Preview(
        subscriber=subscriber,
        eml=paths[0],
        html=paths[1],
        text=paths[2],
        shown=rendered.shown,
        total=rendered.total,
        html_bytes=len(html.encode()),
    )
