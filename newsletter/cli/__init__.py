"""The `newsletter` command: a thin door into the library, one module per command group.

Each command's module is imported when that command runs (or `--help` lists them all), so
`newsletter send` does not load the site builder, the DNS checks or the bounce parsers.
"""

from __future__ import annotations

import gc
import importlib
import sys

import click

from . import streams
from .common import Group, stop_like_ctrl_c

# command name -> (module under newsletter.cli, attribute)
COMMANDS = {
    "bounces": ("bounces", "bounces"),
    "build": ("build", "build"),
    "deliveries": ("deliveries", "deliveries"),
    "demo": ("demo", "demo"),
    "digests": ("digests", "digests"),
    "dkim": ("dkim", "dkim"),
    "doctor": ("doctor", "doctor"),
    "ingest": ("digests", "ingest"),
    "match": ("match", "match"),
    "preview": ("preview", "preview"),
    "run": ("run", "run_daily_command"),
    "send": ("send", "send"),
    "serve": ("serve", "serve"),
    "subscribers": ("subscribers", "subscribers"),
}


class _Main(Group):
    """The top group: commands listed by name, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, attribute = where
        command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="newsletter")
def main() -> None:
    """Feeds, an archive and per-subscriber emails from daily AI paper digests."""


def run() -> None:
    """The `newsletter` console script: `main`, then the heap frozen as the process exits.

    The interpreter's exit runs the garbage collector over everything still alive (tens of
    milliseconds after a send); the process is ending, so nothing is gained by it.
    Files, the store and connections are closed by then. Tests that run commands in-process
    call `main`, so their process is never frozen. Output that cannot be written (a closed
    pipe, a full disk) never stops the command's work (`streams`).
    """
    out, err = streams.install()
    stop_like_ctrl_c()
    try:
        main()
    except SystemExit as exc:  # click ends every command so, 0 included
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.exit(streams.finish(out, err, code))
    finally:
        gc.freeze()
