"""`newsletter bounces process`: read the bounce mailbox and apply bounces and complaints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..bounces.mailboxes import open_mailbox
from ..bounces.process import process_mailbox
from .common import Group, common_options, open_store, settings_from


@click.group(cls=Group)
def bounces() -> None:
    """Bounces and complaints that came back to envelope_from."""


@bounces.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@common_options
def process(source: Path, as_json: bool, config_path: Path | None, db: Path | None) -> None:
    """Read SOURCE (a Maildir, an mbox file or a folder of .eml files) and apply each report.

    Hard bounces mark the subscriber bounced, soft ones after [bounces] soft_limit within
    soft_days, complaints unsubscribe them; each report counts once; unknown mail is left alone.

    Example: newsletter bounces process ~/Maildir/.bounces --json
    """
    settings = settings_from(config_path, db=db)
    key = settings.require_secret_key()
    mailbox = open_mailbox(source)
    with open_store(settings) as store:
        summary = process_mailbox(mailbox, store=store, settings=settings, key=key)
    click.echo(json.dumps(summary.as_dict()) if as_json else summary.line())
