"""The demo: the daily job on the bundled examples, with an embedded default for everything.

Each step is a function of the demo context; later features add their step to `STEPS`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .digest.ingest import ingest_paths
from .errors import NewsletterError
from .store import Store


@dataclass
class DemoContext:
    """What the demo steps share."""

    settings: Settings
    store: Store
    digests_dir: Path
    subscribers_csv: Path
    out_dir: Path
    echo: Callable[[str], None]


def step_ingest(ctx: DemoContext) -> None:
    """Ingest the example digests and print what is stored."""
    report = ingest_paths(ctx.store, [ctx.digests_dir])
    for warning in report.warnings:
        ctx.echo(f"  {warning}")
    for f in report.failed:
        ctx.echo(f"  error: {f.error}")
    if report.failed:
        raise NewsletterError(f"{len(report.failed)} example digests failed to parse")
    ctx.echo(f"Ingested {len(report.files)} digests into {ctx.settings.db}:")
    for digest in ctx.store.digests(ctx.store.digest_dates()):
        top = max(digest.papers, key=lambda p: p.votes or 0)
        ctx.echo(
            f"  {digest.date}  {len(digest.papers):>3} papers  top: {top.display_title} ({top.votes} votes)"
        )


def step_subscribers(ctx: DemoContext) -> None:
    """Import the example subscribers and print how many papers each gets from the newest digest."""
    from .audience.importing import import_subscribers_csv
    from .audience.match import PreparedDigest, select_papers

    report = import_subscribers_csv(ctx.store, ctx.subscribers_csv)
    for error in report.rejected:
        ctx.echo(f"  {error}")
    ctx.echo(f"Imported subscribers from {ctx.subscribers_csv}: {report.summary()}")
    date = ctx.store.latest_date()
    digest = ctx.store.digest(date) if date is not None else None
    if digest is None:
        return
    prepared = PreparedDigest(digest)
    for s in ctx.store.active_subscribers():
        picks = select_papers(prepared, s.filters)
        keywords = "; ".join(s.filters.keywords) or "(every paper)"
        ctx.echo(f"  {s.email:<28} {len(picks):>2} of {len(digest.papers)} papers  {keywords}")


def step_site(ctx: DemoContext) -> None:
    """Build the feeds and the web archive into the site folder and say where they are."""
    from .publish.build import PRIVATE_DIR, build_site, is_private_feed

    report = build_site(ctx.store, settings=ctx.settings)
    site = ctx.settings.site_dir
    private = sum(1 for p in (*report.written, *report.unchanged) if is_private_feed(p))
    ctx.echo(
        f"Built the site in {site}/: {len(report.written)} files written, "
        f"{len(report.unchanged)} unchanged"
    )
    ctx.echo(f"  archive: {site / 'index.html'} (open it in a browser)")
    ctx.echo(f"  feeds:   {site}/rss.xml, atom.xml, feed.json, digests.xml, topics/")
    ctx.echo(f"  private: {private} subscriber feeds in {site / PRIVATE_DIR}")


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


def step_deliver(ctx: DemoContext) -> None:
    """Send the newest digest over real SMTP to an embedded server that files each message."""
    import asyncio

    from .delivery.local_server import running_local_server
    from .delivery.pipeline import send_day, smtp_sender

    if ctx.store.latest_date() is None:
        return
    folder = ctx.out_dir / "mailbox"
    with running_local_server(folder) as mailbox:
        settings = ctx.settings.replace(
            smtp_host=mailbox.host, smtp_port=mailbox.port, smtp_tls="none"
        )
        sender = smtp_sender(settings)

        async def send() -> str:
            try:
                report = await send_day(store=ctx.store, settings=settings, sender=sender)
            finally:
                await sender.aclose()
            return f"{report.date}: {report.summary()}"

        summary = asyncio.run(send())
        ctx.echo(
            f"Sent over SMTP to an embedded server on {mailbox.host}:{mailbox.port}: {summary}"
        )
        ctx.echo(
            f"  {mailbox.count} messages landed in {folder}/ (one .eml each; a re-run sends none)"
        )


def step_serve(ctx: DemoContext) -> None:
    """Say how to serve what the demo made: feeds, archive, and the emails' links."""
    key = ctx.settings.secret_key
    # The emails' links are signed with this run's key; only the demo's own throwaway key
    # (cli/demo.py) may be printed, never one the user set.
    shown = "demo-secret-key-not-for-production"
    prefix = f"NEWSLETTER_SECRET_KEY={shown} " if key and key.reveal() == shown else ""
    ctx.echo("Serve the feeds, archive, unsubscribe and preference links of these emails:")
    ctx.echo(
        f"  {prefix}newsletter serve --db {ctx.settings.db} --site {ctx.settings.site_dir}"
        f"   (then open {ctx.settings.base_url.rstrip('/')}/subscribe)"
    )


STEPS: list[Callable[[DemoContext], None]] = [
    step_ingest,
    step_subscribers,
    step_site,
    step_previews,
    step_deliver,
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
    """Run every demo step in order against the store in `settings.db`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with Store(settings.db) as store:
        ctx = DemoContext(settings, store, digests_dir, subscribers_csv, out_dir, echo)
        for step in STEPS:
            step(ctx)
