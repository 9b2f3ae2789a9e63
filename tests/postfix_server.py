"""A real Postfix for tests: a second instance with its own config, queue and Maildirs, on loopback.

Debian's `postfix` (`postfix -c DIR start-fg`; the system's instance, if any, is untouched). It
accepts mail for one domain on a free 127.0.0.1 port, delivers local users named in its alias
table to Maildirs and bounces every other local user with a DSN to the envelope sender, which
(with `+` as recipient delimiter, so VERP addresses arrive) lands in the Maildir of `bounces`.
Postfix runs its daemons as the `postfix` user and writes aliased Maildirs as `nobody`, so it
needs root; the directory is made traversable for them (pytest's tmp folders are private).
"""

from __future__ import annotations

import mailbox
import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .smtp_servers import free_port, stop_process

DOMAIN = "bounce.test"

# name, type, private, unpriv, chroot, wakeup, maxproc, command: no chroot, so no copies of
# /etc files are needed under the queue.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.{domain}
mydomain = {domain}
myorigin = {domain}
mydestination = {domain}
mynetworks = 127.0.0.0/8
# Empty: the SMTP server accepts every local address, and local(8) then bounces the unknown
# ones with a DSN (with the alias table here, they would be refused at RCPT instead).
local_recipient_maps =
recipient_delimiter = +
alias_maps = texthash:{root}/conf/aliases
alias_database = texthash:{root}/conf/aliases
allow_mail_to_files = alias
smtputf8_enable = no
biff = no
# Nothing leaves this machine.
default_transport = error:this test Postfix delivers only to {domain}
relay_transport = error:this test Postfix delivers only to {domain}
"""


def postfix_binary() -> str:
    """The postfix command; skips the test when it cannot run a second instance here."""
    found = shutil.which("postfix") or shutil.which("postfix", path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip("needs Postfix (apt-get install postfix)")
    if os.getuid() != 0:
        pytest.skip("needs root: Postfix runs its daemons as the postfix user")
    return found


@dataclass
class Postfix:
    """A running Postfix: its SMTP port and the Maildirs of its local users."""

    port: int
    root: Path
    users: tuple[str, ...]

    def maildir(self, user: str) -> mailbox.Maildir:
        return mailbox.Maildir(self.root / "mail" / user, create=False)

    def wait_for_mail(self, user: str, *, count: int = 1, timeout: float = 30) -> list[bytes]:
        """The messages in `user`'s Maildir once there are `count` (fails after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            box = self.maildir(user)
            if len(box) >= count:
                return [box.get_bytes(key) for key in sorted(box.keys())]
            time.sleep(0.1)
        raise AssertionError(f"no mail for {user} after {timeout}s; Postfix log:\n{self.log()}")

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


def _wait_for_greeting(port: int, process: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
                if client.noop()[0] == 250:
                    return
        except (OSError, smtplib.SMTPException):
            time.sleep(0.2)
    log = (root / "maillog").read_text(errors="replace") if (root / "maillog").exists() else ""
    raise AssertionError(f"Postfix did not start on port {port}:\n{log[-3000:]}")


def _postfix(binary: str, conf: Path, *args: str) -> None:
    done = subprocess.run(
        [binary, "-c", str(conf), *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, f"postfix {' '.join(args)}: {done.stdout}{done.stderr}"


@contextmanager
def postfix_server(*, users: tuple[str, ...] = ("bounces",)) -> Iterator[Postfix]:
    """Postfix for @bounce.test on a free loopback port; `users` get Maildirs, others bounce."""
    binary = postfix_binary()
    root = Path(tempfile.mkdtemp(prefix="postfix-test-"))
    root.chmod(0o755)  # the daemons run as postfix, local delivery as nobody
    try:
        port = free_port()
        conf = root / "conf"
        for name in ("conf", "queue", "data", "mail"):
            (root / name).mkdir(mode=0o755)
        postfix_user, nobody = pwd.getpwnam("postfix"), pwd.getpwnam("nobody")
        os.chown(root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        aliases = []
        for user in users:
            mailbox.Maildir(root / "mail" / user, create=True)
            for path in [root / "mail" / user, *(root / "mail" / user).iterdir()]:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            aliases.append(f"{user} {root}/mail/{user}/\n")  # trailing slash: a Maildir
        (conf / "aliases").write_text("".join(aliases), encoding="utf-8")
        (conf / "master.cf").write_text(MASTER_CF.format(port=port), encoding="utf-8")
        (conf / "main.cf").write_text(MAIN_CF.format(root=root, domain=DOMAIN), encoding="utf-8")
        _postfix(binary, conf, "check")  # creates the queue's folders with their owners
        process = subprocess.Popen(
            [binary, "-c", str(conf), "start-fg"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_greeting(port, process, root)
            yield Postfix(port=port, root=root, users=users)
        finally:
            subprocess.run(
                [binary, "-c", str(conf), "stop"], capture_output=True, check=False, timeout=60
            )
            stop_process(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)
