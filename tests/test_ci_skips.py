"""In CI a skipped test fails the run: CI has every system package, so a skip hides a gap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

PROBE = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("needs apt-get install something")

@pytest.fixture
def package():
    pytest.skip("needs a package")

def test_fixture_skips(package):
    pass

@pytest.mark.xfail(reason="a known bug is not a skip")
def test_known_bug():
    assert False
"""


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """pytest on a small file, with this suite's hooks, and CI set to `ci` (None: unset)."""
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n",
        encoding="utf-8",
    )
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize("ci", [None, "", "false"])
def test_outside_ci_a_skip_is_a_skip(tmp_path: Path, ci: str | None) -> None:
    result = run_probe(tmp_path, ci)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in result.stdout


@pytest.mark.slow
def test_in_ci_a_skip_fails_the_run(tmp_path: Path) -> None:
    result = run_probe(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in result.stdout
    assert "skipped in CI (CI=true), which must run every test" in result.stdout
    assert "needs apt-get install something" in result.stdout  # the reason is kept
