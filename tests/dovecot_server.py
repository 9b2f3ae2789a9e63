"""A real Dovecot IMAP server for tests: its own config, users and Maildir, on loopback ports.

Debian's `dovecot-imapd`, started in the foreground as a second instance (nothing of the
system's Dovecot is used). One user, `bounces`, whose mail lives in a Maildir under a fresh
directory. Run as root, Dovecot refuses root for its login processes and for mail access, so
those run as Debian's `dovenull` and `nobody`; the directory is made traversable for them
(pytest's own tmp folders are private to root).
"""

from __future__ import annotations

import mailbox
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .smtp_servers import free_port, stop_process

USER, PASSWORD = "bounces", "imap-test-password-7Qe"


def dovecot_binary() -> str:
    """The dovecot command; skips the test when the package is missing."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip("needs Dovecot (apt-get install dovecot-imapd)")
    return found


@dataclass
class Dovecot:
    """A running server: its plain (or STARTTLS) port, its TLS port, and the user's Maildir."""

    port: int
    tls_port: int | None
    maildir: Path
    owner: tuple[int, int]  # uid, gid that Dovecot reads and writes the mail as
    log: Path

    def deliver(self, data: bytes, *, folder: str = "") -> None:
        """Put a message into the user's INBOX (or a folder) as an MTA's local delivery would."""
        path = self.maildir / f".{folder}" if folder else self.maildir
        mailbox.Maildir(path, create=True).add(data)
        self._own()

    def folder(self, name: str = "") -> mailbox.Maildir:
        """The INBOX (or a Maildir++ folder) as it is on disk now."""
        return mailbox.Maildir(self.maildir / f".{name}" if name else self.maildir, create=False)

    def _own(self) -> None:
        if os.getuid() == 0:
            for path in [self.maildir, *self.maildir.rglob("*")]:
                os.chown(path, *self.owner)


def _config(root: Path, *, port: int, tls_port: int | None, cert: tuple[Path, Path] | None) -> str:
    if os.getuid() == 0:
        login, internal, mail = "dovenull", "dovecot", pwd.getpwnam("nobody")
    else:
        me = pwd.getpwuid(os.getuid())
        login = internal = me.pw_name
        mail = me
    ssl = "no"
    if cert is not None:
        ssl = f"required\nssl_cert = <{cert[0]}\nssl_key = <{cert[1]}"
    imaps = f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port or 0}\n"
    imaps += "    ssl = yes\n  }\n" if cert is not None else "  }\n"
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = test-{port}
protocols = imap
listen = 127.0.0.1
ssl = {ssl}
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = {login}
default_internal_user = {internal}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={root}/mail/%u
}}
mail_location = maildir:{root}/mail/%u
namespace inbox {{
  inbox = yes
  separator = .
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
{imaps}}}
service anvil {{
  chroot =
}}
"""


def _wait_for_greeting(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.settimeout(2)
                if sock.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.1)
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    raise AssertionError(f"Dovecot did not start on port {port}:\n{text[-3000:]}")


@contextmanager
def dovecot_server(*, certificate: tuple[Path, Path] | None = None) -> Iterator[Dovecot]:
    """Dovecot on free loopback ports; with `certificate`, TLS is required (STARTTLS or 993-style)."""
    binary = dovecot_binary()
    root = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
    root.chmod(0o755)  # the login and mail processes run as other users
    try:
        port, tls_port = free_port(), (free_port() if certificate else None)
        for name in ("run", "state"):
            (root / name).mkdir()
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n", encoding="utf-8")
        (root / "dovecot.conf").write_text(
            _config(root, port=port, tls_port=tls_port, cert=certificate), encoding="utf-8"
        )
        mail = pwd.getpwnam("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
        server = Dovecot(
            port=port,
            tls_port=tls_port,
            maildir=root / "mail" / USER,
            owner=(mail.pw_uid, mail.pw_gid),
            log=root / "dovecot.log",
        )
        (root / "mail").mkdir(mode=0o755)
        mailbox.Maildir(server.maildir, create=True)
        server._own()
        process = subprocess.Popen(
            [binary, "-F", "-c", str(root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_greeting(port, process, server.log)
            yield server
        finally:
            process.terminate()
            stop_process(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)
