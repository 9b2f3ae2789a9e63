"""`newsletter subscribers`: import, list, add, remove and erase subscribers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..audience.describe import describe_filters
from ..audience.importing import import_subscribers_csv
from ..audience.subscribers import (
    escape_controls,
    normalize_email,
    subscribers_csv,
    validate_filters,
    validate_name,
)
from ..delivery.runlock import between_sends
from ..errors import ConfigError
from ..model import CADENCES
from ..store.subscribers import STATUSES
from .common import (
    Group,
    NamedPath,
    common_options,
    database_exists,
    find_subscriber,
    open_store,
    settings_from,
)


@click.group(cls=Group)
def subscribers() -> None:
    """Import, list, add, remove and erase subscribers (only `erase` deletes anything)."""


@subscribers.command("import")
@click.argument("csv_path", metavar="CSV", type=NamedPath(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@click.option("--sync", is_flag=True, help="Mark active subscribers missing from CSV unsubscribed.")
@common_options
def import_command(
    csv_path: Path, dry_run: bool, sync: bool, config_path: Path | None, db: Path | None
) -> None:
    """Add or update subscribers from a CSV, by e-mail; bad rows are named and skipped.

    Columns: email,name,keywords,min_votes[,exclude,max_papers,cadence,status]; keywords are
    ;-separated; cadence is daily (default) or weekly; status active (default), unsubscribed or
    bounced, which unsubscribes (an import never makes anyone active again). Addresses
    erased at their owner's request (`erase`) are left out. Rows are numbered as in a
    spreadsheet: the header is row 1. Exits 1 if any row is rejected.

    Example: newsletter subscribers import subscribers.example.csv --dry-run
    """
    settings = settings_from(config_path, db=db)
    if dry_run and not database_exists(settings):  # a dry run writes nothing, not even a file
        settings = settings.replace(db=Path(":memory:"))
    with open_store(settings, create=True) as store:
        report = import_subscribers_csv(store, csv_path, sync=sync, dry_run=dry_run)
    for error in report.rejected:
        click.echo(str(error), err=True)
    for email in report.unsubscribed:
        click.echo(f"{'would mark' if dry_run else 'marked'} unsubscribed: {email}")
    prefix = "dry run, nothing written: " if dry_run else ""
    click.echo(f"{prefix}{report.source}: {report.summary()}")
    if report.sync_skipped:
        click.echo(
            f"--sync not applied: {len(report.rejected)} rows were rejected, so nobody was "
            "marked unsubscribed; fix them and import again",
            err=True,
        )
    if report.rejected:
        sys.exit(1)


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--csv", "as_csv", is_flag=True, help="Print the CSV `subscribers import` reads (a backup)."
)
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only this status.")
@common_options
def list_command(
    as_json: bool, as_csv: bool, status: str | None, config_path: Path | None, db: Path | None
) -> None:
    """List subscribers with their status and filters.

    Example: newsletter subscribers list --status active --json
             newsletter subscribers list --status active --csv > subscribers.csv
    """
    if as_json and as_csv:
        raise ConfigError("give --json or --csv, not both")
    settings = settings_from(config_path, db=db)
    with open_store(settings) as store:
        found = store.subscribers(status=status)
    if as_csv:
        click.echo(subscribers_csv(found), nl=False)
        return
    if as_json:
        data = [
            {
                "email": s.email,
                "name": s.name,
                "status": s.status,
                "keywords": list(s.filters.keywords),
                "exclude": list(s.filters.exclude),
                "min_votes": s.filters.min_votes,
                "max_papers": s.filters.max_papers,
                "cadence": s.cadence,
            }
            for s in found
        ]
        # JSON escapes C0 itself; C1, DEL and the separators only when told (valid JSON either way).
        click.echo(escape_controls(json.dumps(data, indent=2, ensure_ascii=False), json=True))
        return
    if not found:
        hint = (
            f"no {status} subscribers"
            if status
            else "no subscribers (run: newsletter subscribers import CSV)"
        )
        click.echo(hint)
        return
    for s in found:
        filters = ", ".join(describe_filters(s.filters, clean=str))
        # Stored text may predate validation: a terminal must never act on it.
        weekly = " [weekly]" if s.cadence == "weekly" else ""
        click.echo(escape_controls(f"{s.email:<32} {s.status:<12} {filters}{weekly}"))
    click.echo(f"{len(found)} subscribers")


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--keywords", default="", help='";"-separated phrases; none: every paper.')
@click.option("--exclude", default="", help='";"-separated phrases that remove a paper.')
@click.option("--min-votes", default="0", help="Only papers with at least this many votes.")
@click.option("--max-papers", default="", help="At most this many papers per email.")
@click.option(
    "--cadence",
    type=click.Choice(CADENCES),
    default="daily",
    show_default=True,
    help="Every day's email, or one weekly edition.",
)
@common_options
def add_command(
    email: str,
    name: str,
    keywords: str,
    exclude: str,
    min_votes: str,
    max_papers: str,
    cadence: str,
    config_path: Path | None,
    db: Path | None,
) -> None:
    """Add one active subscriber.

    Example: newsletter subscribers add ana@example.com --keywords "RAG;강화학습" --cadence weekly
    """
    address = normalize_email(email)
    filters = validate_filters(
        keywords=keywords, exclude=exclude, min_votes=min_votes, max_papers=max_papers
    )
    settings = settings_from(config_path, db=db)
    with open_store(settings, create=True) as store:
        added = store.add_subscriber(
            address,
            name=validate_name(name),
            filters=filters,
            cadence=cadence,
        )
    click.echo(f"added {added.email}" + (" (weekly)" if cadence == "weekly" else ""))


@subscribers.command("remove")
@click.argument("email")
@common_options
def remove_command(email: str, config_path: Path | None, db: Path | None) -> None:
    """Mark a subscriber unsubscribed; their record and history stay.

    Example: newsletter subscribers remove ana@example.com
    """
    address = normalize_email(email)
    settings = settings_from(config_path, db=db)
    with open_store(settings) as store:
        found = find_subscriber(store, address)
        changed = store.unsubscribe(found.id)
    click.echo(f"unsubscribed {address}" if changed else f"{address} was already {found.status}")


@subscribers.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Erase without asking first (for scripts).")
@common_options
def erase_command(email: str, yes: bool, config_path: Path | None, db: Path | None) -> None:
    """Forget a person at their request: delete their subscriber record, ledger rows, bounce
    reports and sign-ups, keeping only a hash of the address so that no import adds it back
    (their own confirmed sign-up through the form does). Cannot be undone; `remove` only
    unsubscribes. Refused while a send of this database runs.

    Example: newsletter subscribers erase ana@example.com --yes
    """
    address = normalize_email(email)
    settings = settings_from(config_path, db=db)
    with open_store(settings) as store:
        question = f"erase {address} and every row about them? This cannot be undone"
        try:
            agreed = yes or click.confirm(question)
        except click.Abort:  # no answer: no terminal, or Ctrl-D
            agreed = False
        if not agreed:
            raise ConfigError(f"{address} not erased (pass --yes to erase without being asked)")
        # No send may meet their row half-way: none starts while the erasure commits.
        erased = store.erase_address(address, hold=between_sends(store.path, doing="erase"))
    if not (erased.subscriber_ids or erased.signups or erased.bounces):
        click.echo(f"{address} was not stored; kept as a hash so that no import adds it")
        return
    click.echo(
        f"erased {address}: "
        + ("the subscriber, " if erased.subscriber_ids else "")
        + f"{erased.deliveries} ledger rows, {erased.bounces} bounce reports, "
        f"{erased.signups} sign-ups; the address is kept only as a hash, so no import adds it"
    )
