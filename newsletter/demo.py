"""The demo: the daily job on the bundled examples, with an embedded default for everything.

Each step is a function of the demo context; later features add their step to `STEPS`.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .digest.ingest import IngestReport
from .errors import ConfigError, NewsletterError
from .publish.build import BuildReport
from .store import Store

KEY_FILE = "secret-key"


@dataclass
class DemoContext:
    """What the demo steps share."""

    settings: Settings
    store: Store
    digests_dir: Path
    subscribers_csv: Path
    out_dir: Path
    echo: Callable[[str], None]
    key_file: Path | None = None  # where the demo keeps the key it made; None: the user's own


def demo_key(path: Path) -> str:
    """The demo's signing key kept in `path`: made there (random, mode 0600) on the first run.

    Reusing it keeps the links in earlier runs' emails valid; a fixed key shared by every demo
    would let anyone forge them.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            return path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the demo's key: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the demo's key: {exc.strerror}") from None
    key = secrets.token_urlsafe(32)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key + "\n")
    except OSError as exc:
        path.unlink(missing_ok=True)  # an empty key file would fail every later run
        raise ConfigError(f"{path}: cannot write the demo's key: {exc.strerror}") from None
    return key


def step_subscribers(ctx: DemoContext) -> None:
    """Import the example subscribers (before the daily job, so they get its email)."""
    from .audience.importing import import_subscribers_csv

    report = import_subscribers_csv(ctx.store, ctx.subscribers_csv)
    for error in report.rejected:
        ctx.echo(f"  {error}")
    ctx.echo(f"Imported subscribers from {ctx.subscribers_csv}: {report.summary()}")


def _echo_ingest(ctx: DemoContext, report: IngestReport) -> None:
    for warning in report.warnings:
        ctx.echo(f"  {warning}")
    for f in report.failed:
        ctx.echo(f"  error: {f.error}")
    if report.failed:
        raise NewsletterError(f"{len(report.failed)} example digests failed to parse")
    ctx.echo(f"Into {ctx.settings.db}: {report.summary()}")
    for digest in ctx.store.digests(ctx.store.digest_dates()):
        top = max(digest.papers, key=lambda p: p.votes or 0)
        ctx.echo(
            f"  {digest.date}  {len(digest.papers):>3} papers  top: {top.display_title} ({top.votes} votes)"
        )


def _echo_site(ctx: DemoContext, report: BuildReport) -> None:
    site = ctx.settings.site_dir
    ctx.echo(
        f"Built the site in {site}/: {len(report.written)} files written, "
        f"{len(report.unchanged)} unchanged"
    )
    ctx.echo(f"  archive: {site / 'index.html'} (open it in a browser)")
    topics = ", topics/" if ctx.settings.topics else ""  # topic feeds exist only when configured
    ctx.echo(f"  feeds:   {site}/rss.xml, atom.xml, feed.json, digests.xml{topics}")
    ctx.echo("  private: each email links its own feed, served by `newsletter serve`")


def step_daily(ctx: DemoContext) -> None:
    """The daily job (`newsletter run`): ingest the examples, build the site, send the newest
    day over real SMTP to an embedded server that files each message."""
    import asyncio

    from .daily import run_daily
    from .delivery.local_server import running_local_server
    from .delivery.smtp import smtp_sender

    folder = ctx.out_dir / "mailbox"
    with running_local_server(folder) as mailbox:
        settings = ctx.settings.replace(
            smtp_host=mailbox.host, smtp_port=mailbox.port, smtp_tls="none"
        )
        report = asyncio.run(
            run_daily(
                ctx.store,
                settings=settings,
                digests=[ctx.digests_dir],
                sender_factory=lambda: smtp_sender(settings),
                on_ingested=lambda report: _echo_ingest(ctx, report),
                on_built=lambda report: _echo_site(ctx, report),
            )
        )
        if report.search_error is not None:
            ctx.echo(f"warning: search index not rebuilt: {report.search_error}")
        delivery = report.delivery
        assert delivery is not None  # run_daily sends unless told not to
        ctx.echo(
            f"Sent over SMTP to an embedded server on {mailbox.host}:{mailbox.port}: "
            f"{delivery.date}: {delivery.summary()}"
        )
        ctx.echo(
            f"  {mailbox.count} messages landed in {folder}/ (one .eml each; a re-run sends none)"
        )


def step_matches(ctx: DemoContext) -> None:
    """Print how many papers each subscriber gets from the newest digest."""
    from .audience.match import PreparedDigest, select_papers

    date = ctx.store.latest_date()
    digest = ctx.store.digest(date) if date is not None else None
    if digest is None:
        return
    ctx.echo(f"What each subscriber gets from {digest.date}:")
    prepared = PreparedDigest(digest)
    for s in ctx.store.active_subscribers():
        picks = select_papers(prepared, s.filters)
        keywords = "; ".join(s.filters.keywords) or "(every paper)"
        ctx.echo(f"  {s.email:<28} {len(picks):>2} of {len(digest.papers)} papers  {keywords}")


def step_previews(ctx: DemoContext) -> None:
    """Write every active subscriber's email for the newest digest into previews/."""
    from .mail.compose import Composer, write_preview

    date = ctx.store.latest_date()
    digest = ctx.store.digest(date) if date is not None else None
    if digest is None:
        return
    out = ctx.out_dir / "previews"
    composer = Composer(settings=ctx.settings, digest=digest, clock=lambda: dt.datetime.now(dt.UTC))
    written = [
        p
        for s in ctx.store.active_subscribers()
        if (p := write_preview(composer=composer, subscriber=s, out_dir=out)) is not None
    ]
    ctx.echo(f"Wrote {len(written)} email previews for {digest.date} (.html, .txt, .eml) to {out}/")


def step_serve(ctx: DemoContext) -> None:
    """Say how to serve what the demo made: feeds, archive, and the emails' links."""
    # The emails' links are signed with this run's key. The command names the demo's key file,
    # never a key: one the user set is already in their environment.
    prefix = (
        f"NEWSLETTER_SECRET_KEY=$(cat {shlex.quote(str(ctx.key_file))}) " if ctx.key_file else ""
    )
    db, site = (shlex.quote(str(p)) for p in (ctx.settings.db, ctx.settings.site_dir))
    ctx.echo("Serve the feeds, archive, unsubscribe and preference links of these emails:")
    ctx.echo(
        f"  {prefix}newsletter serve --db {db} --site {site}"
        f"   (then open {ctx.settings.base_url.rstrip('/')}/subscribe)"
    )


STEPS: list[Callable[[DemoContext], None]] = [
    step_subscribers,
    step_daily,
    step_matches,
    step_previews,
    step_serve,
]


def run_demo(
    *,
    settings: Settings,
    digests_dir: Path,
    subscribers_csv: Path,
    out_dir: Path,
    echo: Callable[[str], None],
) -> None:
    """Run every demo step in order against the store in `settings.db`.

    Without a key in `settings` the demo signs with its own, kept in `out_dir`/secret-key.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    key_file = None
    if settings.secret_key is None:
        key_file = out_dir / KEY_FILE
        settings = settings.replace(secret_key=demo_key(key_file))
    settings.require_secret_key()  # a weak key stops the demo before it writes anything
    with Store(settings.db) as store:
        ctx = DemoContext(settings, store, digests_dir, subscribers_csv, out_dir, echo, key_file)
        for step in STEPS:
            step(ctx)
