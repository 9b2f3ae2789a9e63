"""`newsletter bounces process`: read the bounce mailbox and apply bounces and complaints."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from ..bounces.mailboxes import IMAP_TLS_MODES, ImapSource, open_mailbox
from ..bounces.process import Mailbox, process_mailbox
from ..config import Secret
from ..errors import ConfigError
from .common import Group, NamedPath, common_options, open_store, settings_from


@click.group(cls=Group)
def bounces() -> None:
    """Bounces and complaints that came back to envelope_from."""


@bounces.command()
@click.argument("source", type=NamedPath(path_type=Path), required=False)
@click.option("--imap-host", help="Read an IMAP folder on this server instead of SOURCE.")
@click.option("--imap-port", type=click.IntRange(1, 65535), help="[default: 993 for tls, else 143]")
@click.option(
    "--imap-user", default="", help="IMAP login (password: env NEWSLETTER_IMAP_PASSWORD)."
)
@click.option(
    "--imap-tls",
    type=click.Choice(IMAP_TLS_MODES),
    default="tls",
    show_default=True,
    help="IMAP TLS mode; none only for this machine.",
)
@click.option("--imap-folder", default="INBOX", show_default=True, help="The folder to read.")
@click.option(
    "--imap-move",
    metavar="FOLDER",
    help="Move processed messages to FOLDER [default: flag them \\Seen and leave them].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@common_options
def process(
    source: Path | None,
    imap_host: str | None,
    imap_port: int | None,
    imap_user: str,
    imap_tls: str,
    imap_folder: str,
    imap_move: str | None,
    as_json: bool,
    config_path: Path | None,
    db: Path | None,
) -> None:
    """Read SOURCE (a Maildir, an mbox file or a folder of .eml files) or an IMAP folder, and
    apply each report.

    Hard bounces mark the subscriber bounced, soft ones after [bounces] soft_limit within
    soft_days, complaints unsubscribe them; each report counts once; unknown mail is left alone.
    A message that cannot be read is named on stderr and left; the exit status is then 1.

    Examples: newsletter bounces process ~/Maildir/.bounces --json

    NEWSLETTER_IMAP_PASSWORD=... newsletter bounces process --imap-host imap.example.com
    --imap-user bounces@example.com --imap-move Processed
    """
    if (source is None) == (imap_host is None):
        raise ConfigError("give either SOURCE (a Maildir, mbox or .eml folder) or --imap-host")
    settings = settings_from(config_path, db=db)
    key = settings.require_secret_key()
    mailbox: Mailbox
    with contextlib.ExitStack() as stack:
        if imap_host is None:
            assert source is not None
            mailbox = open_mailbox(source)
        else:
            password = os.environ.get("NEWSLETTER_IMAP_PASSWORD")  # secrets: environment only
            imap = ImapSource(
                host=imap_host,
                port=imap_port,
                user=imap_user,
                password=Secret(password) if password else None,
                tls=imap_tls,
                folder=imap_folder,
                move_to=imap_move,
            )
            mailbox = stack.enter_context(imap)
        store = stack.enter_context(open_store(settings))
        summary = process_mailbox(mailbox, store=store, settings=settings, key=key)
    click.echo(json.dumps(summary.as_dict()) if as_json else summary.line())
    for problem in mailbox.problems:
        click.echo(f"error: {problem}", err=True)
    if mailbox.problems:
        sys.exit(1)
