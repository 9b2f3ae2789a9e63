"""Settings: read once at the edge (file, then environment, then options) and passed in frozen.

Precedence, lowest first: defaults < `newsletter.toml` < `NEWSLETTER_*` environment < options.
Secrets (the HMAC key, the SMTP password) come only from the environment and never print.
Every setting has a kind, one function per type of value (port, host, address, number...)
that reads a raw value from any source; a bad value is one ConfigError line naming the
setting and its source: the file and key, the environment variable or the option.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import setting_kinds as kinds
from .errors import ConfigError
from .setting_kinds import KEY_HOWTO, WEEKDAYS, Kind, Secret, key_weakness

__all__ = [
    "KEY_HOWTO",
    "WEEKDAYS",
    "ConfigError",
    "Secret",
    "Settings",
    "key_weakness",
    "load_settings",
    "unknown_environment",
]

ENV_PREFIX = "NEWSLETTER_"
DEFAULT_CONFIG = Path("newsletter.toml")
MAX_CONFIG_BYTES = 1024 * 1024
# Read from the environment by name, not as a setting of their own.
_OTHER_ENV = (
    "NEWSLETTER_CONFIG",
    "NEWSLETTER_FROM",
    "NEWSLETTER_IMAP_PASSWORD",
    "NEWSLETTER_PURE_PYTHON",
)


def _setting(
    default: Any, help: str, *, kind: Kind, section: str = "", secret: bool = False
) -> Any:
    """A settings field: help text, `kind` (how a given value is read), table in newsletter.toml."""
    metadata = {"help": help, "kind": kind, "section": section, "secret": secret}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, with its help text and kind next to it."""

    # [store]
    db: Path = _setting(Path("newsletter.db"), "SQLite database file.", kind=kinds.path())
    # [site]
    base_url: str = _setting(
        "http://127.0.0.1:8000",
        "Absolute URL where the site and feeds are published.",
        kind=kinds.url,
        section="site",
    )
    site_title: str = _setting(
        "Daily Papers",
        "Name of the digest in feeds, pages and emails.",
        kind=kinds.short_text(200),
        section="site",
    )
    site_dir: Path = _setting(
        Path("site"), "Folder `build` writes and `serve` serves.", kind=kinds.path(), section="site"
    )
    feed_days: int = _setting(
        30,
        "How many of the newest days the feeds cover.",
        kind=kinds.whole(1, 3650),
        section="site",
    )
    private_feed_bytes: int = _setting(
        512 * 1024,
        "Most bytes of a subscriber's private feed; its oldest papers are left out beyond it.",
        kind=kinds.whole(4096, 100 * 1024 * 1024),
        section="site",
    )
    weekly_papers: int = _setting(
        10,
        "Papers per week in the weekly feeds (most votes first).",
        kind=kinds.whole(1, 1000),
        section="site",
    )
    websub_hub: str = _setting(
        "",
        "WebSub hub the public feeds name (rel=hub) and `build --ping` notifies; empty: none.",
        kind=kinds.url_or_empty,
        section="site",
    )
    feed_max_entries: int = _setting(
        150,
        "Entries at most in each main, topic and daily feed; older papers are in archive/.",
        kind=kinds.whole(1, 100_000),
        section="site",
    )
    feed_max_bytes: int = _setting(
        500_000,
        "Bytes at most of each feed file (fewer entries when they would not fit).",
        kind=kinds.whole(10_000, 100 * 1024 * 1024),
        section="site",
    )
    topics: dict[str, str] = _setting(
        {}, 'Topic feeds: name = "keyword; keyword".', kind=kinds.topics, section="topics"
    )
    # [email]
    from_address: str = _setting(
        "Daily Papers <digest@localhost>",
        "From header of every email.",
        kind=kinds.mailbox(display_name=True),
        section="email",
    )
    reply_to: str = _setting(
        "",
        "Reply-To header (empty: none).",
        kind=kinds.mailbox(display_name=True, optional=True),
        section="email",
    )
    envelope_from: str = _setting(
        "bounces@localhost",
        "Envelope sender (where bounces go), separate from From.",
        kind=kinds.mailbox(display_name=False),
        section="email",
    )
    verp: bool = _setting(
        True,
        "Give each email its own return path, envelope_from with a signed token "
        "(bounces+TOKEN@...); off for relays that allow only the one address.",
        kind=kinds.boolean,
        section="email",
    )
    list_id: str = _setting(
        "daily-papers.localhost",
        "List-Id of the newsletter (a domain-like name).",
        kind=kinds.list_id,
        section="email",
    )
    unsubscribe_mailto: str = _setting(
        "",
        "Mailbox offered in List-Unsubscribe next to the one-click https link (empty: none; "
        "set it only to a mailbox someone reads and acts on).",
        kind=kinds.mailbox(display_name=False, optional=True),
        section="email",
    )
    max_papers_per_email: int = _setting(
        20,
        "Cap on paper cards per email, to stay under Gmail's 102 KB clip (1 to 1000).",
        kind=kinds.whole(1, 1000),  # as a subscriber's own cap (audience.subscribers.MAX_PAPERS)
        section="email",
    )
    send_empty: bool = _setting(
        False,
        "Send an email even when a subscriber's selection is empty.",
        kind=kinds.boolean,
        section="email",
    )
    weekly_day: str = _setting(
        "monday",
        "Weekday on which `newsletter run` sends the weekly edition of the week before.",
        kind=kinds.choice(*WEEKDAYS),
        section="email",
    )
    template_dir: Path | None = _setting(
        None,
        "Folder of templates overriding the packaged ones.",
        kind=kinds.path(optional=True),
        section="email",
    )
    # [smtp]
    smtp_host: str = _setting(
        "127.0.0.1",
        "SMTP server (a relay: Postfix, SES, Postmark...).",
        kind=kinds.host,
        section="smtp",
    )
    smtp_port: int = _setting(25, "SMTP port.", kind=kinds.PORT, section="smtp")
    smtp_tls: str = _setting(
        "starttls",
        "TLS mode: starttls, tls or none (never a silent downgrade).",
        kind=kinds.choice("starttls", "tls", "none"),
        section="smtp",
    )
    smtp_user: str = _setting("", "SMTP user name.", kind=kinds.text, section="smtp")
    smtp_password: Secret | None = _setting(
        None, "SMTP password (environment only).", kind=kinds.secret, section="smtp", secret=True
    )
    smtp_timeout: float = _setting(
        30.0,
        "Seconds to wait for connect and for each SMTP reply, DATA included.",
        kind=kinds.number(0, above=True),
        section="smtp",
    )
    concurrency: int = _setting(
        8, "Parallel SMTP connections.", kind=kinds.whole(1, 512), section="smtp"
    )
    rate: float = _setting(
        0.0, "Messages per second at most (0: no limit).", kind=kinds.number(0), section="smtp"
    )
    messages_per_connection: int = _setting(
        100,
        "Recycle a connection after this many messages.",
        kind=kinds.whole(1, 100_000),
        section="smtp",
    )
    retries: int = _setting(
        3,
        "Attempts per message on temporary failures before leaving it deferred.",
        kind=kinds.whole(1, 100),
        section="smtp",
    )
    # [dkim]
    dkim_selector: str = _setting(
        "",
        "DKIM selector: the key is published at SELECTOR._domainkey.DOMAIN (empty: no signing).",
        kind=kinds.optional(kinds.dns_label),
        section="dkim",
    )
    dkim_domain: str = _setting(
        "",
        "DKIM signing domain (d=), normally the From address's domain.",
        kind=kinds.optional(kinds.host),
        section="dkim",
    )
    dkim_key_file: Path | None = _setting(
        None,
        "PEM private key (RSA or ed25519) made by `newsletter dkim keygen`.",
        kind=kinds.path(optional=True),
        section="dkim",
    )
    # [bounces]
    bounces_soft_limit: int = _setting(
        3,
        "Soft bounces (4.x.x) within bounces_soft_days that mark a subscriber bounced.",
        kind=kinds.whole(1, 1000),
        section="bounces",
    )
    bounces_soft_days: int = _setting(
        14, "Days over which soft bounces count.", kind=kinds.whole(1, 3650), section="bounces"
    )
    ses_topic_arns: tuple[str, ...] = _setting(
        (),
        "SNS topics whose SES bounce and complaint notifications POST /hooks/ses accepts "
        "(empty: the hook is off).",
        kind=kinds.topic_arns,
        section="bounces",
    )
    # [serve]
    serve_host: str = _setting(
        "127.0.0.1", "Address `serve` listens on.", kind=kinds.host, section="serve"
    )
    serve_port: int = _setting(8000, "Port `serve` listens on.", kind=kinds.PORT, section="serve")
    trusted_proxies: tuple[str, ...] = _setting(
        (),
        "Reverse proxies (IPs or CIDR networks) whose X-Forwarded-For names the client; "
        "empty: X-Forwarded-For is never believed.",
        kind=kinds.networks,
        section="serve",
    )
    serve_max_connections: int = _setting(
        1000,
        "Open connections `serve` keeps at most (requests beyond get 503, connections are closed).",
        kind=kinds.whole(1, 100_000),
        section="serve",
    )
    serve_header_timeout: float = _setting(
        10.0,
        "Seconds a client may take to send a request's headers.",
        kind=kinds.number(0, above=True),
        section="serve",
    )
    # secrets
    secret_key: Secret | None = _setting(
        None,
        "Key that signs unsubscribe, preference and feed tokens (environment only).",
        kind=kinds.secret,
        secret=True,
    )

    postmark_hook_user: Secret | None = _setting(
        None,
        "User name Postmark gives when it posts to /hooks/postmark (environment only; "
        "unset: the hook is off).",
        kind=kinds.secret,
        secret=True,
    )
    postmark_hook_password: Secret | None = _setting(
        None,
        "Password Postmark gives when it posts to /hooks/postmark (environment only).",
        kind=kinds.secret,
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


def _read_config(file: Path) -> str:
    """The config file's text: a regular file (a FIFO would block for ever, /dev/zero never
    end) of at most MAX_CONFIG_BYTES, UTF-8."""
    try:
        if not stat.S_ISREG(os.stat(file).st_mode):
            raise ConfigError(f"{file}: cannot read config file: not a regular file")
        with file.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{file}: cannot read config file: over {MAX_CONFIG_BYTES:,} bytes (it is a few lines)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc}") from None


