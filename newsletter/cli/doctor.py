"""`newsletter doctor`: the checks to run before the first send."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..doctor.checks import diagnose
from ..doctor.lookups import DnsLookup
from ..doctor.report import as_json, as_lines, failed
from .common import Seconds, config_option, settings_from


@click.command()
@click.option("--json", "as_json_", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--dns",
    "dns_server",
    default=None,
    metavar="IP[:PORT]",
    help="DNS server to ask [default: the system's resolver].",
)
@click.option(
    "--timeout",
    type=Seconds(min=0, min_open=True, max=300),
    default=10.0,
    show_default=True,
    help="Seconds to wait for each DNS, SMTP and HTTP answer.",
)
@config_option
def doctor(
    as_json_: bool,
    dns_server: str | None,
    timeout: float,
    config_path: Path | None,
) -> None:
    """Check the key, SPF, DKIM, DMARC, the relay and base_url; exit 1 on any fail.

    Each line is ok, warn or fail with what to do about it.

    Example: newsletter doctor --json
    """
    settings = settings_from(config_path)
    checks = diagnose(
        settings, lookup=DnsLookup(server=dns_server, timeout=timeout), timeout=timeout
    )
    click.echo(as_json(checks) if as_json_ else "\n".join(as_lines(checks)))
    if failed(checks):
        sys.exit(1)
