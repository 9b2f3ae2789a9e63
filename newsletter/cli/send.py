"""`newsletter send`, and what `newsletter run` (cli/run.py) shares with it: the send options,
the progress bar, running a send with its signals, and the printed report."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ..audience.subscribers import normalize_email
from ..audience.weeks import week_days
from ..config import Settings
from ..daily import send_day, send_test_day
from ..delivery.outbox import CountingSender, OutboxSender
from ..delivery.pipeline import DeliveryReport, Progress, Sender
from ..delivery.weekly import send_week, stored_week
from ..errors import ConfigError, Interrupted, NewsletterError
from ..store import Store
from .common import (
    DATE,
    NamedPath,
    Seconds,
    common_options,
    open_store,
    settings_from,
    stop_signal,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SendOptions:
    """The options of every command that sends (see `send_options` for their help)."""

    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_tls: str | None = None
    concurrency: int | None = None
    rate: float | None = None
    retries: int | None = None
    backoff: float = 1.0
    dry_run: bool = False
    outbox: Path | None = None
    to_address: str | None = None
    resend_ambiguous: bool = False
    processes: int = 1

    @property
    def record(self) -> bool:
        """Whether the ledger is written: not for dry runs and outboxes."""
        return not (self.dry_run or self.outbox)

    def settings(self, config_path: Path | None, db: Path | None) -> Settings:
        """The settings for a sending command: file, environment, then these options."""
        return settings_from(
            config_path,
            db=db,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_tls=self.smtp_tls,
            concurrency=self.concurrency,
            rate=self.rate,
            retries=self.retries,
        )

    def sender(self, settings: Settings) -> Sender:
        """An outbox folder, a counter (dry run) or the SMTP server the settings name."""
        if self.outbox is not None:
            return OutboxSender(self.outbox)
        if self.dry_run:
            return CountingSender()
        from ..delivery.smtp import smtp_sender  # aiosmtplib loads only when mail really goes

        return smtp_sender(settings)


_SEND_OPTIONS = [
    click.option("--smtp-host", help="SMTP server, usually a relay [env NEWSLETTER_SMTP_HOST]."),
    click.option("--smtp-port", type=int, help="SMTP port [env NEWSLETTER_SMTP_PORT; 25]."),
    click.option(
        "--smtp-tls",
        type=click.Choice(["starttls", "tls", "none"]),
        help="TLS mode, never downgraded [env NEWSLETTER_SMTP_TLS; starttls]. "
        "User and password come only from NEWSLETTER_SMTP_USER / _PASSWORD.",
    ),
    click.option(
        "--concurrency", type=click.IntRange(1, 512), help="Parallel SMTP connections [8]."
    ),
    click.option(
        "--rate",
        type=click.FloatRange(min=0),
        help="At most N messages per second [0: no limit].",
    ),
    click.option(
        "--retries",
        type=click.IntRange(1, 100),
        help="Attempts per message before deferring [3].",
    ),
    click.option(
        "--backoff",
        type=Seconds(min=0, max=3600),
        default=1.0,
        show_default=True,
        help="Seconds before the first retry; doubles each time.",
    ),
    click.option(
        "--dry-run", is_flag=True, help="Compose and count only: send nothing, record nothing."
    ),
    click.option(
        "--outbox",
        type=NamedPath(file_okay=False, path_type=Path),
        help="Write .eml files into DIR instead of sending (the ledger is read, not written).",
    ),
    click.option(
        "--to",
        "to_address",
        metavar="ADDRESS",
        help="Send one test copy (first non-empty selection) to ADDRESS; no ledger.",
    ),
    click.option(
        "--resend-ambiguous",
        is_flag=True,
        help="Also resend claims a crashed run left unresolved (their recipients may get two).",
    ),
]
_SEND_FIELDS = tuple(f.name for f in dataclasses.fields(SendOptions))
# `send` only: `run` sends the newest day from one process.
_PROCESSES = click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Send from N processes, each with its share of subscribers and connections "
    "(one core each; SMTP only).",
)


def send_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add the options of every command that sends; the command gets them as `options: SendOptions`."""

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> None:
        options = SendOptions(**{name: kwargs.pop(name) for name in _SEND_FIELDS if name in kwargs})
        func(*args, options=options, **kwargs)

    for option in reversed(_SEND_OPTIONS):
        command = option(command)
    return command


