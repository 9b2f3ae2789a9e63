"""How each kind of setting is read from a raw value (TOML, environment or option).

One function per type of value (port, host, address, number...): it returns the value or
raises ValueError with the reason, which config.py turns into one line naming the setting
and where the value came from. Also the rule for signing keys strong enough to use.
"""

from __future__ import annotations

import contextlib
import email.policy
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from email.errors import NonASCIILocalPartDefect
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# A signing key must look like 32 random bytes: a subscriber holds tokens signed with it and can
# try keys offline, so a short or patterned one falls in seconds.
MIN_KEY_LENGTH = 43  # len(secrets.token_urlsafe(32))
MIN_KEY_DISTINCT = 10
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
KEY_HOWTO = 'generate one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


class Secret(str):
    """A string that hides itself when printed or logged."""

    def __repr__(self) -> str:
        return "Secret('**********')"

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return "**********"


def key_weakness(key: str) -> str | None:
    """Why `key` cannot sign subscriber links, or None when it can; never quotes the key."""
    if len(key) < MIN_KEY_LENGTH:
        return f"length {len(key)}, under {MIN_KEY_LENGTH} characters"
    distinct = len(set(key))
    if distinct < MIN_KEY_DISTINCT:
        return f"only {distinct} different characters, fewer than {MIN_KEY_DISTINCT}"
    # The shortest period: a pattern repeated at least twice ("abc123abc123...") adds no entropy.
    for period in range(1, len(key) // 2 + 1):
        if key[period:] == key[:-period]:
            return f"a {period}-character pattern repeated"
    return None


Kind = Callable[[Any], Any]  # coerces one setting's raw value; ValueError(reason) when it cannot

# Line breaks (CR, LF, NEL, U+2028/9) and other control characters: no setting may hold one,
# because several end up in email headers and every one ends up in a one-line message.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_WHOLE = re.compile(r"[+-]?[0-9]+")


def text(value: Any) -> str:
    """A string on one line (TOML lists, tables and numbers are refused)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not a {toml_type(value)}")
    if _CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


def short_text(limit: int) -> Kind:
    """`text` of at most `limit` characters (a title that would crowd everything else out)."""

    def kind(value: Any) -> str:
        line = text(value)
        if len(line) > limit:
            raise ValueError(f"must be at most {limit} characters, not {len(line):,}")
        return line

    return kind


def whole(minimum: int, maximum: int | None = None, *, what: str = "a whole number") -> Kind:
    """An integer in [minimum, maximum]; a float, even 7.0, is refused."""
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"

    def kind(value: Any) -> int:
        if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be {what} {bounds}")
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(f"must be {what} {bounds}")
        return value

    return kind


def number(minimum: float, *, above: bool = False) -> Kind:
    """A finite number at least `minimum` (more than it when `above`)."""
    bounds = f"more than {minimum:g}" if above else f"at least {minimum:g}"

    def kind(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"must be a number {bounds}")
        try:
            result = float(value)
        except ValueError:
            raise ValueError(f"must be a number {bounds}") from None
        if not math.isfinite(result) or result < minimum or (above and result == minimum):
            raise ValueError(f"must be a number {bounds}")
        return result

    return kind


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = text(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def choice(*options: str) -> Kind:
    def kind(value: Any) -> str:
        if text(value) not in options:
            raise ValueError(f"must be {', '.join(options[:-1])} or {options[-1]}")
        return str(value)

    return kind


def path(*, optional: bool = False) -> Kind:
    def kind(value: Any) -> Path | None:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if text(value) == "":
            if optional:
                return None
            raise ValueError("must name a file or folder")
        return Path(value)

    return kind


_NOT_IN_URLS = re.compile(r'[\s"<>\\^`{|}\x00-\x1f\x7f]')


def url(value: Any) -> str:
    """An absolute http(s) URL with a real host; no spaces or characters a URL cannot hold,
    no query, fragment or credentials (each link built from it in a page, an email or a feed
    would be broken, or would publish them)."""
    raw = text(value)
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    if bad := _NOT_IN_URLS.search(raw):
        raise ValueError(
            "must be a URL without spaces"
            if bad[0].isspace()
            else f"must be a URL without {bad[0]!r}"
        )
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise ValueError("must be a URL without ?query or #fragment (paths are added to it)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must be a URL without user@ or user:password@ (it is published)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("must be a URL whose port is a number from 1 to 65535")
    try:
        host(parts.hostname or "")
    except ValueError:
        raise ValueError("must be a URL with a host name or an IP address") from None
    return str(value)


def url_or_empty(value: Any) -> str:
    """An absolute http(s) URL, or empty for none."""
    return "" if text(value) == "" else url(value)


def host(value: Any) -> str:
    """An IP address or a host name (international names allowed, as IDNA)."""
    name = text(value)
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(name))
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.removesuffix(".").split(".")
    if len(ascii_name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError("must be a host name or an IP address")
    return name


def mailbox(*, display_name: bool, optional: bool = False) -> Kind:
    """One email address, with a display name ("Name <a@b>") when `display_name`."""
    shape = (
        '"Name <name@example.com>" or "name@example.com"' if display_name else "name@example.com"
    )

    def kind(value: Any) -> str:
        address = text(value)
        if optional and address == "":
            return address
        header = email.policy.default.header_factory("To", address)
        found = header.addresses
        defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
        if (
            defects
            or len(found) != 1
            or not (found[0].username and found[0].domain)
            or (not display_name and address.strip() != found[0].addr_spec)
        ):
            raise ValueError(f"must be one email address such as {shape}")
        return address

    return kind


def optional(kind: Kind) -> Kind:
    """`kind`, or "" when the value is empty (the setting is off)."""

    def optional(value: Any) -> Any:
        return "" if value == "" else kind(value)

    return optional


def dns_label(value: Any) -> str:
    if not _HOST_LABEL.fullmatch(text(value)):
        raise ValueError('must be one DNS label such as "news2024"')
    return str(value)


def list_id(value: Any) -> str:
    if not _DOT_ATOM.fullmatch(text(value)) or "." not in value:
        raise ValueError('must be a domain-like name such as "daily-papers.example.com"')
    return str(value)


MAX_TOPIC_NAME = 100  # the name is a file name (topics/NAME.xml) and a feed's title


def topics(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError('must be a table of name = "keyword; keyword"')
    for name in value:
        if len(text(name)) > MAX_TOPIC_NAME:
            raise ValueError(
                f"topic name {name[:20]!r}... is longer than {MAX_TOPIC_NAME} characters"
            )
    return {
        text(name): "; ".join(map(text, v)) if isinstance(v, list) else text(v)
        for name, v in value.items()
    }


def list_of(what: str, check: Callable[[str], str | None]) -> Kind:
    """A tuple of strings from a TOML list or one comma-separated string; `check` says why
    an item is wrong (None: it is right)."""

    def kind(value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"must be a list of {what}, not a {toml_type(value)}")
        found = tuple(text(item).strip() for item in items if text(item).strip())
        for item in found:
            if (reason := check(item)) is not None:
                raise ValueError(f"{item!r} is not {reason}")
        return found

    return kind


def _network_problem(item: str) -> str | None:
    try:
        ipaddress.ip_network(item, strict=False)
    except ValueError:
        return "an IP address or CIDR network"
    return None


_TOPIC_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}")
# IP addresses or CIDR networks.
networks = list_of("IP addresses or networks", _network_problem)
# SNS topic ARNs.
topic_arns = list_of(
    "SNS topic ARNs",
    lambda item: (
        None if _TOPIC_ARN.fullmatch(item) else "an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
    ),
)


def secret(value: Any) -> Secret | None:
    return Secret(text(value)) if value else None


def toml_type(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", list: "list", dict: "table"}
    return next((n for t, n in kinds.items() if isinstance(value, t)), type(value).__name__)


PORT = whole(1, 65535, what="a port number")
