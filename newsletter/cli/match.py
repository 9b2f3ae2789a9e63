"""`newsletter match`: which papers of a digest a subscriber (or an ad-hoc profile) gets, and why."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from ..audience.describe import describe_filters
from ..audience.match import select_papers
from ..audience.subscribers import escape_controls, validate_filters
from ..errors import ConfigError
from .common import common_options, date_option, find_subscriber, open_store, settings_from


@click.command()
@date_option
@click.option("--email", default=None, help="Use this subscriber's filters.")
@click.option("--keywords", default=None, help='Ad-hoc profile: ";"-separated phrases.')
@click.option("--exclude", default=None, help='Ad-hoc profile: ";"-separated phrases to exclude.')
@click.option("--min-votes", default=None, help="Ad-hoc profile: minimum votes.")
@click.option("--max-papers", default=None, help="Ad-hoc profile: at most this many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def match(
    day: dt.datetime | None,
    email: str | None,
    keywords: str | None,
    exclude: str | None,
    min_votes: str | None,
    max_papers: str | None,
    as_json: bool,
    config_path: Path | None,
    db: Path | None,
) -> None:
    """Show the papers of a digest a subscriber or an ad-hoc profile selects, with reasons.

    Examples: newsletter match --date 2024-12-13 --email ana@example.com --json
              newsletter match --date 2024-12-13 --keywords "RAG;diffusion" --exclude survey --min-votes 10
    """
    adhoc = {
        "keywords": keywords,
        "exclude": exclude,
        "min_votes": min_votes,
        "max_papers": max_papers,
    }
    if email is not None and any(v is not None for v in adhoc.values()):
        raise ConfigError("--email uses the subscriber's own filters; leave out the ad-hoc options")
    settings = settings_from(config_path, db=db)
    with open_store(settings) as store:
        digest = store.digest_for(day.date() if day is not None else None)
        if email is not None:
            subscriber = find_subscriber(store, email)
            filters, who = subscriber.filters, subscriber.email
            if subscriber.status != "active":
                click.echo(f"note: {who} is {subscriber.status} and gets no email", err=True)
        else:
            filters = validate_filters(**{k: v or "" for k, v in adhoc.items()})
            who = "this profile"
    picks = select_papers(digest, filters)
    if as_json:
        data = [
            {
                "arxiv_id": p.paper.arxiv_id,
                "title": p.paper.display_title,
                "votes": p.paper.votes,
                "matched": [{"keyword": r.keyword, "field": r.field} for r in p.reasons],
            }
            for p in picks
        ]
        # Digest text prints as stored: no control character reaches the terminal.
        click.echo(escape_controls(json.dumps(data, indent=2, ensure_ascii=False), json=True))
        return
    click.echo(
        f"{digest.date}: {len(picks)} of {len(digest.papers)} papers for {who} ({', '.join(describe_filters(filters))})"
    )
    for p in picks:
        votes = "-" if p.paper.votes is None else str(p.paper.votes)
        click.echo(escape_controls(f"{votes:>5}  {p.paper.arxiv_id:<11} {p.paper.display_title}"))
        if p.reasons:
            reasons = ", ".join(f"{r.keyword} in {r.field}" for r in p.reasons)
            click.echo(f"{'':>18}matched: {reasons}")
