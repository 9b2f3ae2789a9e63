"""The subscribers CSV into the store: read and validate (pure, in `subscribers`), then upsert."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..model import ImportReport
from ..store import Store
from .subscribers import read_subscribers_csv


def import_subscribers_csv(
    store: Store, path: Path, *, sync: bool = False, dry_run: bool = False
) -> ImportReport:
    """Upsert the CSV's valid rows by e-mail in one transaction; report what changed.

    Subscribers missing from the file are kept; with `sync`, active ones are marked
    unsubscribed, unless a row was rejected: its subscriber would look missing (a stray quote
    can swallow every row after it), so then nobody is (`sync_skipped`). Statuses are never
    changed back to active by an import. A dry run writes nothing and reports what would
    happen.
    """
    read = read_subscribers_csv(path)
    skip = sync and bool(read.rejected)
    report = store.import_subscribers(read.rows, sync=sync and not skip, dry_run=dry_run)
    return replace(report, source=read.source, rejected=read.rejected, sync_skipped=skip)
