"""`newsletter doctor` against a real DNS server on loopback (dnslib) serving good and bad records,
a real aiosmtpd relay, and the service (or a static-only server) over real HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from dnslib import MX, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from newsletter.cli import main
from newsletter.config import Settings, load_settings
from newsletter.doctor.checks import (
    check_alignment,
    check_dkim_record,
    check_dmarc,
    check_key,
    check_spf_record,
    diagnose,
    dmarc_for,
)
from newsletter.doctor.lookups import DnsLookup
from newsletter.doctor.probes import check_base_url, check_relay
from newsletter.mail.dkim import dns_txt, generate_key

from .conftest import TEST_KEY
from .smtp_servers import smtp_server
from .web_server import free_port, running, service

DOMAIN = "news.example.com"
NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
Records = dict[tuple[str, str], list[Any]]


def txt(value: str) -> TXT:
    """A TXT record, split into strings of 255 bytes as a zone file would."""
    return TXT([value[i : i + 255] for i in range(0, len(value), 255)])


class Zone(BaseResolver):  # type: ignore[misc]
    """Answers from a dict of (name, type) -> rdata; NXDOMAIN for names it does not hold."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self.asked: list[tuple[str, str]] = []

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        self.asked.append((name, kind))
        for rdata in self.records.get((name, kind), []):
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        if not any(held == name for held, _ in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class Dns:
    """A DNS server on 127.0.0.1 whose records a test can change between checks."""

    def __init__(self) -> None:
        self.zone = Zone({})
        self.server = DNSServer(
            self.zone, address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _: None)
        )
        self.server.start_thread()
        self.address = f"127.0.0.1:{self.server.server.server_address[1]}"

    def serve(self, records: Records) -> DnsLookup:
        self.zone.records = records
        return DnsLookup(server=self.address, timeout=5)


@pytest.fixture(scope="module")
def dns() -> Iterator[Dns]:
    server = Dns()
    yield server
    server.server.stop()


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return generate_key("rsa")


def good_records(key_pem: bytes) -> Records:
    return {
        (DOMAIN, "TXT"): [txt("v=spf1 include:_spf.relay.example.net ip4:192.0.2.10 -all")],
        ("_spf.relay.example.net", "TXT"): [txt("v=spf1 ip4:127.0.0.0/8 ip4:203.0.113.0/24 ~all")],
        (f"s1._domainkey.{DOMAIN}", "TXT"): [txt(dns_txt(key_pem))],
        (f"_dmarc.{DOMAIN}", "TXT"): [txt("v=DMARC1; p=reject; rua=mailto:d@example.com")],
        (f"relay.{DOMAIN}", "A"): [A("203.0.113.7")],
        ("elsewhere.example.org", "A"): [A("198.51.100.9")],
        ("example.org", "MX"): [MX("mx.example.org")],
        ("mx.example.org", "A"): [A("198.51.100.25")],
    }


def settings_for(tmp_path: Path, key_pem: bytes, **changes: Any) -> Settings:
    key_file = tmp_path / "s1.private"
    key_file.write_bytes(key_pem)
    values: dict[str, Any] = {
        "db": tmp_path / "doctor.db",
        "from_address": f"Daily Papers <digest@{DOMAIN}>",
        "envelope_from": f"bounces@{DOMAIN}",
        "dkim_selector": "s1",
        "dkim_domain": DOMAIN,
        "dkim_key_file": key_file,
        "secret_key": TEST_KEY,
        "smtp_host": "127.0.0.1",
        "smtp_port": 25,
        "smtp_tls": "none",
        **changes,
    }
    return load_settings(environ={}, overrides=values)


