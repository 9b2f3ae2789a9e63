"""stdout and stderr that never stop a command: a write that fails is remembered, not raised.

`newsletter run ... | head -1` closes the pipe after a line, and a cron job's log on a full disk
refuses the write. Either used to raise at the first `click.echo`, abandoning the work half
done (a run that ingested but never built or sent), or end in a traceback. Output is only a
report of the work: the work goes on, the rest of the report is dropped, and the command
says so once it is done (`finish`).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, TextIO


class Forgiving:
    """A text stream whose failed write or flush is kept in `failed` instead of raised; the
    file descriptor then points to /dev/null, so the interpreter's own flush at exit is
    quiet too."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        if self.failed is None:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._fail(exc)
        return len(text)

    def flush(self) -> None:
        if self.failed is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.failed = exc
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError):  # no descriptor (a test's stream): nothing to quiet
            pass

    def __getattr__(self, name: str) -> Any:  # encoding, errors, isatty, fileno, ...
        return getattr(self._stream, name)


def install() -> tuple[Forgiving, Forgiving]:
    """Make sys.stdout and sys.stderr forgiving; (stdout, stderr)."""
    out, err = Forgiving(sys.stdout), Forgiving(sys.stderr)
    sys.stdout, sys.stderr = out, err
    return out, err


def finish(out: Forgiving, err: Forgiving, code: int) -> int:
    """The exit code once the command is done: a lost report is exit 1 with one line on
    stderr, except a pipe closed by its reader (`| head`), which is how pipes end."""
    out.flush()
    failed = out.failed
    if failed is None or failed.errno == errno.EPIPE:
        return code
    err.write(f"error: cannot write the output: {failed.strerror or failed}\n")
    err.flush()
    return code or 1
