"""The wheel builds, carries the default templates, and an installed `newsletter` knows its version."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with this interpreter; any failure fails the test with its output."""
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, cwd=cwd, env=env
    )
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built by the venv's hatchling (a test dependency), never from an index."""
    out = tmp_path_factory.mktemp("wheel")
    run("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT))
    (built,) = out.glob("newsletter-*.whl")
    return built


@pytest.mark.slow
def test_wheel_contains_templates_and_package(wheel: Path) -> None:
    assert wheel.name.startswith(f"newsletter-{VERSION}-")
    names = zipfile.ZipFile(wheel).namelist()
    templates = sorted(n for n in names if n.startswith("newsletter/templates/"))
    on_disk = sorted(
        "newsletter/templates/" + p.relative_to(ROOT / "templates").as_posix()
        for p in (ROOT / "templates").rglob("*")
        if p.is_file()
    )
    assert templates == on_disk and templates
    assert "newsletter/py.typed" in names and "newsletter/cli/__init__.py" in names
    # Pure Python: the compiled compose path is built in a checkout (`make compile`), never
    # shipped, so the wheel installs anywhere and its modules load from source.
    assert wheel.name.endswith("-py3-none-any.whl")
    assert [n for n in names if n.endswith((".so", ".pyd", ".stamp"))] == []


@pytest.mark.slow
def test_installed_wheel_reports_its_version(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "installed"
    run(
        "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)
    )
    # Run outside the checkout with the installed copy first on the path; the dependencies
    # come from this environment's site-packages.
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import importlib.metadata, newsletter; "
        "print(newsletter.__file__); "
        "print(newsletter.__version__); "
        "print(importlib.metadata.version('newsletter'))"
    )
    shown = run("-c", code, cwd=tmp_path, env=env).stdout.splitlines()
    assert shown[0].startswith(str(target)), shown[0]  # the wheel's copy, not the checkout
    assert shown[1:] == [VERSION, VERSION]


def test_the_console_script_leaves_the_heap_frozen_for_the_exit() -> None:
    # `newsletter` is cli.run: main, then gc.freeze, so the interpreter's exit does not run
    # the collector over the heap; an exit handler sees what the exit sees.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert scripts["scripts"]["newsletter"] == "newsletter.cli:run"
    code = (
        "import atexit, gc, sys; from newsletter.cli import run; "
        "atexit.register(lambda: print('frozen', gc.get_freeze_count())); "
        "sys.argv = ['newsletter', '--version']; run()"
    )
    shown = run("-c", code).stdout.splitlines()
    assert shown[0].startswith("newsletter, version")
    frozen = int(shown[-1].removeprefix("frozen "))
    assert frozen > 10_000  # the modules' objects, at least