# SPF ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "record", "status", "words"),
    [
        (f"relay.{DOMAIN}", None, "ok", "covers the relay 203.0.113.7"),  # through include:
        ("elsewhere.example.org", None, "fail", "does not cover the relay 198.51.100.9 (fail)"),
        ("elsewhere.example.org", "v=spf1 mx:example.org -all", "fail", "198.51.100.9"),
        ("elsewhere.example.org", "v=spf1 a:elsewhere.example.org -all", "ok", "covers"),
        ("elsewhere.example.org", "v=spf1 redirect=_spf.relay.example.net", "fail", "(softfail)"),
        (f"relay.{DOMAIN}", "v=spf1 redirect=_spf.relay.example.net", "ok", "covers"),
        ("127.0.0.1", "v=spf1 ip4:192.0.2.10 -all", "warn", "private address"),
        ("127.0.0.1", "", "fail", "has no SPF record"),
        ("127.0.0.1", "v=spf1 include:nowhere.example.net -all", "fail", "is broken"),
    ],
)
def test_spf_covers_the_relay_or_says_what_to_add(
    dns: Dns, tmp_path: Path, key_pem: bytes, host: str, record: str | None, status: str, words: str
) -> None:
    records = good_records(key_pem)
    if record == "":
        del records[(DOMAIN, "TXT")]
    elif record is not None:
        records[(DOMAIN, "TXT")] = [txt(record)]
    check = check_spf_record(settings_for(tmp_path, key_pem, smtp_host=host), dns.serve(records))
    assert (check.status, check.name) == (status, "spf"), check
    assert words in f"{check.detail} {check.advice}"
    assert (check.advice == "") == (status == "ok")


def test_spf_counts_lookups(dns: Dns, tmp_path: Path, key_pem: bytes) -> None:
    records = good_records(key_pem)
    for n in range(12):  # a chain of includes longer than RFC 7208's ten lookups
        records[(f"l{n}.example.net", "TXT")] = [txt(f"v=spf1 include:l{n + 1}.example.net -all")]
    records[(DOMAIN, "TXT")] = [txt("v=spf1 include:l0.example.net -all")]
    check = check_spf_record(
        settings_for(tmp_path, key_pem, smtp_host="8.8.8.8"), dns.serve(records)
    )
    assert check.status == "fail"
    assert "more than 10 DNS lookups" in check.detail


# DKIM -----------------------------------------------------------------------------------------


def test_dkim_record_must_be_the_key_files_public_half(
    dns: Dns, tmp_path: Path, key_pem: bytes
) -> None:
    settings = settings_for(tmp_path, key_pem)
    records = good_records(key_pem)
    assert check_dkim_record(settings, dns.serve(records)).status == "ok"
    records[(f"s1._domainkey.{DOMAIN}", "TXT")] = [txt(dns_txt(generate_key("rsa")))]
    mismatch = check_dkim_record(settings, dns.serve(records))
    assert mismatch.status == "fail"
    assert "is not the public half of" in mismatch.detail
    records[(f"s1._domainkey.{DOMAIN}", "TXT")] = [txt("v=DKIM1; k=rsa; p=")]
    assert "revoked" in check_dkim_record(settings, dns.serve(records)).detail
    del records[(f"s1._domainkey.{DOMAIN}", "TXT")]
    missing = check_dkim_record(settings, dns.serve(records))
    assert (missing.status, missing.detail) == ("fail", f"no DKIM record at s1._domainkey.{DOMAIN}")
    unsigned = check_dkim_record(
        settings_for(tmp_path, key_pem, dkim_selector="", dkim_domain="", dkim_key_file=""),
        dns.serve(records),
    )
    assert unsigned.status == "warn"


def test_dkim_half_set_fails_as_send_does(dns: Dns, tmp_path: Path, key_pem: bytes) -> None:
    """Only [dkim] domain set: send refuses to start, so the doctor fails, and nothing is signed."""
    settings = settings_for(tmp_path, key_pem, dkim_selector="", dkim_key_file="")
    lookup = dns.serve(good_records(key_pem))
    dkim = check_dkim_record(settings, lookup)
    assert (dkim.status, dkim.detail) == (
        "fail",
        "DKIM needs dkim_selector, dkim_domain and dkim_key_file; "
        "dkim_selector, dkim_key_file not set",
    )
    alignment = check_alignment(settings, dmarc=dmarc_for(settings, lookup))
    assert alignment.status == "warn"  # only SPF's envelope domain aligns: no signature
    assert alignment.detail.startswith(f"no DKIM signature to align with From {DOMAIN}")


