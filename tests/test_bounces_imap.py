"""`newsletter bounces process --imap-host`: a real Dovecot (Debian `dovecot-imapd`) on loopback,
real DSNs in the user's Maildir, the real CLI; flagged or moved once, never counted twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.bounces.mailboxes import ImapSource
from newsletter.cli import main
from newsletter.errors import ConfigError
from newsletter.mail.outgoing import OutgoingMessage

from .conftest import TEST_KEY
from .dovecot_server import PASSWORD, USER, Dovecot, dovecot_server
from .test_bounces import auto_reply, dsn, sent, statuses  # noqa: F401

NOT_A_REPORT = b"From: someone@example.org\r\nSubject: hello\r\n\r\nJust saying hi.\r\n"


def run_imap(tmp_path: Path, port: int, *extra: str, **env: str) -> tuple[int, str, str]:
    environ = {
        "NEWSLETTER_DB": str(tmp_path / "b.db"),
        "NEWSLETTER_SECRET_KEY": TEST_KEY,
        "NEWSLETTER_IMAP_PASSWORD": PASSWORD,
        **env,
    }
    args = ["bounces", "process", "--imap-host", "127.0.0.1", "--imap-port", str(port)]
    args += ["--imap-user", USER, "--json", *extra]
    result = CliRunner().invoke(main, args, env=environ)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with dovecot_server() as server:
        yield server


def test_imap_bounces_are_flagged_seen_and_never_counted_again(
    tmp_path: Path,
    sent: dict[str, OutgoingMessage],  # noqa: F811
    dovecot: Dovecot,
) -> None:
    gone = sent["gone"]
    dovecot.deliver(dsn(gone, to=gone.envelope_from, recipient="gone@example.org"))
    dovecot.deliver(auto_reply(sent["full"].envelope_from))
    dovecot.deliver(NOT_A_REPORT)
    code, out, err = run_imap(tmp_path, dovecot.port, "--imap-tls", "none")
    assert (code, err) == (0, "")
    counts = json.loads(out)
    assert counts["source"] == f"imap://{USER}@127.0.0.1:{dovecot.port}/INBOX"
    assert (counts["read"], counts["hard"], counts["ignored"], counts["unknown"]) == (3, 1, 1, 1)
    assert counts["bounced"] == 1
    assert statuses(tmp_path) == {"gone": "bounced", "full": "active", "angry": "active"}
    box = dovecot.folder()
    flags = sorted(message.get_flags() for message in box.values())
    assert flags == ["", "S", "S"]  # the unknown message is left unread for a person
    code, out, _ = run_imap(tmp_path, dovecot.port, "--imap-tls", "none")
    again = json.loads(out)
    assert (code, again["read"], again["unknown"]) == (0, 1, 1)
    assert again["hard"] == again["already"] == again["bounced"] == 0


def test_imap_move_takes_processed_reports_out_of_the_folder(
    tmp_path: Path,
    sent: dict[str, OutgoingMessage],  # noqa: F811
    dovecot: Dovecot,
) -> None:
    gone = sent["gone"]
    report = dsn(gone, to=gone.envelope_from, recipient="gone@example.org")
    dovecot.deliver(b"", folder="Processed")  # the folder exists, with one old message
    dovecot.deliver(report)
    dovecot.deliver(NOT_A_REPORT)
    code, out, err = run_imap(
        tmp_path, dovecot.port, "--imap-tls", "none", "--imap-move", "Processed"
    )
    assert (code, err) == (0, "")
    assert (json.loads(out)["hard"], json.loads(out)["bounced"]) == (1, 1)
    assert statuses(tmp_path)["gone"] == "bounced"
    assert [m["Subject"] for m in dovecot.folder().values()] == ["hello"]
    moved = [bytes(m) for m in dovecot.folder("Processed").values()]
    assert len(moved) == 2 and any(b"Undelivered Mail Returned" in m for m in moved)
    code, out, _ = run_imap(
        tmp_path, dovecot.port, "--imap-tls", "none", "--imap-move", "Processed"
    )
    assert (code, json.loads(out)["read"], json.loads(out)["hard"]) == (0, 1, 0)


def test_imap_failures_are_one_line(
    tmp_path: Path,
    sent: dict[str, OutgoingMessage],  # noqa: F811
    dovecot: Dovecot,
) -> None:
    dovecot.deliver(NOT_A_REPORT)
    cases = {
        "no password": (("--imap-tls", "none"), {"NEWSLETTER_IMAP_PASSWORD": ""}),
        "no STARTTLS offered": (("--imap-tls", "starttls"), {}),
        "no such move folder": (("--imap-tls", "none", "--imap-move", "Nowhere"), {}),
        # Last: Dovecot slows the next logins from an address after a failed one.
        "wrong password": (("--imap-tls", "none"), {"NEWSLETTER_IMAP_PASSWORD": "nope"}),
    }
    errors = {}
    for name, (extra, env) in cases.items():
        code, out, err = run_imap(tmp_path, dovecot.port, *extra, **env)
        assert (code, out) == (1, ""), name
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        errors[name] = err
    assert "login failed" in errors["wrong password"]
    assert "NEWSLETTER_IMAP_PASSWORD" in errors["no password"]
    assert "STARTTLS" in errors["no STARTTLS offered"]
    assert "STATUS failed" in errors["no such move folder"]
    assert PASSWORD not in "".join(errors.values())
    # Nothing was flagged by the failed attempts.
    assert [m.get_flags() for m in dovecot.folder().values()] == [""]


def test_credentials_never_travel_in_plain_text_to_another_host() -> None:
    with pytest.raises(ConfigError, match="without TLS"):
        ImapSource(host="imap.example.com", user=USER, password=PASSWORD, tls="none")


def test_source_and_imap_host_are_one_or_the_other(tmp_path: Path) -> None:
    env = {"NEWSLETTER_DB": str(tmp_path / "b.db"), "NEWSLETTER_SECRET_KEY": TEST_KEY}
    for args in ([], [str(tmp_path), "--imap-host", "127.0.0.1"]):
        result = CliRunner().invoke(main, ["bounces", "process", *args], env=env)
        assert result.exit_code == 1
        assert result.stderr == (
            "error: give either SOURCE (a Maildir, mbox or .eml folder) or --imap-host\n"
        )


@pytest.mark.parametrize("mode", ["tls", "starttls"])
def test_imap_over_tls_with_a_self_signed_certificate(
    tmp_path: Path,
    sent: dict[str, OutgoingMessage],  # noqa: F811
    certificate: tuple[Path, Path],
    mode: str,
) -> None:
    gone = sent["gone"]
    with dovecot_server(certificate=certificate) as server:
        server.deliver(dsn(gone, to=gone.envelope_from, recipient="gone@example.org"))
        port = server.tls_port if mode == "tls" else server.port
        assert port is not None
        # An unknown certificate is refused: no silent trust.
        code, _, err = run_imap(tmp_path, port, "--imap-tls", mode)
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in err and err.count("\n") == 1
        code, out, err = run_imap(
            tmp_path, port, "--imap-tls", mode, SSL_CERT_FILE=str(certificate[0])
        )
        assert (code, err) == (0, "")
        assert (json.loads(out)["hard"], json.loads(out)["bounced"]) == (1, 1)
    assert statuses(tmp_path)["gone"] == "bounced"


def test_an_imap_message_over_the_limit_is_named_and_never_fetched(
    tmp_path: Path,
    sent: dict[str, OutgoingMessage],  # noqa: F811
    dovecot: Dovecot,
) -> None:
    gone = sent["gone"]
    dovecot.deliver(
        b"From: someone@example.org\r\nSubject: big\r\n\r\n" + b"x" * (10 * 1024 * 1024)
    )
    dovecot.deliver(dsn(gone, to=gone.envelope_from, recipient="gone@example.org"))
    code, out, err = run_imap(tmp_path, dovecot.port, "--imap-tls", "none")
    assert code == 1
    counts = json.loads(out)
    assert (counts["read"], counts["bounced"]) == (1, 1)
    [line] = err.splitlines()
    assert line.startswith(
        f"error: imap://{USER}@127.0.0.1:{dovecot.port}/INBOX: UID 1: not read: "
    )
    assert line.endswith("bytes, over 10,485,760 (no delivery report is)")
    flags = sorted(message.get_flags() for message in dovecot.folder().values())
    assert flags == ["", "S"]  # the big one is left unread, for a person
