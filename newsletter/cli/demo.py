"""`newsletter demo`: the whole daily job on the bundled examples."""

from __future__ import annotations

from pathlib import Path

import click

from ..demo import run_demo
from .common import NamedPath, settings_from


@click.command()
@click.option(
    "--digests",
    "digests_dir",
    type=NamedPath(file_okay=False, path_type=Path),
    default=Path("examples/digests"),
    show_default=True,
    help="Folder of digest files.",
)
@click.option(
    "--subscribers",
    "subscribers_csv",
    type=NamedPath(dir_okay=False, path_type=Path),
    default=Path("subscribers.example.csv"),
    show_default=True,
    help="Subscribers CSV.",
)
@click.option(
    "--out",
    "out_dir",
    type=NamedPath(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Where everything the demo makes goes.",
)
def demo(digests_dir: Path, subscribers_csv: Path, out_dir: Path) -> None:
    """Run the daily job on example digests with embedded defaults (SQLite, local SMTP).

    Example: newsletter demo --out demo-output
    """
    # The demo is self-contained: its own database, and its own key unless one is set.
    settings = settings_from(None, db=out_dir / "newsletter.db", site_dir=out_dir / "site")
    run_demo(
        settings=settings,
        digests_dir=digests_dir,
        subscribers_csv=subscribers_csv,
        out_dir=out_dir,
        echo=click.echo,
    )
