"""The `newsletter` command: a thin door into the library, one module per command group."""

from __future__ import annotations

import click

from .bounces import bounces
from .build import build
from .common import Group
from .deliveries import deliveries
from .demo import demo
from .digests import digests, ingest
from .dkim import dkim
from .doctor import doctor
from .match import match
from .preview import preview
from .send import run_daily_command, send
from .serve import serve
from .subscribers import subscribers


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="newsletter")
def main() -> None:
    """Feeds, an archive and per-subscriber emails from daily AI paper digests."""


main.add_command(ingest)
main.add_command(digests)
main.add_command(demo)
main.add_command(subscribers)
main.add_command(match)
main.add_command(preview)
main.add_command(serve)
main.add_command(build)
main.add_command(send)
main.add_command(deliveries)
main.add_command(run_daily_command)
main.add_command(dkim)
main.add_command(bounces)
main.add_command(doctor)