def _from_file(file: Path) -> dict[str, tuple[Any, str]]:
    try:
        data = tomllib.loads(_read_config(file))
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


def _utf8(value: str, name: str) -> str:
    """An environment value, or a ConfigError when its bytes are not UTF-8 (Python keeps such
    bytes as surrogates, which fail later, wherever the value is first encoded)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ConfigError(f"{name}: holds bytes that are not UTF-8 text") from None
    return value


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
            values[name] = (_utf8(env[key], key), key)
    if "NEWSLETTER_FROM" in env:  # the short name the docs use
        values["from_address"] = (
            _utf8(env["NEWSLETTER_FROM"], "NEWSLETTER_FROM"),
            "NEWSLETTER_FROM",
        )
    for name, value in (overrides or {}).items():
        if value is not None:
            option = (option_names or {}).get(name) or f"--{name.replace('_', '-')}"
            values[name] = (value, f"option {option}")
    return Settings(**_coerce_all(values))


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per `NEWSLETTER_*` variable nothing reads: a typo would otherwise do nothing.

    The likely one is the name without a section's name in front, which most variables do not
    carry (`NEWSLETTER_EMAIL_LIST_ID` is `NEWSLETTER_LIST_ID`, `NEWSLETTER_SMTP_RATE` is
    `NEWSLETTER_RATE`); else the closest name (a typo: `NEWSLETTER_ENVELOP_FROM`).
    """
    env = os.environ if environ is None else environ
    known = sorted(
        {ENV_PREFIX + name.upper() for name in _FIELDS if name != "topics"} | set(_OTHER_ENV)
    )
    names = {k.removeprefix(ENV_PREFIX): k for k in known}  # compared without the prefix
    sections = {str(f.metadata["section"]).upper() for f in _FIELDS.values()} - {""}
    warnings = []
    for key in sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known):
        name = key.removeprefix(ENV_PREFIX).upper()  # variable names are read as written
        first, _, rest = name.partition("_")
        if first in sections:  # `[email] reply_to` is NEWSLETTER_REPLY_TO, typos and all
            name = rest if rest in names else name
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
            close = close or difflib.get_close_matches(rest, names, n=1, cutoff=0.75)
        else:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
        guesses = [ENV_PREFIX + name] if name in names else [names[c] for c in close]
        hint = f"; did you mean {guesses[0]}?" if guesses else ""
        if name == "TOPICS" or name.startswith("TOPICS_"):
            hint = "; topics are set in the config file's [topics] table"
        warnings.append(f"warning: {key} is not a setting and is ignored{hint}")
    return warnings
