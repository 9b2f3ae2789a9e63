"""`newsletter dkim`: make a DKIM key pair and print the DNS record that publishes it."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import coerce_setting
from ..errors import ConfigError
from ..mail.dkim import write_key_pair
from .common import Group, NamedPath


@click.group(cls=Group)
def dkim() -> None:
    """DKIM keys for signing the emails."""


@dkim.command()
@click.option("--selector", required=True, help="Selector: the record is SELECTOR._domainkey.")
@click.option("--domain", required=True, help="Signing domain, normally the From domain.")
@click.option(
    "--out",
    required=True,
    type=NamedPath(file_okay=False, path_type=Path),
    help="Folder for SELECTOR.private and SELECTOR.txt.",
)
@click.option(
    "--type",
    "algorithm",
    type=click.Choice(["rsa", "ed25519"]),
    default="rsa",
    show_default=True,
    help="rsa (2048 bits, verified everywhere) or ed25519 (short; not every receiver checks it).",
)
def keygen(selector: str, domain: str, out: Path, algorithm: str) -> None:
    """Write a new key pair and print the DNS TXT record to publish.

    Example: newsletter dkim keygen --selector news2025 --domain example.com --out dkim/
    """
    if not selector or not domain:
        raise ConfigError("--selector and --domain must not be empty")
    selector = coerce_setting("dkim_selector", selector, source="option --selector")
    domain = coerce_setting("dkim_domain", domain, source="option --domain")
    pair = write_key_pair(
        out,
        selector=selector,
        domain=domain,
        algorithm="ed25519" if algorithm == "ed25519" else "rsa",
    )
    click.echo(pair.record)
    click.echo(
        f"wrote {pair.private} (private, keep it secret) and {pair.record_file}; publish the "
        f"record above, then set [dkim] selector = {selector!r}, domain = {domain!r}, "
        f"key_file = {str(pair.private)!r}",
        err=True,
    )
