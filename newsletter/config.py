"""Settings: read once at the edge (file, then environment, then options) and passed in frozen.

Precedence, lowest first: defaults < `newsletter.toml` < `NEWSLETTER_*` environment < options.
Secrets (the HMAC key, the SMTP password) come only from the environment and never print.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
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


def _setting(default: Any, help: str, *, section: str = "", secret: bool = False) -> Any:
    """A settings field with its help text; `section` is its table in newsletter.toml."""
    if isinstance(default, dict):
        return field(
            default_factory=lambda: dict(default),
            metadata={"help": help, "section": section, "secret": secret},
        )
    return field(default=default, metadata={"help": help, "section": section, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, with its help text next to it."""

    # [store]
    db: Path = _setting(Path("newsletter.db"), "SQLite database file.")
    # [site]
    base_url: str = _setting(
        "http://127.0.0.1:8000",
        "Absolute URL where the site and feeds are published.",
        section="site",
    )
    site_title: str = _setting(
        "Daily Papers", "Name of the digest in feeds, pages and emails.", section="site"
    )
    site_dir: Path = _setting(
        Path("site"), "Folder `build` writes and `serve` serves.", section="site"
    )
    feed_days: int = _setting(30, "How many of the newest days the feeds cover.", section="site")
    topics: dict[str, str] = _setting(
        {}, 'Topic feeds: name = "keyword; keyword".', section="topics"
    )
    # [email]
    from_address: str = _setting(
        "Daily Papers <digest@localhost>", "From header of every email.", section="email"
    )
    reply_to: str = _setting("", "Reply-To header (empty: none).", section="email")
    envelope_from: str = _setting(
        "bounces@localhost",
        "Envelope sender (where bounces go), separate from From.",
        section="email",
    )
    list_id: str = _setting(
        "daily-papers.localhost", "List-Id of the newsletter (a domain-like name).", section="email"
    )
    unsubscribe_mailto: str = _setting(
        "unsubscribe@localhost",
        "Mailbox offered in List-Unsubscribe next to the https link.",
        section="email",
    )
    max_papers_per_email: int = _setting(
        20, "Cap on paper cards per email, to stay under Gmail's 102 KB clip.", section="email"
    )
    send_empty: bool = _setting(
        False, "Send an email even when a subscriber's selection is empty.", section="email"
    )
    template_dir: Path | None = _setting(
        None, "Folder of templates overriding the packaged ones.", section="email"
    )
    # [smtp]
    smtp_host: str = _setting(
        "127.0.0.1", "SMTP server (a relay: Postfix, SES, Postmark...).", section="smtp"
    )
    smtp_port: int = _setting(25, "SMTP port.", section="smtp")
    smtp_tls: str = _setting(
        "starttls", "TLS mode: starttls, tls or none (never a silent downgrade).", section="smtp"
    )
    smtp_user: str = _setting("", "SMTP user name.", section="smtp")
    smtp_password: Secret | None = _setting(
        None, "SMTP password (environment only).", section="smtp", secret=True
    )
    smtp_timeout: float = _setting(
        30.0, "Seconds to wait for connect and for each SMTP reply, DATA included.", section="smtp"
    )
    concurrency: int = _setting(8, "Parallel SMTP connections.", section="smtp")
    rate: float = _setting(0.0, "Messages per second at most (0: no limit).", section="smtp")
    messages_per_connection: int = _setting(
        100, "Recycle a connection after this many messages.", section="smtp"
    )
    retries: int = _setting(
        3, "Attempts per message on temporary failures before leaving it deferred.", section="smtp"
    )
    # [serve]
    serve_host: str = _setting("127.0.0.1", "Address `serve` listens on.", section="serve")
    serve_port: int = _setting(8000, "Port `serve` listens on.", section="serve")
    # secrets
    secret_key: Secret | None = _setting(
        None,
        "Key that signs unsubscribe, preference and feed tokens (environment only).",
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
        given = {k: v for k, v in changes.items() if v is not None}
        return _validate(dataclasses.replace(self, **_coerce_all(given)))

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value, help) for every setting, secrets hidden."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = ("(set)" if value else "(not set)") if f.metadata["secret"] else str(value)
            rows.append((f.name, shown, f.metadata["help"]))
        return rows


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _toml_key(name: str, section: str) -> str:
    prefix = f"{section}_"
    return name[len(prefix) :] if section and name.startswith(prefix) else name


def _coerce(name: str, value: Any) -> Any:
    f = _FIELDS[name]
    kind = f.type if isinstance(f.type, str) else str(f.type)
    try:
        if f.metadata["secret"]:
            return Secret(str(value)) if value else None
        if kind.startswith("Path"):
            return Path(value) if value not in (None, "") else None
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        if kind.startswith("dict"):
            if not isinstance(value, Mapping):
                raise ValueError
            return {
                str(k): "; ".join(v) if isinstance(v, list) else str(v) for k, v in value.items()
            }
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: bad value {value!r} ({f.metadata['help']})") from None


def _coerce_all(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _coerce(name, value) for name, value in values.items()}


def _validate(settings: Settings) -> Settings:
    parts = urlsplit(settings.base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base URL must be an absolute http(s) URL, not {settings.base_url!r}")
    if settings.smtp_tls not in ("starttls", "tls", "none"):
        raise ConfigError(f"SMTP TLS mode must be starttls, tls or none, not {settings.smtp_tls!r}")
    for name in (
        "feed_days",
        "max_papers_per_email",
        "concurrency",
        "messages_per_connection",
        "retries",
    ):
        if getattr(settings, name) < 1:
            raise ConfigError(f"setting {name} must be at least 1")
    for text in (
        settings.from_address,
        settings.reply_to,
        settings.envelope_from,
        settings.list_id,
        settings.site_title,
        settings.unsubscribe_mailto,
    ):
        if "\r" in text or "\n" in text:
            raise ConfigError("settings used in email headers must not contain line breaks")
    return settings


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    by_place = {
        (f.metadata["section"], _toml_key(f.name, f.metadata["section"])): f.name
        for f in _FIELDS.values()
    }
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "topics":
            for sub, item in value.items():
                name = by_place.get((key, sub))
                if name is None:
                    raise ConfigError(f"{path}: unknown setting [{key}] {sub}")
                values[name] = item
        elif key == "topics":
            values["topics"] = value
        elif ("", key) in by_place:
            values[by_place[("", key)]] = value
        else:
            raise ConfigError(f"{path}: unknown setting {key}")
    for name, f in _FIELDS.items():
        if f.metadata["secret"] and name in values:
            raise ConfigError(
                f"{path}: {name} is a secret; set {ENV_PREFIX}{name.upper()} in the environment instead"
            )
    return values


def load_settings(
    *,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the config file (explicit, NEWSLETTER_CONFIG, or ./newsletter.toml), environment, options."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_path or (Path(env["NEWSLETTER_CONFIG"]) if env.get("NEWSLETTER_CONFIG") else None)
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    if path is not None:
        values.update(_from_file(path))
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in env and name != "topics":
            values[name] = env[key]
    if "NEWSLETTER_FROM" in env:  # the short name the docs use
        values["from_address"] = env["NEWSLETTER_FROM"]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _validate(Settings(**_coerce_all(values)))
