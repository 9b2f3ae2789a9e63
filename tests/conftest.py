"""Shared fixtures: real files, a real SQLite store, the real CLI, real Chromium."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.store import Store

# Helpers that compare with plain `assert` get pytest's readable diffs too.
pytest.register_assert_rewrite("tests.pretty_html")

FIXTURES = Path(__file__).parent / "fixtures"
DIGESTS = sorted(FIXTURES.glob("20*.md"))
CHROMIUM = "/usr/bin/chromium"
PINNED_NOW = dt.datetime(2024, 12, 13, 9, 0, tzinfo=dt.UTC)
# The signing key of every test: fixed, so golden emails keep their tokens, and as strong as
# secrets.token_urlsafe(32), since the service refuses weaker keys.
TEST_KEY = "H-OMfV2st76EgfyGGtuclBRL3dVmFiummXI3sPiTbPk"
# The fixed key old demos used, and the one line a command answers it with.
OLD_DEMO_KEY = "demo-secret-key-not-for-production"
OLD_DEMO_KEY_ERROR = (
    "error: NEWSLETTER_SECRET_KEY is too weak: length 34, under 43 characters; "
    'generate one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI; skips when it is missing)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    yield cert, key


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def clock() -> dt.datetime:
    return PINNED_NOW


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "test.db", clock=lambda: PINNED_NOW) as s:
        yield s


@pytest.fixture
def loaded_store(store: Store) -> Store:
    """A store holding the three real digests."""
    from newsletter.digest.ingest import ingest_paths

    report = ingest_paths(store, DIGESTS)
    assert not report.failed
    return store


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for CLI runs: a database in tmp, a known key, no config file from the checkout."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "NEWSLETTER_DB",
        "NEWSLETTER_CONFIG",
        "NEWSLETTER_SECRET_KEY",
        "NEWSLETTER_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return {"NEWSLETTER_DB": str(tmp_path / "cli.db"), "NEWSLETTER_SECRET_KEY": TEST_KEY}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright; skips with the package to install.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it
    is open, which would break asyncio tests in other modules.
    """
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("needs Debian chromium: apt-get install chromium fonts-noto-cjk")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite golden files from current output."
    )


def skips_fail() -> bool:
    """True in CI (CI set, and not to false or 0).

    CI installs every system package (scripts/system-deps.sh), so a skip there means a test
    silently did not run.
    """
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skip into a failure that keeps its reason; an expected failure stays one."""
    if report.skipped and not hasattr(report, "wasxfail") and skips_fail():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI (CI={os.environ['CI']}), which must run every test: {reason}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    _as_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report: pytest.CollectReport = yield  # a module-level skip or importorskip
    _as_failure(report)
    return report
