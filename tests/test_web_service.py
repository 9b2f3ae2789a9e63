"""The service as a whole: /healthz, JSON logs without tokens, the `serve` command, rate limiter."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.store import Store
from newsletter.web.logs import JsonFormatter, redact_path
from newsletter.web.security import Limit, RateLimiter
from tests.conftest import TEST_KEY
from tests.web_server import first_health, free_port, make_site, service


def test_healthz(tmp_path: Path) -> None:
    with service(tmp_path) as web, web.client() as client:
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {
            "ok": True,
            "db": "ok",
            "latest_digest": "2024-12-13",
            "site": True,
        }
        web.app.state.service.stores.close()  # the database goes away under the service
        broken = client.get("/healthz")
        assert broken.status_code == 503
        assert broken.json()["ok"] is False


def test_healthz_is_not_ok_once_the_site_folder_is_gone(tmp_path: Path) -> None:
    with service(tmp_path) as web, web.client() as client:
        site = web.settings.site_dir
        site.rename(tmp_path / "site.moved")
        gone = client.get("/healthz")
        feed = client.get("/rss.xml")
        (tmp_path / "site.moved").rename(site)
        back = client.get("/healthz")
    # Still 200: the unsubscribe links and the database work; `ok` is what to alert on.
    assert (gone.status_code, gone.json()) == (
        200,
        {
            "ok": False,
            "db": "ok",
            "latest_digest": "2024-12-13",
            "site": False,
            "error": f"{site}: the site folder is gone",
        },
    )
    assert feed.status_code == 404
    assert back.json()["ok"] is True


def test_healthz_without_a_site_from_the_start_is_ok(tmp_path: Path) -> None:
    with service(tmp_path, site=False) as web, web.client() as client:
        health = client.get("/healthz")
    assert (health.status_code, health.json()["ok"], health.json()["site"]) == (200, True, False)


def test_logs_are_json_lines_without_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.web")
    with service(tmp_path) as web, web.client() as client:
        someone = web.store.add_subscriber("logged@example.com")
        token = web.token(someone.id, "unsubscribe")
        client.post(f"/u/{token}")
        deadline = time.monotonic() + 5
        while not any(getattr(r, "path", "").startswith("/u/") for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "newsletter.web"]
    events = [json.loads(line) for line in lines]
    assert all("\n" not in line for line in lines)
    request = next(e for e in events if e["event"] == "request" and e["path"].startswith("/u/"))
    assert request["method"] == "POST" and request["status"] == 200
    assert request["path"] == f"/u/{token[:6]}…"
    assert isinstance(request["ms"], float)
    assert any(e["event"] == "unsubscribe" and e["subscriber"] == someone.id for e in events)
    assert not any(token in line or TEST_KEY in line for line in lines)


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/u/MTc.abcdefghijklmnop", "/u/MTc.ab…"),
        ("/p/MTc.abcdefghijklmnop/preview", "/p/MTc.ab…/preview"),
        ("/feeds/0123456789abcdef.xml", "/feeds/012345…"),
        ("/rss.xml", "/rss.xml"),
        ("/papers/u/MTc.abcdefghijklmnop", "/papers/u/MTc.ab…"),  # a 404, the token still good
        ("/p/u/MTc.abcdefghijklmnop", "/p/u…/MTc.ab…"),  # a route name before the token
        ("/u/u/u/MTc.abcdefghijklmnop", "/u/u…/u…/MTc.ab…"),
    ],
)
def test_redact_path(path: str, shown: str) -> None:
    assert redact_path(path) == shown


def test_rate_limiter_window_slides() -> None:
    now = [0.0]
    limiter = RateLimiter(Limit(2, 10.0), clock=lambda: now[0], max_keys=3)
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    now[0] = 10.5
    assert limiter.allow("a")
    for key in "bcdef":  # more keys than it keeps: old ones are dropped, new ones still counted
        assert limiter.allow(key)
    assert not all(limiter.allow("f") for _ in range(3))


def test_serve_needs_the_secret_key(runner: CliRunner, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "NEWSLETTER_SECRET_KEY": ""}
    result = runner.invoke(main, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: NEWSLETTER_SECRET_KEY is not set (a long random string signs subscriber links); "
        'generate one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
    ]


def test_serve_refuses_a_database_that_is_not_there_unless_it_watches(tmp_path: Path) -> None:
    env = {"NEWSLETTER_SECRET_KEY": TEST_KEY, "NEWSLETTER_DB": str(tmp_path / "typo.db")}
    result = CliRunner().invoke(
        main, ["serve", "--site", str(make_site(tmp_path / "site"))], env=env
    )
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: {tmp_path / 'typo.db'}: no database here (`newsletter ingest` or `newsletter "
        "subscribers import` creates one; `serve --watch` starts one)\n",
    )
    assert not (tmp_path / "typo.db").exists()  # it used to make and serve an empty one


def test_serve_command_runs_and_stops(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    Store(tmp_path / "serve.db").close()  # an empty list, as `subscribers import` leaves it
    port = free_port()
    env = {
        **os.environ,
        "NEWSLETTER_SECRET_KEY": TEST_KEY,
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("NEWSLETTER_CONFIG", None)
    command = [
        str(Path(sys.executable).with_name("newsletter")),
        "serve",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "serve.db"),
        "--site",
        str(site),
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        health = first_health(process, port)
        assert health.json()["ok"] is True
        # No trusted_proxies: a client's own X-Forwarded-For does not change who it is.
        feed = httpx.get(
            f"http://127.0.0.1:{port}/rss.xml", headers={"x-forwarded-for": "203.0.113.9"}
        )
        assert feed.headers["content-type"] == "application/rss+xml; charset=utf-8"
        assert "server" not in feed.headers
        # A multipart body (our forms never send one): refused unread, saying how to send it.
        garbage = httpx.post(
            f"http://127.0.0.1:{port}/subscribe",
            content=b"--zz\r\nGARBAGE\r\n\r\n",
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert garbage.status_code == 415  # before the CSRF check
        assert "a form is sent as application/x-www-form-urlencoded" in garbage.text
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0
    logged = [json.loads(line) for line in err.decode().splitlines()]  # every line
    feeds = [e for e in logged if e.get("path") == "/rss.xml"]
    assert [(e["status"], e["client"]) for e in feeds] == [(200, "127.0.0.1")]
    assert TEST_KEY not in err.decode()