# DMARC and alignment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "status"),
    [
        ("v=DMARC1; p=reject", "ok"),
        ("v=DMARC1; p=quarantine", "ok"),
        ("v=DMARC1; p=none", "warn"),
        ("v=DMARC1; p=maybe", "fail"),
        (None, "fail"),
    ],
)
def test_dmarc_policy(
    dns: Dns, tmp_path: Path, key_pem: bytes, record: str | None, status: str
) -> None:
    records = good_records(key_pem)
    del records[(f"_dmarc.{DOMAIN}", "TXT")]
    if record is not None:
        records[(f"_dmarc.{DOMAIN}", "TXT")] = [txt(record)]
    settings = settings_for(tmp_path, key_pem)
    check = check_dmarc(settings, dmarc=dmarc_for(settings, dns.serve(records)))
    assert check.status == status, check


def test_dmarc_falls_back_to_the_organisational_domain(
    dns: Dns, tmp_path: Path, key_pem: bytes
) -> None:
    records = good_records(key_pem)
    del records[(f"_dmarc.{DOMAIN}", "TXT")]
    records[("_dmarc.example.com", "TXT")] = [txt("v=DMARC1; p=none")]
    settings = settings_for(tmp_path, key_pem)
    check = check_dmarc(settings, dmarc=dmarc_for(settings, dns.serve(records)))
    assert (check.status, check.detail) == ("warn", "_dmarc.example.com: p=none (monitoring only)")


@pytest.mark.parametrize(
    ("dkim_domain", "envelope", "adkim", "status"),
    [
        (DOMAIN, f"bounces@{DOMAIN}", "r", "ok"),
        ("example.com", "bounces@elsewhere.org", "r", "ok"),  # relaxed: one organisation
        ("example.com", "bounces@elsewhere.org", "s", "fail"),  # strict: must be equal
        ("mailer.example.org", f"bounces@{DOMAIN}", "r", "warn"),  # only SPF aligns
        ("mailer.example.org", "bounces@elsewhere.org", "r", "fail"),
    ],
)
def test_alignment_of_from_with_dkim(
    dns: Dns,
    tmp_path: Path,
    key_pem: bytes,
    dkim_domain: str,
    envelope: str,
    adkim: str,
    status: str,
) -> None:
    records = good_records(key_pem)
    records[(f"_dmarc.{DOMAIN}", "TXT")] = [txt(f"v=DMARC1; p=reject; adkim={adkim}")]
    settings = settings_for(tmp_path, key_pem, dkim_domain=dkim_domain, envelope_from=envelope)
    check = check_alignment(settings, dmarc=dmarc_for(settings, dns.serve(records)))
    assert check.status == status, check


def test_diagnose_asks_for_the_dmarc_record_once(dns: Dns, tmp_path: Path, key_pem: bytes) -> None:
    """DMARC and alignment read one answer: with a dead DNS server, one timeout, not two."""
    closed = free_port()
    settings = settings_for(
        tmp_path, key_pem, smtp_port=closed, base_url=f"http://127.0.0.1:{closed}"
    )
    lookup = dns.serve(good_records(key_pem))
    dns.zone.asked.clear()
    checks = {c.name: c.status for c in diagnose(settings, lookup=lookup, timeout=2)}
    assert (checks["dmarc"], checks["alignment"]) == ("ok", "ok")
    assert dns.zone.asked.count((f"_dmarc.{DOMAIN}", "TXT")) == 1


# Relay ----------------------------------------------------------------------------------------


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"news", b"right")
    return AuthResult(success=ok, handled=False)  # handled: aiosmtpd answers 535 itself


def test_relay_login_accepted_and_refused() -> None:
    with smtp_server(authenticator=_authenticator, auth_require_tls=False) as (controller, _):
        for password, status in (("right", "ok"), ("wrong", "fail")):
            settings = load_settings(
                environ={"NEWSLETTER_SMTP_PASSWORD": password},
                overrides={"smtp_port": controller.port, "smtp_user": "news", "smtp_tls": "none"},
            )
            check = check_relay(settings, timeout=5)
            assert check.status == status, check
            expected = "login as news accepted" if status == "ok" else "refused the login of news"
            assert expected in check.detail


