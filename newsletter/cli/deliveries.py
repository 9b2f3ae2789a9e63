"""`newsletter deliveries`: the delivery ledger of a day or a week, as lines or JSON."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

import click

from ..delivery.weekly import stored_week
from ..errors import NewsletterError
from ..store.ledger import DELIVERY_STATUSES, Delivery
from .common import DATE, common_options, open_store, settings_from


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
    if week is not None and date is not None:
        raise click.UsageError("give --date or --week, not both")
    settings = settings_from(config_path, db=db)
    with open_store(settings) as store:
        kind = "weekly" if week is not None else "daily"
        if week is not None:
            day: dt.date | None = stored_week(store, week).monday
        else:
            day = date.date() if date else store.latest_date()
        if day is None:
            raise NewsletterError("no digests stored yet (run: newsletter ingest PATH)")
        counts = store.delivery_counts(day, kind=kind)
        rows = store.deliveries(day, status=status, kind=kind)
        if as_json:
            _echo_json(day=day, kind=kind, counts=counts, rows=rows)
            return
        shown = week if week is not None else day
        click.echo(f"{shown}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        for r in rows:
            error = f"  {r.last_error}" if r.last_error else ""
            click.echo(f"{r.status:<9} {r.attempts:>2}  {r.updated_at}  {r.email}{error}")


def _echo_json(
    *, day: dt.date, kind: str, counts: dict[str, int], rows: Iterable[Delivery]
) -> None:
    """The ledger as one JSON object, written row by row: a million rows never sit in memory."""
    head = json.dumps({"date": day.isoformat(), "kind": kind, "counts": counts}, indent=2)
    click.echo(head.removesuffix("\n}") + ',\n  "deliveries": [', nl=False)
    glue = "\n    "
    for r in rows:
        row = {
            "subscriber_id": r.subscriber_id,
            "email": r.email,
            "status": r.status,
            "message_id": r.message_id,
            "attempts": r.attempts,
            "last_error": r.last_error,
            "claimed_at": r.claimed_at,
            "updated_at": r.updated_at,
        }
        text = json.dumps(row, indent=2, ensure_ascii=False).replace("\n", "\n    ")
        click.echo(glue + text, nl=False)
        glue = ",\n    "
    click.echo("\n  ]\n}")
