"""What every command shares: the error boundary, common options and settings loading."""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from ..audience.subscribers import escape_controls, normalize_email
from ..config import Settings, load_settings, unknown_environment
from ..errors import Interrupted, NewsletterError, StoreError, SubscriberError
from ..model import Subscriber
from ..store import Store
from ..text import shown_path

F = TypeVar("F", bound=Callable[..., Any])


class Group(click.Group):
    """A click group that turns any NewsletterError into one line on stderr and exit 1 (130 or
    143 when Ctrl-C or SIGTERM stopped the command)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Python decodes argv bytes that are not UTF-8 to lone surrogates, which fail later
        # (printing, SQLite) with a traceback; refuse them here, once, for every command.
        if ctx.parent is None:
            for arg in args:
                try:
                    arg.encode("utf-8")
                except UnicodeEncodeError:
                    click.echo(f"error: argument '{shown_path(arg)}' is not UTF-8 text", err=True)
                    ctx.exit(1)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            # The message may quote a digest, a CSV or a reply: no control character reaches
            # the terminal (an ESC ] sequence would retitle the window).
            click.echo(f"error: {escape_controls(str(exc))}", err=True)
            sys.exit(exc.exit_code if isinstance(exc, Interrupted) else 1)
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) in any other command: click would
            # say "Aborted!" and exit 1. The work's own cleanup ran on the way here.
            click.echo("error: interrupted", err=True)
            sys.exit(Interrupted("interrupted", signum=stop_signal()).exit_code)


_STOPPED_BY: list[int] = []  # SIGTERM, once it came


def stop_like_ctrl_c() -> None:
    """Make SIGTERM (systemd, a CI timeout, kill) stop a command as Ctrl-C does: by raising
    KeyboardInterrupt where it runs, so the files it was writing are removed, not left half
    written, and it exits 143. (Sends and serve put handlers of their own while they run.)"""

    def terminate(signum: int, frame: object) -> None:
        _STOPPED_BY.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)


def stop_signal() -> int:
    """The signal a KeyboardInterrupt stands for: SIGTERM once it came, else Ctrl-C's SIGINT."""
    return _STOPPED_BY[0] if _STOPPED_BY else signal.SIGINT


class _Date(click.DateTime):
    """A YYYY-MM-DD date, shown as such in --help."""

    name = "date"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "YYYY-MM-DD"


DATE = _Date(formats=["%Y-%m-%d"])


class NamedPath(click.Path):
    """click.Path refusing an empty name: `--out ""` or `--db ""` would otherwise become the
    current folder ('.'), and a build or an ingest would run there."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value:
            self.fail("an empty name is not a path", param, ctx)
        return super().convert(value, param, ctx)


class Seconds(click.FloatRange):
    """A number of seconds in a range: click's FloatRange lets nan through (every comparison
    with it is false), and a wait of nan or inf seconds never ends."""

    name = "number of seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return number


# --date for commands that read one digest; passed to the command as `day`.
date_option = click.option(
    "--date",
    "day",
    type=DATE,
    default=None,
    help="Digest date YYYY-MM-DD [default: the newest stored].",
)


def config_option(func: F) -> F:
    """Add --config to a command (one that does not open the database)."""
    return click.option(
        "--config",
        "config_path",
        type=NamedPath(dir_okay=False, path_type=Path),
        default=None,
        help="Config file [env NEWSLETTER_CONFIG; default ./newsletter.toml if present].",
    )(func)


def common_options(func: F) -> F:
    """Add --config and --db to a command."""
    func = click.option(
        "--db",
        "db",
        type=NamedPath(dir_okay=False, path_type=Path),
        default=None,
        help="SQLite database [env NEWSLETTER_DB; default ./newsletter.db].",
    )(func)
    return config_option(func)


def settings_from(
    config_path: Path | None, *, option_names: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """The settings for this command: file, environment, then these command-line options.

    `option_names` spells an option whose name is not the setting's (`{"serve_port": "--port"}`).
    """
    settings = load_settings(
        config_path=config_path, overrides=overrides, option_names=option_names
    )
    for warning in unknown_environment():
        click.echo(warning, err=True)
    return settings


def find_subscriber(store: Store, email: str) -> Subscriber:
    """The subscriber with this address (normalised), whatever their status, or a SubscriberError."""
    address = normalize_email(email)
    found = store.subscriber_by_email(address)
    if found is None:
        raise SubscriberError(f"no subscriber {address}", code="not_found", field="email")
    return found


def database_exists(settings: Settings) -> bool:
    """Whether the settings' database is there: a file with something in it (SQLite takes an
    empty file for a new database), or the in-memory one."""
    if str(settings.db) == ":memory:":
        return True
    try:
        return Path(settings.db).stat().st_size > 0
    except FileNotFoundError:
        return False
    except OSError:  # there, but not to be looked at: opening it says why
        return True


def open_store(settings: Settings, *, create: bool = False) -> Store:
    """The store the settings name, its content checked for damage; use it as a context manager.

    The check reads the digest and subscriber tables (milliseconds): every command reads or
    writes them, and a damaged page there would otherwise show, publish or send wrong text.
    Only the commands that bring data in `create` a database that is not there: the others
    would leave an empty file behind a mistyped --db and answer as if it were the real one.
    """
    if not create and not database_exists(settings):
        raise StoreError(
            f"{settings.db}: no database here (`newsletter ingest` or `newsletter subscribers "
            "import` creates one)"
        )
    store = Store(settings.db)
    try:
        store.check_integrity()
    except BaseException:
        store.close()
        raise
    return store
