"""Cross-site form protection, in-memory rate limits and the headers every service page carries.

Forms use a double-submit token: a random cookie, and a hidden field holding the cookie's HMAC
under the secret key (so a cookie planted from a sibling domain is useless without the key),
plus the browser's own word (`Origin`, `Sec-Fetch-Site`) that the post comes from this site.
The RFC 8058 one-click unsubscribe POST is deliberately not protected this way: mail providers
send it without cookies or an Origin, and its signed token already proves who it is for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .logs import log_event

CSRF_COOKIE = "newsletter_csrf"
CSRF_FIELD = "csrf"
_COOKIE_BYTES = 24

# Service pages load nothing from elsewhere; scripts and styles come from /-/ on this site.
PAGE_HEADERS: Mapping[str, str] = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' https: data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # Pages carry tokens in their URL: never hand them to another site in a Referer. Not
    # "no-referrer", which would also make browsers send `Origin: null` on our own forms.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-robots-tag": "noindex",
}


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased, as browsers send it in `Origin`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class CsrfGuard:
    """Issues and checks double-submit tokens, and the browser's origin headers."""

    def __init__(self, *, key: bytes, base_url: str) -> None:
        self._key = hashlib.sha256(b"newsletter csrf\x00" + key).digest()
        self.allowed_origin = origin_of(base_url)
        self.secure = base_url.startswith("https://")

    def _field_for(self, cookie: str) -> str:
        tag = hmac.new(self._key, cookie.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(tag).rstrip(b"=").decode()

    @staticmethod
    def _valid_cookie(value: str | None) -> bool:
        return (
            value is not None
            and 20 <= len(value) <= 64
            and value.replace("-", "").replace("_", "").isalnum()
        )

    def issue(self, request: Request) -> tuple[str, str | None]:
        """(hidden field value, new cookie to set or None when the browser has a good one)."""
        cookie = request.cookies.get(CSRF_COOKIE)
        if self._valid_cookie(cookie):
            assert cookie is not None
            return self._field_for(cookie), None
        fresh = secrets.token_urlsafe(_COOKIE_BYTES)
        return self._field_for(fresh), fresh

    def set_cookie(self, response: Response, cookie: str | None) -> None:
        """Attach a freshly issued cookie to `response` (no-op for None)."""
        if cookie is not None:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                httponly=True,
                samesite="strict",
                secure=self.secure,
                path="/",
            )

    def same_origin(self, request: Request) -> bool:
        """Whether the browser says the request comes from this site (absent headers: no objection)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        # Only the configured base URL: the request's own Host is the client's to choose (a
        # DNS-rebinding page names itself there), so it proves nothing.
        return origin.lower() == self.allowed_origin

    async def own_form(self, request: Request, *, event: str, **ids: int) -> dict[str, str]:
        """The fields of a form posted from our own pages; 403 for a post from anywhere else.

        The one same-site check of every form handler; a refusal is logged as `event`.rejected
        with `ids` (e.g. subscriber=17).
        """
        form = await read_form(request)
        if not self.check(request, form.get(CSRF_FIELD)):
            log_event(f"{event}.rejected", reason="cross-site", **ids)
            raise HTTPException(403)
        return form

    def check(self, request: Request, field: str | None) -> bool:
        """Whether a form POST is ours: same origin, and the field matches the cookie's HMAC."""
        if not self.same_origin(request):
            return False
        cookie = request.cookies.get(CSRF_COOKIE)
        if not self._valid_cookie(cookie) or not field:
            return False
        assert cookie is not None
        return hmac.compare_digest(field.encode(), self._field_for(cookie).encode())


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` events per `seconds` for one key."""

    count: int
    seconds: float


class RateLimiter:
    """Sliding-window counts per key, in memory (one process), for at most `max_keys` keys.

    Keys are kept in order of last use: a full limiter forgets keys whose window has passed,
    then the least recently used, one at a time, so a flood of new keys never resets the
    count of a key that is still being tried. A key longer than `MAX_KEY_CHARS` is kept as
    its hash, so no key costs more than a few hundred bytes.
    """

    MAX_KEY_CHARS = 320

    def __init__(
        self, limit: Limit, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 50_000
    ) -> None:
        self.limit = limit
        self.clock = clock
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count one event for `key`; False (and not counted) when the key is over its limit."""
        if len(key) > self.MAX_KEY_CHARS:
            key = "sha256:" + hashlib.sha256(key.encode(errors="replace")).hexdigest()
        now = self.clock()
        horizon = now - self.limit.seconds
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                self._make_room(horizon)
                hits = self._hits[key] = deque()
            else:
                self._hits.move_to_end(key)
            while hits and hits[0] <= horizon:
                hits.popleft()
            if len(hits) >= self.limit.count:
                return False
            hits.append(now)
            return True

    def _make_room(self, horizon: float) -> None:
        # Least recently used first: keys whose window has passed go (cheap, from the front),
        # then, only while still full, the least recently used live ones.
        while self._hits:
            first = next(iter(self._hits.values()))
            if first and first[-1] > horizon:
                break
            self._hits.popitem(last=False)
        while len(self._hits) >= self.max_keys:
            self._hits.popitem(last=False)

    def keys(self) -> tuple[str, ...]:
        """The keys remembered now, least recently used first."""
        with self._lock:
            return tuple(self._hits)


@dataclass(frozen=True, slots=True)
class SignupLimits:
    """How many sign-ups one address and one client may make."""

    per_address: Limit = Limit(3, 3600.0)
    per_client: Limit = Limit(10, 3600.0)


FORM_BYTES = 64 * 1024  # a form post's body: the largest (preferences) is a few KB


async def read_form(request: Request) -> dict[str, str]:
    """The text fields of a small form post (no files; size and field count bounded).

    The form is parsed on the event loop (megabytes of empty fields hold it for a large part
    of a second), so a body over FORM_BYTES is refused (413) before any of it is read, and
    one of no stated length (411).
    """
    length = request.headers.get("content-length")
    if length is None:
        raise HTTPException(411)
    if not length.isdigit() or int(length) > FORM_BYTES:
        raise HTTPException(413)
    kind, _, parameters = request.headers.get("content-type", "").partition(";")
    if kind.strip().lower() != "application/x-www-form-urlencoded":
        raise HTTPException(415, "a form is sent as application/x-www-form-urlencoded")
    charset = _charset(parameters)
    if charset not in (None, "utf-8", "utf8"):
        raise HTTPException(400, "the form must be sent as UTF-8")
    # Parsed here, strictly: Starlette reads raw bytes as Latin-1 and replaces bad escapes,
    # so 'keywords=뷰' sent unescaped (curl -d) was saved as 'ë·°' and %EA%B0 as U+FFFD.
    try:
        text = (await request.body()).decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=30
        )
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not UTF-8 text") from None
    except ValueError:  # over max_num_fields
        raise HTTPException(400, "the form has too many fields") from None
    seen: set[str] = set()
    for name, _ in pairs:  # our forms name each field once: which one would count?
        if name in seen:
            raise HTTPException(400, f"the form gives the field {name[:40]!r} more than once")
        seen.add(name)
    return dict(pairs)


def _charset(parameters: str) -> str | None:
    """The charset parameter of a Content-Type's `parameters` ('; charset=UTF-8'), lower-cased."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


# X-Forwarded-For is read up to this many characters from its end (where trusted proxies
# append) and this many hops: enough for any real chain of proxies.
_FORWARDED_CHARS = 1024
_FORWARDED_HOPS = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(addresses: Iterable[str]) -> tuple[Network, ...]:
    """The `trusted_proxies` setting as networks (a bare address is a network of one)."""
    return tuple(ipaddress.ip_network(a.strip(), strict=False) for a in addresses)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return ip


def client_address(request: Request, *, trusted: Sequence[Network] = ()) -> str:
    """The client's IP: the peer, or behind `trusted` proxies the right-most untrusted hop.

    X-Forwarded-For from anyone else is ignored (a client would choose its own limiter key),
    and an address that is not an IP never becomes a key: the last trusted hop stands in.
    """
    peer = _ip(request.client.host) if request.client else None
    if peer is None:
        return "unknown"
    address = peer
    if any(peer in network for network in trusted):
        header = ",".join(request.headers.getlist("x-forwarded-for"))
        hops = header[-_FORWARDED_CHARS:].split(",")
        if len(header) > _FORWARDED_CHARS:
            hops = hops[1:]  # cut somewhere inside: not an address
        for hop in reversed(hops[-_FORWARDED_HOPS:]):
            ip = _ip(hop)
            if ip is None:
                break
            address = ip
            if not any(ip in network for network in trusted):
                break
    return str(address)


def limiter_key(client: str) -> str:
    """The rate-limit key of a client IP: IPv6 by /64, which one subscriber line usually gets."""
    ip = _ip(client)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return client


# Providers known to ignore dots in the local part; "+tag" is ignored nearly everywhere.
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def address_key(address: str) -> str:
    """The rate-limit key of a normalised address: one per mailbox, whatever its spelling.

    `Victim+a@Example.com` and `victim@example.com` reach one mailbox, so they share one count.
    """
    local, _, domain = address.lower().rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in _DOTLESS_DOMAINS:
        local, domain = local.replace(".", ""), _DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"