def test_relay_keeps_sends_guards_on_credentials() -> None:
    """Like `send`, the doctor never sends a password in clear text, nor logs in without one."""
    attempts: list[Any] = []

    def recording(*args: Any) -> Any:
        attempts.append(args[-1])
        return _authenticator(*args)

    with smtp_server(authenticator=recording, auth_require_tls=False) as (controller, _):
        no_password = load_settings(
            environ={},
            overrides={"smtp_port": controller.port, "smtp_user": "news", "smtp_tls": "none"},
        )
        check = check_relay(no_password, timeout=5)
    assert (check.status, check.detail) == (
        "fail",
        "SMTP user is set but NEWSLETTER_SMTP_PASSWORD is not",
    )
    assert attempts == []  # no login with an empty password
    remote = load_settings(
        environ={"NEWSLETTER_SMTP_PASSWORD": "right"},
        overrides={"smtp_host": "192.0.2.25", "smtp_user": "news", "smtp_tls": "none"},
    )
    check = check_relay(remote, timeout=1)
    assert (check.status, check.detail) == (
        "fail",
        "refusing to send SMTP credentials to 192.0.2.25 without TLS "
        "(use --smtp-tls starttls or tls)",
    )


def test_relay_without_starttls_fails_when_starttls_is_required(
    tmp_path: Path, key_pem: bytes
) -> None:
    with smtp_server() as (controller, _):
        plain = settings_for(tmp_path, key_pem, smtp_port=controller.port)
        assert check_relay(plain, timeout=5).status == "ok"
        required = plain.replace(smtp_tls="starttls")
        check = check_relay(required, timeout=5)
        assert (check.status, check.detail) == (
            "fail",
            f"127.0.0.1:{controller.port} does not offer STARTTLS and TLS mode is starttls "
            "(use --smtp-tls none only for a relay on a trusted network)",
        )
    gone = check_relay(plain, timeout=5)  # the server is stopped now
    assert gone.status == "fail"
    assert (
        gone.detail
        == f"cannot connect to SMTP server 127.0.0.1:{controller.port}: Connection refused"
    )


# base_url -------------------------------------------------------------------------------------


def test_base_url_serves_one_click_post(tmp_path: Path) -> None:
    with service(tmp_path) as web:
        check = check_base_url(web.settings, timeout=5)
    assert (check.status, check.detail) == (
        "warn",
        f"{web.url} serves the unsubscribe route, over plain http",
    )


def test_base_url_of_a_static_server_fails(tmp_path: Path, key_pem: bytes) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<p>hello</p>")
    app = Starlette(routes=[Mount("/", StaticFiles(directory=tmp_path / "site", html=True))])
    port = free_port()
    settings = settings_for(tmp_path, key_pem, serve_port=port, base_url=f"http://127.0.0.1:{port}")
    with running(app, settings=settings):
        check = check_base_url(settings, timeout=5)
    assert check.status == "fail"
    assert "answers 405" in check.detail
    nobody = check_base_url(settings, timeout=2)  # stopped: nothing listens
    assert nobody.status == "fail" and "does not answer" in nobody.detail


@contextmanager
def greeting_server(greeting: bytes) -> Iterator[int]:
    """A TCP server on loopback that answers every connection with `greeting`, then closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_base_url_that_does_not_speak_http_fails_in_one_line(
    tmp_path: Path, key_pem: bytes
) -> None:
    with greeting_server(b"220 hello\r\n") as port:
        settings = settings_for(tmp_path, key_pem, base_url=f"http://127.0.0.1:{port}")
        check = check_base_url(settings, timeout=5)
    assert check.status == "fail"
    assert check.detail == f"http://127.0.0.1:{port} does not answer: BadStatusLine: 220 hello"


# The command ----------------------------------------------------------------------------------


def test_doctor_command_json_and_exit_status(dns: Dns, tmp_path: Path, key_pem: bytes) -> None:
    dns.serve(good_records(key_pem))
    (tmp_path / "s1.private").write_bytes(key_pem)
    with smtp_server() as (controller, _), service(tmp_path) as web:
        config = tmp_path / "newsletter.toml"
        config.write_text(
            f"""
