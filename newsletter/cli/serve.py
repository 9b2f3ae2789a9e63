"""`newsletter serve`: the feeds, archive, unsubscribe, preferences and sign-up over HTTP."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from ..errors import StoreError
from .common import NamedPath, Seconds, common_options, database_exists, settings_from


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: serve_host, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: serve_port, 8000].")
@click.option(
    "--site",
    "site_dir",
    type=NamedPath(file_okay=False, path_type=Path),
    default=None,
    help="The folder `newsletter build` wrote [default: site_dir].",
)
@click.option(
    "--watch",
    "watch_dir",
    type=NamedPath(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Poll this folder for new digests; ingest, build and send each one once.",
)
@click.option(
    "--interval",
    type=Seconds(min=0.5, max=86400),
    default=5.0,
    show_default=True,
    help="Seconds between polls of --watch.",
)
@common_options
def serve(
    host: str | None,
    port: int | None,
    site_dir: Path | None,
    watch_dir: Path | None,
    interval: float,
    config_path: Path | None,
    db: Path | None,
) -> None:
    """Serve the built site with HTTP caching, one-click unsubscribe, preferences and sign-up.

    Needs NEWSLETTER_SECRET_KEY (the key the emails' links were signed with).

    Example: newsletter serve --db demo-output/newsletter.db --site demo-output/site
    """
    import uvicorn  # imported here: the other commands do not need a web server

    from ..web import create_app
    from ..web.logs import configure_logging
    from ..web.server import server_config

    settings = settings_from(
        config_path,
        option_names={"site_dir": "--site", "serve_host": "--host", "serve_port": "--port"},
        db=db,
        site_dir=site_dir,
        serve_host=host,
        serve_port=port,
    )
    # With --watch it brings digests in, so it may start a database; otherwise a mistyped
    # --db would serve a new empty one, every token answering 404.
    settings.require_secret_key()  # the first thing to hear about, as for every command
    if watch_dir is None and not database_exists(settings):
        raise StoreError(
            f"{settings.db}: no database here (`newsletter ingest` or `newsletter subscribers "
            "import` creates one; `serve --watch` starts one)"
        )
    app = create_app(
        settings=settings,
        watch_dir=watch_dir,
        watch_interval=interval,
        create_db=watch_dir is not None,
    )
    configure_logging()  # from here on stderr carries JSON lines only
    # uvicorn re-raises the SIGINT it stopped on once it has shut down; that is a normal stop.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(server_config(app, settings=settings)).run()
