"""`newsletter send`, `newsletter deliveries` and `newsletter run` (the daily job)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from ..audience.weeks import week_days, week_monday, weekly_due
from ..config import Settings
from ..delivery.outbox import CountingSender, OutboxSender
from ..delivery.pipeline import (
    DeliveryReport,
    Progress,
    Sender,
    send_day,
    send_test_copy,
    smtp_sender,
)
from ..delivery.weekly import send_week, stored_week
from ..digest.ingest import ingest_paths
from ..errors import ConfigError, NewsletterError
from ..publish.build import build_site
from ..store import Store
from ..store.ledger import DELIVERY_STATUSES
from .common import DATE, common_options, open_store, settings_from

F = TypeVar("F", bound=Callable[..., Any])


def send_options(func: F) -> F:
    """The options of every command that sends: server, pace, and what not to do for real."""
    options = [
        click.option(
            "--smtp-host", help="SMTP server, usually a relay [env NEWSLETTER_SMTP_HOST]."
        ),
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
            type=click.IntRange(min=1),
            help="Attempts per message before deferring [3].",
        ),
        click.option(
            "--backoff",
            type=click.FloatRange(min=0),
            default=1.0,
            show_default=True,
            help="Seconds before the first retry; doubles each time.",
        ),
        click.option(
            "--dry-run", is_flag=True, help="Compose and count only: send nothing, record nothing."
        ),
        click.option(
            "--outbox",
            type=click.Path(file_okay=False, path_type=Path),
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
    for option in reversed(options):
        func = option(func)
    return func


def _settings(config_path: Path | None, db: Path | None, options: dict[str, Any]) -> Settings:
    return settings_from(
        config_path,
        db=db,
        smtp_host=options.get("smtp_host"),
        smtp_port=options.get("smtp_port"),
        smtp_tls=options.get("smtp_tls"),
        concurrency=options.get("concurrency"),
        rate=options.get("rate"),
        retries=options.get("retries"),
    )


@contextlib.contextmanager
def _progress(store: Store, label: str, *, cadence: str) -> Iterator[Progress | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise (logs, CI)."""
    if not sys.stderr.isatty():
        yield None
        return
    length = store.audience_size(cadence=cadence)
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield lambda outcome: bar.update(1)


def _run(coro_factory: Callable[[], Any]) -> Any:
    """Run the send; SIGTERM (a CI timeout, systemd) stops it like Ctrl-C: in-flight mail finishes."""

    async def main() -> Any:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            if task is not None:
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro_factory()

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise NewsletterError(
            "interrupted: messages in flight were finished; run again to send the rest"
        ) from None


def _sender(settings: Settings, *, dry_run: bool, outbox: Path | None) -> Sender:
    if outbox is not None:
        return OutboxSender(outbox)
    if dry_run:
        return CountingSender()
    return smtp_sender(settings)


def send_and_report(
    store: Store,
    *,
    settings: Settings,
    date: dt.date | None,
    options: dict[str, Any],
    week: str | None = None,
) -> bool:
    """Send one day (or `week`'s weekly edition) as the options say and print the summary.

    Returns False when something is deferred, failed or ambiguous, or the run stopped.
    """
    dry_run, outbox = bool(options.get("dry_run")), options.get("outbox")
    to_address = options.get("to_address")
    weekly = week is not None
    digest = stored_week(store, week).digest() if week is not None else store.digest_for(date)
    label = week if week is not None else str(digest.date)
    sender = _sender(settings, dry_run=dry_run, outbox=outbox)

    if to_address:
        from ..audience.subscribers import normalize_email
        from ..mail.compose import Composer

        address = normalize_email(to_address)
        composer = Composer(settings=settings, digest=digest, clock=store.clock, weekly=weekly)

        async def test_copy() -> Any:
            try:
                return await send_test_copy(
                    store=store, compose=composer.compose, sender=sender, to=address
                )
            finally:
                await sender.aclose()

        message = _run(test_copy)
        if message is None:
            raise NewsletterError(f"{label}: nothing to send (every selection is empty)")
        verb = "would send" if dry_run else "wrote" if outbox else "sent"
        click.echo(f"{verb} a test copy of {label} to {address} ({len(message.data)} bytes)")
        return True

    record = not (dry_run or outbox)
    with _progress(store, f"sending {label}", cadence="weekly" if weekly else "daily") as progress:
        common: dict[str, Any] = {
            "store": store,
            "settings": settings,
            "sender": sender,
            "clock": store.clock,
            "resend_ambiguous": bool(options.get("resend_ambiguous")),
            "record": record,
            "backoff": float(options.get("backoff") or 0.0),
            "progress": progress,
        }

        async def send() -> DeliveryReport:
            try:
                if week is not None:
                    return await send_week(week=week, **common)
                return await send_day(date=digest.date, **common)
            finally:
                await sender.aclose()

        report: DeliveryReport = _run(send)
    return _print_report(report, outbox=outbox, label=label, weekly=weekly)


def _print_report(
    report: DeliveryReport, *, outbox: Path | None, label: str, weekly: bool = False
) -> bool:
    """Print what a run did; whether it went well (a dry run that was not stopped always did)."""
    handed_over = report.sent + report.deferred + report.failed
    if report.stopped is None or handed_over:
        click.echo(f"{label}: {report.summary()}")
    if outbox is not None:
        click.echo(f"wrote {report.sent} .eml files to {outbox}")
    hint = f"newsletter deliveries --{'week' if weekly else 'date'} {label}"
    if report.ambiguous:
        click.echo(
            f"warning: {report.ambiguous} messages were claimed by a run that stopped mid-send and may "
            f"or may not have gone out; see `{hint} --status claimed`, resend with --resend-ambiguous",
            err=True,
        )
    if report.deferred or report.failed:
        click.echo(
            f"see `{hint}` for the errors; deferred messages go out on the next run", err=True
        )
    if report.stopped is not None:
        click.echo(f"error: {report.stopped}", err=True)
    return (report.dry_run and report.stopped is None) or report.ok


