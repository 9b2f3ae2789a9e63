"""`newsletter run`: the daily job for cron or CI, through the send's options and report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..audience.subscribers import escape_controls
from ..daily import run_daily
from ..digest.ingest import IngestReport
from ..errors import ConfigError
from .common import NamedPath, common_options, open_store
from .send import SendOptions, _print_report, _progress, _run, _send_test_copy, send_options

if TYPE_CHECKING:  # imported by run_daily when it builds
    from ..publish.build import BuildReport


@click.command("run")
@click.argument(
    "digest_dir",
    type=NamedPath(exists=True, file_okay=False, path_type=Path),
    metavar="DIGEST_DIR",
)
@click.option(
    "--out",
    "out_dir",
    type=NamedPath(file_okay=False, path_type=Path),
    help="Site folder [env NEWSLETTER_SITE_DIR; default ./site].",
)
@send_options
@common_options
def run_daily_command(
    digest_dir: Path,
    out_dir: Path | None,
    config_path: Path | None,
    db: Path | None,
    options: SendOptions,
) -> None:
    """The daily job: ingest new digests, rebuild the site and feeds, send the newest day.

    From the `weekly_day` setting's weekday (default Monday) to the end of the week it also
    sends last week's weekly edition to weekly subscribers who have not had it.

    Run it from cron or CI; keep the database between runs (it holds the delivery ledger).

    Example: newsletter run digests/ --out public/
    """
    settings = options.settings(config_path, db)
    if out_dir is not None:
        settings = settings.replace(site_dir=out_dir)
    with open_store(settings, create=True) as store:  # the job ingests first

        def ingested(report: IngestReport) -> None:
            # Digest text quoted in a message prints as stored, as `ingest` prints it.
            for warning in report.warnings:
                click.echo(escape_controls(str(warning)), err=True)
            for failed in report.failed:
                click.echo(f"error: {escape_controls(failed.error or '')}", err=True)
            click.echo(report.summary())
            if not report.files and store.latest_date() is None:
                raise ConfigError(f"{digest_dir}: no digest files found (expected .md files)")

        def built(report: BuildReport) -> None:
            click.echo(
                f"built {report.out_dir}: {len(report.written)} written, "
                f"{len(report.unchanged)} unchanged"
            )

        with _progress(store, lambda: f"sending {store.latest_date()}") as progress:
            # Failed files are reported as they are found; the ledger makes sending the newest
            # stored day safe whatever else is in the folder.
            daily = _run(
                lambda: run_daily(
                    store,
                    settings=settings,
                    digests=[digest_dir],
                    sender_factory=lambda: options.sender(settings),
                    send=not options.to_address,
                    record=options.record,
                    resend_ambiguous=options.resend_ambiguous,
                    backoff=options.backoff,
                    progress=progress,
                    on_ingested=ingested,
                    on_built=built,
                )
            )
        if daily.search_error is not None:
            click.echo(f"warning: search index not rebuilt: {daily.search_error}", err=True)
        if options.to_address:
            newest = store.digest_for(None).date  # "no digests stored yet" when all failed
            _send_test_copy(
                store, settings=settings, date=newest, options=options, to=options.to_address
            )
        elif daily.delivery is not None:
            _print_report(daily.delivery, outbox=options.outbox)
        if daily.week is not None and daily.delivery is not None:
            if daily.weekly is None:
                click.echo(f"{daily.week}: no digests stored for that week, so no weekly edition")
            else:
                _print_report(daily.weekly, outbox=options.outbox, label=daily.week, weekly=True)
        if daily.exit_code:
            sys.exit(1)
