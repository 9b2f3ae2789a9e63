"""Sign-up rate limits over real HTTP: whose address counts, one count per mailbox, bounded memory."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from newsletter.web.security import (
    FORM_BYTES,
    Limit,
    RateLimiter,
    SignupLimits,
    address_key,
)
from newsletter.web.service import Service
from tests.smtp_servers import smtp_server
from tests.test_web_signup import sign_up
from tests.web_server import Running, service

TIGHT = SignupLimits(per_address=Limit(2, 3600), per_client=Limit(2, 3600))


def limiters(running: Running) -> Service:
    found: Service = running.app.state.service
    return found


def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    with (
        smtp_server() as (controller, _),
        service(tmp_path, smtp_port=controller.port, app_options={"signup_limits": TIGHT}) as web,
        web.client() as client,
    ):
        codes = [
            sign_up(
                client, email=f"a{i}@example.com", headers={"x-forwarded-for": f"203.0.113.{i}"}
            ).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]
        assert limiters(web).per_client.keys() == ("127.0.0.1",)


def test_behind_a_trusted_proxy_each_client_has_its_own_count(tmp_path: Path) -> None:
    with (
        smtp_server() as (controller, _),
        service(
            tmp_path,
            smtp_port=controller.port,
            app_options={"signup_limits": TIGHT},
            trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"],
        ) as web,
        web.client() as client,
    ):

        def attempt(n: int, forwarded: str) -> int:
            headers = {"x-forwarded-for": forwarded}
            return sign_up(client, email=f"b{n}@example.com", headers=headers).status_code

        # What the client wrote (left of its own address) changes nothing: the right-most
        # address not of a trusted proxy is the client.
        first = [attempt(n, f"198.51.100.{n}, 203.0.113.7, 10.1.1.1") for n in range(3)]
        assert first == [200, 200, 429]
        # Another client behind the same proxies is counted apart.
        assert attempt(3, "203.0.113.8, 10.1.1.1") == 200
        assert attempt(4, "junk, 10.1.1.1") == 200  # not an address: the proxy stands in
        assert set(limiters(web).per_client.keys()) == {"203.0.113.7", "203.0.113.8", "10.1.1.1"}


def test_huge_forwarded_for_is_neither_kept_nor_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = SignupLimits(per_address=Limit(1, 3600), per_client=Limit(1000, 3600))
    caplog.set_level(logging.INFO, logger="newsletter")
    with (
        smtp_server() as (controller, _),
        service(
            tmp_path,
            smtp_port=controller.port,
            app_options={"signup_limits": limits},
            trusted_proxies=["127.0.0.1"],
        ) as web,
        web.client() as client,
    ):
        for n in range(5):
            # The right-most hop is not an address; 20 KB stays under the server's header limit
            # (bigger headers get 431 before the app sees them), so the limiter gets to see it.
            huge = f"203.0.113.{n}, " + "x" * 20_000
            response = sign_up(client, email="same@example.com", headers={"x-forwarded-for": huge})
            assert response.status_code == (200 if n == 0 else 429)
        keys = limiters(web).per_client.keys()
    assert keys == ("127.0.0.1",)  # the proxy stands in for a client it cannot name
    limited = [r for r in caplog.records if r.getMessage() == "signup.limited"]
    assert len(limited) == 4
    assert max(len(str(r.__dict__)) for r in caplog.records) < 5_000


def test_address_variants_share_one_count(tmp_path: Path) -> None:
    limits = SignupLimits(per_address=Limit(2, 3600), per_client=Limit(100, 3600))
    with (
        smtp_server() as (controller, _),
        service(tmp_path, smtp_port=controller.port, app_options={"signup_limits": limits}) as web,
        web.client() as client,
    ):
        codes = [
            sign_up(client, email=email).status_code
            for email in ("victim@example.com", "victim+a@example.com", "Victim+b@example.com")
        ]
        assert codes == [200, 200, 429]
        gmail = ["first.last@gmail.com", "firstlast+x@googlemail.com", "FirstLast@gmail.com"]
        assert [sign_up(client, email=e).status_code for e in gmail] == [200, 200, 429]


def test_address_key() -> None:
    assert address_key("Victim+news@Example.com") == "victim@example.com"
    assert address_key("+only@example.com") == "+only@example.com"
    assert address_key("f.l@example.com") != address_key("fl@example.com")
    assert address_key("F.L+x@googlemail.com") == "fl@gmail.com"


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_new_keys_does_not_reset_a_busy_key() -> None:
    clock = Ticks()
    limiter = RateLimiter(Limit(3, 60), clock=clock, max_keys=100)
    assert [limiter.allow("victim") for _ in range(3)] == [True, True, True]
    for n in range(1_000):
        limiter.allow(f"attacker-{n}")
        if n % 50 == 0:
            assert not limiter.allow("victim")  # still counted: attempts keep it recent
    assert len(limiter.keys()) <= 100
    clock.now = 61
    assert limiter.allow("victim")


def test_expired_keys_go_first_and_long_keys_are_kept_short() -> None:
    clock = Ticks()
    limiter = RateLimiter(Limit(1, 60), clock=clock, max_keys=10)
    for n in range(5):
        limiter.allow(f"old-{n}")
    clock.now = 100
    limiter.allow("x" * 1_000_000)
    assert len(limiter.keys()) == 1 and len(limiter.keys()[0]) < 100
    assert not limiter.allow("x" * 1_000_000)
    assert limiter.allow("x" * 999_999 + "y")


def test_a_form_body_past_the_form_limit_is_refused_unread(tmp_path: Path) -> None:
    with service(tmp_path) as web, web.client() as client:
        form = client.get("/subscribe")
        assert form.status_code == 200
        big = b"&" * (FORM_BYTES + 1)  # empty fields: they pass every per-field limit
        headers = {"content-type": "application/x-www-form-urlencoded"}
        start = time.monotonic()
        refused = client.post("/subscribe", content=big, headers=headers)
        assert refused.status_code == 413
        assert time.monotonic() - start < 1.0
        chunked = client.post("/subscribe", content=iter([b"email=a"]), headers=headers)
        assert chunked.status_code == 411
        fits = client.post(
            "/subscribe", content=b"email=" + b"a" * (FORM_BYTES - 6), headers=headers
        )
        assert fits.status_code == 403  # read, and refused only for want of the form's token
        fields = client.post("/subscribe", content=b"&" * FORM_BYTES, headers=headers)
        assert fields.status_code == 400  # 65,537 (empty) fields: no form of ours has 30
        assert "the form has too many fields" in fields.text