@contextlib.contextmanager
def _progress(
    store: Store, label: Callable[[], str], *, cadence: str = "daily"
) -> Iterator[Progress | None]:
    """A progress bar on stderr when it is a terminal, shown from the first message; else nothing.

    The label is asked for when the bar appears: `run` knows the day only after its ingest.
    """
    if not sys.stderr.isatty():
        yield None
        return
    with contextlib.ExitStack() as stack:
        bars: list[Any] = []

        def update(outcome: str) -> None:
            if not bars:
                bar = click.progressbar(
                    length=store.audience_size(cadence=cadence), label=label(), file=sys.stderr
                )
                bars.append(stack.enter_context(bar))
            bars[0].update(1)

        yield update


def _run(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the send; SIGTERM (a CI timeout, systemd) stops it like Ctrl-C: in-flight mail finishes.

    The handler is a plain signal handler, not the loop's: it runs even while the loop is
    held by synchronous work (the search index after a daily run's last await), and the
    handler that was there before (stop_like_ctrl_c's) is put back after.
    """
    signals: list[int] = []  # SIGTERM, once it came
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[T]]] = []

    def terminate(signum: int, frame: object) -> None:
        signals.append(signum)
        for loop, task in running:
            loop.call_soon_threadsafe(task.cancel)  # at the task's next await

    async def main() -> T:
        task = asyncio.current_task()
        if task is not None:
            running.append((asyncio.get_running_loop(), task))
        return await coro_factory()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        result = asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted(signum=signals[0] if signals else stop_signal()) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if signals:  # it came after the last await, the task already done: stop all the same
        raise Interrupted(signum=signals[0])
    return result


def _send_test_copy(
    store: Store, *, settings: Settings, date: dt.date, options: SendOptions, to: str
) -> None:
    """Send one test copy of the day to `to` and say so (`--to`)."""
    sender = options.sender(settings)
    address = normalize_email(to)

    async def test_copy() -> tuple[dt.date, Any]:
        try:
            return await send_test_day(
                store=store,
                settings=settings,
                sender=sender,
                to=address,
                date=date,
                clock=store.clock,
            )
        finally:
            await sender.aclose()

    day, message = _run(test_copy)
    if message is None:
        raise NewsletterError(f"{day}: nothing to send (every selection is empty)")
    verb = "would send" if options.dry_run else "wrote" if options.outbox else "sent"
    click.echo(f"{verb} a test copy of {day} to {address} ({len(message.data)} bytes)")


def _print_report(
    report: DeliveryReport, *, outbox: Path | None, label: str | None = None, weekly: bool = False
) -> int:
    """Print what a run did; its exit code (a dry run that was not stopped always went well)."""
    label = label or str(report.date)
    handed_over = report.sent + report.deferred + report.failed
    if report.stopped is None or handed_over:
        click.echo(f"{label}: {report.summary()}")
    if outbox is not None:
        click.echo(f"wrote {report.sent} .eml files to {outbox}")
    hint = f"newsletter deliveries --{'week' if weekly else 'date'} {label}"
    if report.ambiguous:
        click.echo(
            f"warning: {report.ambiguous} messages were claimed by a run that stopped mid-send "
            f"and may or may not have gone out; see `{hint} --status claimed`; resend them with "
            "--resend-ambiguous",
            err=True,
        )
    if report.deferred or report.failed:
        later = "; deferred messages go out on the next run" if report.deferred else ""
        click.echo(f"see `{hint}` for the errors{later}", err=True)
    if report.already_failed and not report.dry_run:
        edition = f"--{'week' if weekly else 'date'} {label}"
        click.echo(
            f"note: {report.already_failed} messages failed in earlier runs (`{hint} --status "
            f"failed`); once the cause is fixed, `newsletter send {edition} --retry-failed` "
            "sends them",
            err=True,
        )
    if report.stopped is not None:
        click.echo(f"error: {report.stopped}", err=True)
    return report.exit_code


def _send_week(store: Store, *, settings: Settings, week: str, options: SendOptions) -> int:
    """Send `week`'s weekly edition to the weekly subscribers; print the report; its exit code.

    (`send` refuses --to and --processes with --week; `run` sends the week without them.)
    A week that has not ended is refused: its edition would miss the days still to come, and
    the ledger would then keep its readers from the whole one.
    """
    found = stored_week(store, week)  # one line when the week holds no digest, before any sender
    sunday = week_days(found.monday)[-1]
    if sunday >= store.clock().astimezone(dt.UTC).date():
        raise ConfigError(
            f"week {week} has not ended (its Sunday is {sunday}); its edition can go out from "
            "the Monday after, when the daily job sends it on the weekly day"
        )
    report = _deliver(
        functools.partial(send_week, week=week),
        store=store,
        settings=settings,
        options=options,
        label=week,
        cadence="weekly",
    )
    return _print_report(report, outbox=options.outbox, label=week, weekly=True)


def _deliver(
    send: Callable[..., Coroutine[Any, Any, DeliveryReport]],
    *,
    store: Store,
    settings: Settings,
    options: SendOptions,
    label: str,
    cadence: str = "daily",
) -> DeliveryReport:
    """Run `send` (send_day or send_week with its day or week bound) with a new sender, closed
    after, and a progress bar; the options' ledger and retry choices."""
    sender = options.sender(settings)
    with _progress(store, lambda: f"sending {label}", cadence=cadence) as progress:

        async def go() -> DeliveryReport:
            try:
                return await send(
                    store=store,
                    settings=settings,
                    sender=sender,
                    clock=store.clock,
                    resend_ambiguous=options.resend_ambiguous,
                    record=options.record,
                    backoff=options.backoff,
                    progress=progress,
                )
            finally:
                await sender.aclose()

        return _run(go)


@click.command()
@click.option("--date", type=DATE, help="Day to send (YYYY-MM-DD) [default: the newest digest].")
@click.option(
    "--week",
    metavar="YYYY-Www",
    help="Send this ISO week's weekly edition (e.g. 2025-W09) to weekly subscribers instead.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="First put the day's failed messages (to subscribers still active) back to be sent.",
)
@send_options
@_PROCESSES
@common_options
def send(
    date: dt.datetime | None,
    week: str | None,
    retry_failed: bool,
    config_path: Path | None,
    db: Path | None,
    options: SendOptions,
) -> None:
    """Send a day's email to every active daily subscriber who has not had it yet.

    With --week, send that week's edition to the weekly subscribers instead. Each message is
    claimed in the ledger before it is sent and marked sent on the server's 250, so re-running
    sends only what is missing. Exits 0 only when nothing is deferred, failed or ambiguous.
    Failed messages stay failed; --retry-failed sends them again (after a relay was fixed).

    Example: NEWSLETTER_SMTP_HOST=relay.example.com newsletter send --date 2024-12-13
    """
    if date is not None and week is not None:
        raise click.UsageError("give --date or --week, not both")
    if retry_failed and (not options.record or options.to_address):
        raise click.UsageError("--retry-failed records sends: not with --dry-run, --outbox or --to")
    if week is not None and (options.to_address or options.processes > 1):  # before any write
        raise ConfigError("--to and --processes apply to daily sends, not --week")
    settings = options.settings(config_path, db)
    day = date.date() if date else None
    with open_store(settings) as store:
        if retry_failed:
            kind = "weekly" if week is not None else "daily"
            edition = stored_week(store, week).monday if week else store.digest_for(day).date
            reopened = store.reopen_failed(edition, kind=kind)
            click.echo(f"{week or edition}: {reopened} failed messages put back to be sent again")
        if week is not None:
            if _send_week(store, settings=settings, week=week, options=options):
                sys.exit(1)
            return
        digest = store.digest_for(day)
        if options.to_address:
            _send_test_copy(
                store, settings=settings, date=digest.date, options=options, to=options.to_address
            )
            return
        split = options.processes > 1 and options.record
        if not split:
            report = _deliver(
                functools.partial(send_day, date=digest.date),
                store=store,
                settings=settings,
                options=options,
                label=str(digest.date),
            )
    if split:
        # Started once this process holds no database connection: the workers may be forked
        # from it, and SQLite connections must not cross a fork.
        from ..parallel import send_day_in_processes

        report = send_day_in_processes(
            settings=settings,
            date=digest.date,
            processes=options.processes,
            resend_ambiguous=options.resend_ambiguous,
            backoff=options.backoff,
        )
    if _print_report(report, outbox=options.outbox):
        sys.exit(1)