[site]
base_url = "{web.url}"
[email]
from_address = "Daily Papers <digest@{DOMAIN}>"
envelope_from = "bounces@{DOMAIN}"
[smtp]
host = "127.0.0.1"
port = {controller.port}
tls = "none"
[dkim]
selector = "s1"
domain = "{DOMAIN}"
key_file = "{tmp_path / "s1.private"}"
"""
        )
        env = {"NEWSLETTER_SECRET_KEY": TEST_KEY, "NEWSLETTER_CONFIG": str(config)}
        runner = CliRunner()
        good = runner.invoke(main, ["doctor", "--json", "--dns", dns.address], env=env)
        assert good.exit_code == 0, good.output
        report = json.loads(good.output)
        assert report["ok"] is True
        assert {c["name"]: c["status"] for c in report["checks"]} == {
            "key": "ok",
            "spf": "ok",
            "dkim": "ok",
            "dmarc": "ok",
            "alignment": "ok",
            "relay": "ok",
            "base_url": "warn",  # plain http
        }
        records = good_records(key_pem)
        records[(f"_dmarc.{DOMAIN}", "TXT")] = [txt("v=DMARC1; p=none")]
        del records[(DOMAIN, "TXT")]
        dns.serve(records)
        bad = runner.invoke(main, ["doctor", "--dns", dns.address], env=env)
    assert bad.exit_code == 1
    lines = bad.output.splitlines()
    assert f"fail  spf       {DOMAIN} has no SPF record" in lines
    assert "warn  dmarc     _dmarc.news.example.com: p=none (monitoring only)" in lines
    assert "Traceback" not in bad.output


@pytest.mark.parametrize(
    "server", ["not a server:x", "example.com", "300.1.1.1", "[dns.example]:53"]
)
def test_doctor_dns_option_must_be_an_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    monkeypatch.chdir(tmp_path)
    bad_option = CliRunner().invoke(main, ["doctor", "--dns", server], env={})
    assert bad_option.exit_code == 1
    assert bad_option.output == (
        f"error: --dns {server!r}: must be an IP address with an optional :PORT\n"
    )


def test_doctor_takes_no_database_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It checks the key, DNS, the relay and base_url: a --db it would ignore is refused.
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["doctor", "--db", str(tmp_path / "x.db")], env={})
    assert result.exit_code == 2
    assert "No such option '--db'" in result.output
    assert not (tmp_path / "x.db").exists()


def test_weak_key_fails(tmp_path: Path, key_pem: bytes) -> None:
    key = check_key(settings_for(tmp_path, key_pem, secret_key="short"))
    assert (key.name, key.status) == ("key", "fail")
    assert key.detail == "NEWSLETTER_SECRET_KEY is too weak: length 5, under 43 characters"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_while_doctor_waits_is_one_line_and_the_shells_code(
    tmp_path: Path, signum: int, code: int
) -> None:
    # A DNS server that never answers: doctor waits out its 60 s timeout unless stopped.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        env = {**os.environ, "NEWSLETTER_SECRET_KEY": TEST_KEY, "NEWSLETTER_FROM": f"a@{DOMAIN}"}
        process = subprocess.Popen(
            [NEWSLETTER, "doctor", "--dns", f"127.0.0.1:{port}", "--timeout", "60"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            silent.settimeout(20)
            silent.recvfrom(512)  # it asked: it is waiting now
            process.send_signal(signum)
            _, err = process.communicate(timeout=20)
        finally:
            process.kill()
    assert process.returncode == code  # 128 + the signal, not click's "Aborted!" and 1
    assert err == "error: interrupted\n"


def test_a_base_url_too_long_for_the_unsubscribe_header_fails_before_any_request(
    tmp_path: Path, key_pem: bytes
) -> None:
    # Every send stops on the first link over 70 characters: doctor says so first.
    long_base = "https://papers-newsletter.example.com/ai/daily"
    check = check_base_url(settings_for(tmp_path, key_pem, base_url=long_base), timeout=0.5)
    assert (check.name, check.status) == ("base_url", "fail")
    assert "unsubscribe links would be up to" in check.detail
    assert check.advice == "use a base_url of at most 33 characters (a shorter host or path)"


def test_base_url_of_a_server_refusing_post_with_501_fails(tmp_path: Path, key_pem: bytes) -> None:
    # Python's own file server answers a POST with 501: one-click cannot work there either.
    (tmp_path / "site").mkdir()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path / "site",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            time.sleep(0.05)
        settings = settings_for(tmp_path, key_pem, base_url=f"http://127.0.0.1:{port}")
        check = check_base_url(settings, timeout=5)
    finally:
        server.terminate()
        server.wait()
    assert check.status == "fail"
    assert (
        check.detail
        == f"POST http://127.0.0.1:{port}/u/... answers 501: one-click unsubscribe would fail"
    )
