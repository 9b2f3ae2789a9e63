"""Settings: read once at the edge (file, then environment, then options) and passed in frozen.

Precedence, lowest first: defaults < `newsletter.toml` < `NEWSLETTER_*` environment < options.
Secrets (the HMAC key, the SMTP password) come only from the environment and never print.
Every setting has a kind, one function per type of value (port, host, address, number...)
that reads a raw value from any source; a bad value is one ConfigError line naming the
setting and its source: the file and key, the environment variable or the option.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.policy
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.errors import NonASCIILocalPartDefect
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"
DEFAULT_CONFIG = Path("newsletter.toml")
# A signing key must look like 32 random bytes: a subscriber holds tokens signed with it and can
# try keys offline, so a short or patterned one falls in seconds.
MIN_KEY_LENGTH = 43  # len(secrets.token_urlsafe(32))
MIN_KEY_DISTINCT = 10
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


def _text(value: Any) -> str:
    """A string on one line (TOML lists, tables and numbers are refused)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not a {_toml_type(value)}")
    if _CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


def _whole(minimum: int, maximum: int | None = None, *, what: str = "a whole number") -> Kind:
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


def _number(minimum: float, *, above: bool = False) -> Kind:
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


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = _text(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _choice(*options: str) -> Kind:
    def kind(value: Any) -> str:
        if _text(value) not in options:
            raise ValueError(f"must be {', '.join(options[:-1])} or {options[-1]}")
        return str(value)

    return kind


def _path(*, optional: bool = False) -> Kind:
    def kind(value: Any) -> Path | None:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if _text(value) == "":
            if optional:
                return None
            raise ValueError("must name a file or folder")
        return Path(value)

    return kind


def _url(value: Any) -> str:
    parts = urlsplit(_text(value))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return str(value)


def _url_or_empty(value: Any) -> str:
    return "" if _text(value) == "" else _url(value)


def _host(value: Any) -> str:
    """An IP address or a host name (international names allowed, as IDNA)."""
    name = _text(value)
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


def _mailbox(*, display_name: bool, optional: bool = False) -> Kind:
    """One email address, with a display name ("Name <a@b>") when `display_name`."""
    shape = (
        '"Name <name@example.com>" or "name@example.com"' if display_name else "name@example.com"
    )

    def kind(value: Any) -> str:
        address = _text(value)
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


def _list_id(value: Any) -> str:
    if not _DOT_ATOM.fullmatch(_text(value)) or "." not in value:
        raise ValueError('must be a domain-like name such as "daily-papers.example.com"')
    return str(value)


def _topics(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError('must be a table of name = "keyword; keyword"')
    return {
        _text(name): "; ".join(map(_text, v)) if isinstance(v, list) else _text(v)
        for name, v in value.items()
    }


def _networks(value: Any) -> tuple[str, ...]:
    """IP addresses or CIDR networks: a TOML list, or one comma-separated string."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"must be a list of IP addresses or networks, not a {_toml_type(value)}")
    found = tuple(_text(item).strip() for item in items if _text(item).strip())
    for item in found:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return found


def _secret(value: Any) -> Secret | None:
    return Secret(_text(value)) if value else None


def _toml_type(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", list: "list", dict: "table"}
    return next((n for t, n in kinds.items() if isinstance(value, t)), type(value).__name__)


def _setting(
    default: Any, help: str, *, kind: Kind, section: str = "", secret: bool = False
) -> Any:
    """A settings field: help text, `kind` (how a given value is read), table in newsletter.toml."""
    metadata = {"help": help, "kind": kind, "section": section, "secret": secret}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


_PORT = _whole(1, 65535, what="a port number")
_AT_LEAST_1 = _whole(1)


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, with its help text and kind next to it."""

    # [store]
    db: Path = _setting(Path("newsletter.db"), "SQLite database file.", kind=_path())
    # [site]
    base_url: str = _setting(
        "http://127.0.0.1:8000",
        "Absolute URL where the site and feeds are published.",
        kind=_url,
        section="site",
    )
    site_title: str = _setting(
        "Daily Papers",
        "Name of the digest in feeds, pages and emails.",
        kind=_text,
        section="site",
    )
    site_dir: Path = _setting(
        Path("site"), "Folder `build` writes and `serve` serves.", kind=_path(), section="site"
    )
    feed_days: int = _setting(
        30, "How many of the newest days the feeds cover.", kind=_AT_LEAST_1, section="site"
    )
    websub_hub: str = _setting(
        "",
        "WebSub hub the public feeds name (rel=hub) and `build --ping` notifies; empty: none.",
        kind=_url_or_empty,
        section="site",
    )
    feed_max_entries: int = _setting(
        150,
        "Entries at most in each main, topic and daily feed; older papers are in archive/.",
        kind=_AT_LEAST_1,
        section="site",
    )
    feed_max_bytes: int = _setting(
        500_000,
        "Bytes at most of each feed file (fewer entries when they would not fit).",
        kind=_whole(10_000),
        section="site",
    )
    topics: dict[str, str] = _setting(
        {}, 'Topic feeds: name = "keyword; keyword".', kind=_topics, section="topics"
    )
    # [email]
    from_address: str = _setting(
        "Daily Papers <digest@localhost>",
        "From header of every email.",
        kind=_mailbox(display_name=True),
        section="email",
    )
    reply_to: str = _setting(
        "",
        "Reply-To header (empty: none).",
        kind=_mailbox(display_name=True, optional=True),
        section="email",
    )
    envelope_from: str = _setting(
        "bounces@localhost",
        "Envelope sender (where bounces go), separate from From.",
        kind=_mailbox(display_name=False),
        section="email",
    )
    list_id: str = _setting(
        "daily-papers.localhost",
        "List-Id of the newsletter (a domain-like name).",
        kind=_list_id,
        section="email",
    )
    unsubscribe_mailto: str = _setting(
        "unsubscribe@localhost",
        "Mailbox offered in List-Unsubscribe next to the https link.",
        kind=_mailbox(display_name=False, optional=True),
        section="email",
    )
    max_papers_per_email: int = _setting(
        20,
        "Cap on paper cards per email, to stay under Gmail's 102 KB clip.",
        kind=_AT_LEAST_1,
        section="email",
    )
    send_empty: bool = _setting(
        False,
        "Send an email even when a subscriber's selection is empty.",
        kind=_boolean,
        section="email",
    )
    template_dir: Path | None = _setting(
        None,
        "Folder of templates overriding the packaged ones.",
        kind=_path(optional=True),
        section="email",
    )
    # [smtp]
    smtp_host: str = _setting(
        "127.0.0.1",
        "SMTP server (a relay: Postfix, SES, Postmark...).",
        kind=_host,
        section="smtp",
    )
    smtp_port: int = _setting(25, "SMTP port.", kind=_PORT, section="smtp")
    smtp_tls: str = _setting(
        "starttls",
        "TLS mode: starttls, tls or none (never a silent downgrade).",
        kind=_choice("starttls", "tls", "none"),
        section="smtp",
    )
    smtp_user: str = _setting("", "SMTP user name.", kind=_text, section="smtp")
    smtp_password: Secret | None = _setting(
        None, "SMTP password (environment only).", kind=_secret, section="smtp", secret=True
    )
    smtp_timeout: float = _setting(
        30.0,
        "Seconds to wait for connect and for each SMTP reply, DATA included.",
        kind=_number(0, above=True),
        section="smtp",
    )
    concurrency: int = _setting(8, "Parallel SMTP connections.", kind=_AT_LEAST_1, section="smtp")
    rate: float = _setting(
        0.0, "Messages per second at most (0: no limit).", kind=_number(0), section="smtp"
    )
    messages_per_connection: int = _setting(
        100, "Recycle a connection after this many messages.", kind=_AT_LEAST_1, section="smtp"
    )
    retries: int = _setting(
        3,
        "Attempts per message on temporary failures before leaving it deferred.",
        kind=_AT_LEAST_1,
        section="smtp",
    )
    # [serve]
    serve_host: str = _setting(
        "127.0.0.1", "Address `serve` listens on.", kind=_host, section="serve"
    )
    serve_port: int = _setting(8000, "Port `serve` listens on.", kind=_PORT, section="serve")
    trusted_proxies: tuple[str, ...] = _setting(
        (),
        "Reverse proxies (IPs or CIDR networks) whose X-Forwarded-For names the client; "
        "empty: X-Forwarded-For is never believed.",
        kind=_networks,
        section="serve",
    )
    serve_max_connections: int = _setting(
        1000,
        "Open connections `serve` keeps at most (requests beyond get 503, connections are closed).",
        kind=_whole(1),
        section="serve",
    )
    serve_header_timeout: float = _setting(
        10.0,
        "Seconds a client may take to send a request's headers.",
        kind=_number(0, above=True),
        section="serve",
    )
    # secrets
    secret_key: Secret | None = _setting(
        None,
        "Key that signs unsubscribe, preference and feed tokens (environment only).",
        kind=_secret,
        secret=True,
    )

    def require_secret_key(self) -> bytes:
        """The signing key, or a ConfigError saying how to set a strong one."""
        if not self.secret_key:
            raise ConfigError(
                "NEWSLETTER_SECRET_KEY is not set (a long random string signs subscriber links); "
                + KEY_HOWTO
            )
        key = self.secret_key.reveal()
        weakness = key_weakness(key)
        if weakness is not None:
            raise ConfigError(f"NEWSLETTER_SECRET_KEY is too weak: {weakness}; {KEY_HOWTO}")
        return key.encode()

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied (options given on the command line); None means unset."""
        given = {k: (v, "an option") for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **_coerce_all(given))

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value, help) for every setting, secrets hidden."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = ("(set)" if value else "(not set)") if f.metadata["secret"] else str(value)
            rows.append((f.name, shown, f.metadata["help"]))
        return rows


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def coerce_setting(name: str, value: Any, *, source: str) -> Any:
    """`value` read as setting `name` would be, or a one-line ConfigError naming it and `source`."""
    try:
        return _FIELDS[name].metadata["kind"](value)
    except (TypeError, ValueError, OverflowError) as exc:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        if _FIELDS[name].metadata["secret"]:
            shown = "(hidden)"
        raise ConfigError(f"setting {name}: bad value {shown} from {source}: {exc}") from None


def _coerce_all(values: Mapping[str, tuple[Any, str]]) -> dict[str, Any]:
    """Each (value, where it came from) read by its setting's kind."""
    return {
        name: coerce_setting(name, value, source=source) for name, (value, source) in values.items()
    }


def _toml_key(name: str, section: str) -> str:
    prefix = f"{section}_"
    return name[len(prefix) :] if section and name.startswith(prefix) else name


def _from_file(file: Path) -> dict[str, tuple[Any, str]]:
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    by_place = {
        (f.metadata["section"], _toml_key(f.name, f.metadata["section"])): f.name
        for f in _FIELDS.values()
    }
    values: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "topics":
            for sub, item in value.items():
                name = by_place.get((key, sub))
                if name is None:
                    raise ConfigError(f"{file}: unknown setting [{key}] {sub}")
                values[name] = (item, f"{file} [{key}] {sub}")
        elif key == "topics":
            values["topics"] = (value, f"{file} [topics]")
        elif ("", key) in by_place:
            values[by_place[("", key)]] = (value, f"{file} {key}")
        else:
            raise ConfigError(f"{file}: unknown setting {key}")
    for name, f in _FIELDS.items():
        if f.metadata["secret"] and name in values:
            raise ConfigError(
                f"{file}: {name} is a secret; set {ENV_PREFIX}{name.upper()} in the environment instead"
            )
    return values


def load_settings(
    *,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    option_names: Mapping[str, str] | None = None,
) -> Settings:
    """Read the config file (explicit, NEWSLETTER_CONFIG, or ./newsletter.toml), environment, options.

    `option_names` spells the command-line option of an override in error messages when it is
    not `--` and the setting's name (`{"serve_port": "--port"}`).
    """
    env = os.environ if environ is None else environ
    values: dict[str, tuple[Any, str]] = {}
    file = config_path or (Path(env["NEWSLETTER_CONFIG"]) if env.get("NEWSLETTER_CONFIG") else None)
    if file is None and DEFAULT_CONFIG.is_file():
        file = DEFAULT_CONFIG
    if file is not None:
        values.update(_from_file(file))
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in env and name != "topics":
            values[name] = (env[key], key)
    if "NEWSLETTER_FROM" in env:  # the short name the docs use
        values["from_address"] = (env["NEWSLETTER_FROM"], "NEWSLETTER_FROM")
    for name, value in (overrides or {}).items():
        if value is not None:
            option = (option_names or {}).get(name) or f"--{name.replace('_', '-')}"
            values[name] = (value, f"option {option}")
    return Settings(**_coerce_all(values))
