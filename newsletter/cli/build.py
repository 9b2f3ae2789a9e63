"""`newsletter build`: the feeds and the web archive, from the store."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from ..publish.build import PRIVATE_DIR, build_site, is_private_feed
from ..publish.searchindex import INDEX_DIR, refresh_search_index
from ..publish.websub import ping as notify_hub
from ..publish.websub import pinged_feeds
from .common import NamedPath, common_options, open_store, settings_from


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=NamedPath(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write the site into [default: setting site_dir, ./site].",
)
@click.option(
    "--base-url",
    default=None,
    help="Absolute http(s) URL the folder is published at [env NEWSLETTER_BASE_URL].",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=None,
    help="How many of the newest digests the feeds cover [setting feed_days, 30].",
)
@click.option(
    "--ping",
    is_flag=True,
    help="Tell the WebSub hub (setting websub_hub) which public feeds changed.",
)
@common_options
def build(
    out_dir: Path | None,
    base_url: str | None,
    days: int | None,
    ping: bool,
    config_path: Path | None,
    db: Path | None,
) -> None:
    """Write the feeds, their monthly archives and the HTML site; only changed files are rewritten.

    Prints one line per written or removed file and a summary, so a CI job can commit (or
    publish) only real changes. Files over 32 KB get a gzip sibling (NAME.gz) for `serve`.
    Private feeds are served by `newsletter serve`, never written; the files an older build
    wrote are removed (only counted: their names are secrets). When anything changed, the
    Pagefind search index is rebuilt; --ping tells the WebSub hub.

    \b
    Example:
      newsletter build --out site --base-url https://example.github.io/papers --ping
    """
    settings = settings_from(
        config_path,
        option_names={"site_dir": "--out", "feed_days": "--days"},
        db=db,
        site_dir=out_dir,
        base_url=base_url,
        feed_days=days,
    )
    if ping and not settings.websub_hub:
        raise ConfigError("--ping needs a hub: set websub_hub ([site] or NEWSLETTER_WEBSUB_HUB)")
    with open_store(settings) as store:
        report = build_site(store, settings=settings)
    for notice in report.notices:
        click.echo(f"note: {notice}", err=True)
    private = 0
    for action, paths in (("written", report.written), ("removed", report.removed)):
        for path in paths:
            if is_private_feed(path):
                private += 1  # only ever removed: older builds wrote them
            else:
                click.echo(f"{action} {path}")
    if private:
        click.echo(
            f"private feeds: {private} old files removed ({PRIVATE_DIR}<token>.xml); "
            "`newsletter serve` answers these URLs now"
        )
    if ping:  # before the search index, whose failure must not lose the hub its notice
        changed = pinged_feeds(report.written)
        root = settings.base_url.rstrip("/")
        count = notify_hub(settings.websub_hub, [f"{root}/{path}" for path in changed])
        click.echo(f"pinged {settings.websub_hub}: {count} changed feeds")
    if refresh_search_index(report.out_dir):
        click.echo(f"search index: {INDEX_DIR}/ rebuilt")
    click.echo(
        f"built {report.out_dir}: {len(report.written)} written, "
        f"{len(report.unchanged)} unchanged, {len(report.removed)} removed"
    )