@click.command()
@click.option("--date", type=DATE, help="Day to send (YYYY-MM-DD) [default: the newest digest].")
@click.option(
    "--week",
    metavar="YYYY-Www",
    help="Send this ISO week's weekly edition (e.g. 2025-W09) to weekly subscribers instead.",
)
@send_options
@common_options
def send(
    date: dt.datetime | None,
    week: str | None,
    config_path: Path | None,
    db: Path | None,
    **options: Any,
) -> None:
    """Send a day's email to every active daily subscriber who has not had it yet.

    With --week, send that week's edition to the weekly subscribers instead. Each message is
    claimed in the ledger before it is sent and marked sent on the server's 250, so re-running
    sends only what is missing. Exits 0 only when nothing is deferred, failed or ambiguous.

    Example: NEWSLETTER_SMTP_HOST=relay.example.com newsletter send --date 2024-12-13
    """
    if date is not None and week is not None:
        raise click.UsageError("give --date or --week, not both")
    settings = _settings(config_path, db, options)
    with open_store(settings) as store:
        ok = send_and_report(
            store,
            settings=settings,
            date=date.date() if date else None,
            options=options,
            week=week,
        )
    if not ok:
        sys.exit(1)


@click.command()
@click.option("--date", type=DATE, help="Day (YYYY-MM-DD) [default: the newest digest].")
@click.option("--week", metavar="YYYY-Www", help="The weekly edition of this ISO week instead.")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), help="Only rows in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def deliveries(
    date: dt.datetime | None,
    week: str | None,
    status: str | None,
    as_json: bool,
    config_path: Path | None,
    db: Path | None,
) -> None:
    """Show the delivery ledger of a day: who was sent what, and what failed.

    Example: newsletter deliveries --date 2024-12-13 --status deferred
    """
    settings = settings_from(config_path, db=db)
    with open_store(settings) as store:
        kind = "weekly" if week is not None else "daily"
        day = stored_week(store, week).monday if week is not None else None
        day = day or (date.date() if date else store.latest_date())
        if day is None:
            raise NewsletterError("no digests stored yet (run: newsletter ingest PATH)")
        counts = store.delivery_counts(day, kind=kind)
        rows = store.deliveries(day, status=status, kind=kind)
        if as_json:
            data = {
                "date": day.isoformat(),
                "kind": kind,
                "counts": counts,
                "deliveries": [
                    {
                        "subscriber_id": r.subscriber_id,
                        "email": r.email,
                        "status": r.status,
                        "message_id": r.message_id,
                        "attempts": r.attempts,
                        "last_error": r.last_error,
                        "claimed_at": r.claimed_at,
                        "updated_at": r.updated_at,
                    }
                    for r in rows
                ],
            }
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
            return
        shown = week if week is not None else day
        click.echo(f"{shown}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        for r in rows:
            error = f"  {r.last_error}" if r.last_error else ""
            click.echo(f"{r.status:<9} {r.attempts:>2}  {r.updated_at}  {r.email}{error}")


@click.command("run")
@click.argument(
    "digest_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="DIGEST_DIR",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Site folder [env NEWSLETTER_SITE_DIR; default ./site].",
)
@send_options
@common_options
def run_daily(
    digest_dir: Path,
    out_dir: Path | None,
    config_path: Path | None,
    db: Path | None,
    **options: Any,
) -> None:
    """The daily job: ingest new digests, rebuild the site and feeds, send the newest day.

    On the `weekly_day` setting's weekday (default Monday) it also sends last week's weekly
    edition to weekly subscribers.

    Run it from cron or CI; keep the database between runs (it holds the delivery ledger).

    Example: newsletter run digests/ --out public/
    """
    settings = _settings(config_path, db, options)
    if out_dir is not None:
        settings = settings.replace(site_dir=out_dir)
    with open_store(settings) as store:
        report = ingest_paths(store, [digest_dir])
        for warning in report.warnings:
            click.echo(str(warning), err=True)
        for failed in report.failed:
            click.echo(f"error: {failed.error}", err=True)
        counts = ", ".join(
            f"{report.count(s)} {s}" for s in ("added", "updated", "unchanged", "failed")
        )
        click.echo(f"ingested {len(report.files)} files: {counts}")
        if not report.files and store.latest_date() is None:
            raise ConfigError(f"{digest_dir}: no digest files found (expected .md files)")
        built = build_site(store, settings=settings)
        click.echo(
            f"built {built.out_dir}: {len(built.written)} written, {len(built.unchanged)} unchanged"
        )
        # Failed files were reported above; the ledger makes sending the newest stored day safe.
        ok = send_and_report(store, settings=settings, date=None, options=options)
        # On the weekly day, last week's edition too (the ledger makes a second run a no-op).
        due = weekly_due(store.clock().date(), weekly_day=settings.weekly_day)
        if due is not None and not store.digests(list(week_days(week_monday(due)))):
            click.echo(f"{due}: no digests stored for that week, so no weekly edition")
        elif due is not None:
            ok = (
                send_and_report(store, settings=settings, date=None, options=options, week=due)
                and ok
            )
        if report.failed or not ok:
            sys.exit(1)
