"""`newsletter preview`: write a subscriber's daily email as .html, .txt and .eml files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from ..errors import ConfigError
from ..mail.compose import Composer, write_preview
from .common import (
    NamedPath,
    common_options,
    date_option,
    find_subscriber,
    open_store,
    settings_from,
)


@click.command()
@date_option
@click.option("--email", default=None, help="The subscriber whose email to preview.")
@click.option("--all", "every", is_flag=True, help="Preview every active subscriber's email.")
@click.option(
    "--out",
    "out_dir",
    type=NamedPath(file_okay=False, path_type=Path),
    default=Path("previews"),
    show_default=True,
    help="Folder to write the files into.",
)
@click.option(
    "--templates",
    "template_dir",
    type=NamedPath(file_okay=False, path_type=Path),
    default=None,
    help="Folder of templates overriding the packaged ones [env NEWSLETTER_TEMPLATE_DIR].",
)
@common_options
def preview(
    day: dt.datetime | None,
    email: str | None,
    every: bool,
    out_dir: Path,
    template_dir: Path | None,
    config_path: Path | None,
    db: Path | None,
) -> None:
    """Write the email a subscriber gets for a digest as .html, .txt and .eml files.

    Examples: newsletter preview --date 2024-12-13 --email ana@example.com --out previews
              newsletter preview --all --out previews
    """
    if (email is None) == (not every):
        raise ConfigError("give either --email ADDRESS or --all")
    settings = settings_from(config_path, db=db, template_dir=template_dir)
    with open_store(settings) as store:
        digest = store.digest_for(day.date() if day is not None else None)
        if email is not None:
            subscriber = find_subscriber(store, email)
            subscribers = [subscriber]
        else:
            # A day's email: the daily readers' (weekly ones get the weekly edition instead).
            subscribers = list(store.active_subscribers(cadence="daily"))
    composer = Composer(settings=settings, digest=digest, clock=lambda: dt.datetime.now(dt.UTC))
    written = 0
    taken: set[str] = set()
    for subscriber in subscribers:
        result = write_preview(
            composer=composer, subscriber=subscriber, out_dir=out_dir, taken=taken
        )
        if result is None:
            click.echo(f"{subscriber.email}: no matching papers on {digest.date}; nothing to send")
            continue
        written += 1
        click.echo(
            f"{result.html}  {result.shown} of {result.total} papers, "
            f"{result.html_bytes / 1000:.1f} KB HTML (+ .txt, .eml)"
        )
    if every:
        click.echo(f"{written} previews of {len(subscribers)} subscribers in {out_dir}")
