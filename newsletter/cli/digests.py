"""`newsletter ingest` and `newsletter digests`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ..audience.subscribers import escape_controls
from ..digest.ingest import ingest_paths
from ..text import shown_path
from .common import NamedPath, common_options, open_store, settings_from


@click.command()
@click.argument("paths", nargs=-1, required=True, type=NamedPath(path_type=Path))
@common_options
def ingest(paths: tuple[Path, ...], config_path: Path | None, db: Path | None) -> None:
    """Parse digest files (or folders of them) and store them.

    Example: newsletter ingest examples/digests/
    """
    settings = settings_from(config_path, db=db)
    if not any(os.path.lexists(path) for path in paths):
        # Nothing to read: say so without creating a database a mistyped path would leave.
        for path in paths:
            click.echo(f"error: {escape_controls(shown_path(path))}: no such file", err=True)
        click.echo(f"failed: {', '.join(escape_controls(shown_path(p)) for p in paths)}", err=True)
        sys.exit(1)
    with open_store(settings, create=True) as store:
        report = ingest_paths(store, list(paths))
    # Digest text quoted in a message prints as stored: no control character reaches the terminal.
    for warning in report.warnings:
        click.echo(escape_controls(str(warning)), err=True)
    for f in report.files:
        if f.status == "failed":
            click.echo(f"error: {escape_controls(f.error or '')}", err=True)
        else:
            click.echo(f"{f.path}: {f.status} {f.date} ({f.paper_count} papers)")
    if not report.files:
        click.echo("error: no digest files found (expected .md files)", err=True)
        sys.exit(1)
    click.echo(report.summary())
    if report.failed:
        click.echo(f"failed: {', '.join(f.path for f in report.failed)}", err=True)
        sys.exit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def digests(as_json: bool, config_path: Path | None, db: Path | None) -> None:
    """List stored digests: date, paper count and top votes.

    Example: newsletter digests --json
    """
    settings = settings_from(config_path, db=db)
    with open_store(settings) as store:
        rows = store.digest_summaries()
    if as_json:
        data = [
            {"date": r.date.isoformat(), "papers": r.paper_count, "top_votes": r.top_votes}
            for r in rows
        ]
        click.echo(json.dumps(data, indent=2))
        return
    if not rows:
        click.echo("no digests stored yet (run: newsletter ingest PATH)")
        return
    click.echo(f"{'date':<12}{'papers':>7}{'top votes':>11}")
    for r in rows:
        top = "-" if r.top_votes is None else str(r.top_votes)
        click.echo(f"{r.date.isoformat():<12}{r.paper_count:>7}{top:>11}")
