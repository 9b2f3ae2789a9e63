"""The compiled compose path: used when it matches its sources, never otherwise, and the
plain-Python path it falls back to builds the same emails (the equality tests, run pure)."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter import speedups

ROOT = Path(__file__).resolve().parent.parent
NOT_BUILT = "the compose path is not compiled, or its build is stale: run `make compile` (needs gcc and python3-dev)"
SHOW_FILE = "import newsletter.mail.splice as m, sys; sys.stdout.write(m.__file__)"


def _python(package_parent: Path, code: str, *, pure: bool = False) -> str:
    """What `code` prints in a fresh interpreter importing the package under `package_parent`."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    env.pop(speedups.PURE, None)
    if pure:
        env[speedups.PURE] = "1"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _loaded_from(package_parent: Path, *, pure: bool = False) -> str:
    """The file `newsletter.mail.splice` loads from in a fresh interpreter."""
    return _python(package_parent, SHOW_FILE, pure=pure)


def test_the_compiled_modules_are_the_ones_loaded() -> None:
    if not speedups.built():
        pytest.skip(NOT_BUILT)
    assert speedups.current(), "the build is stale: run `make compile`"
    for name in speedups.MODULES:
        module = importlib.import_module(name)
        assert str(module.__file__).endswith(".so"), name
        assert str(module.__file__).startswith(str(speedups.BUILD)), name
    assert speedups.in_use()


def test_a_build_that_no_longer_matches_its_sources_is_not_loaded(tmp_path: Path) -> None:
    if not speedups.current():
        pytest.skip(NOT_BUILT)
    copy = tmp_path / "newsletter"
    shutil.copytree(speedups.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = str(copy / "mail" / "splice.py")
    assert _loaded_from(tmp_path).startswith(str(copy / "_compiled"))
    assert _loaded_from(tmp_path, pure=True) == source
    # Any source counts, not only the compiled ones: mypyc built them against all their types.
    with (copy / "links.py").open("a", encoding="utf-8") as edited:
        edited.write("# edited after the build\n")
    assert _loaded_from(tmp_path) == source
    (copy / "links.py").write_bytes((speedups.PACKAGE / "links.py").read_bytes())
    assert _loaded_from(tmp_path).endswith(".so")
    # A build cut short before its stamp was written is never loaded.
    (copy / "_compiled" / "stamp").unlink()
    assert _loaded_from(tmp_path) == source


# In a fresh interpreter: whether the build is current, and whether the sources were hashed.
CHECK = (
    "import json\n"
    "from newsletter import speedups\n"
    "hashed = []\n"
    "digest = speedups.source_digest\n"
    "speedups.source_digest = lambda: hashed.append(1) or digest()\n"
    "print(json.dumps([speedups.current(), bool(hashed)]))\n"
)


def _check(package_parent: Path) -> list[bool]:
    return list(json.loads(_python(package_parent, CHECK)))


def test_the_sources_are_hashed_only_when_their_sizes_or_times_changed(tmp_path: Path) -> None:
    if not speedups.current():
        pytest.skip(NOT_BUILT)
    copy = tmp_path / "newsletter"
    shutil.copytree(speedups.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # The stamp as `make compile` leaves it, for this copy: digest, build inputs, listing.
    lines = (copy / "_compiled" / "stamp").read_text(encoding="utf-8").splitlines()
    relist = (
        "from newsletter import speedups\n"
        f"speedups.write_stamp(digest={lines[0]!r}, inputs={lines[1]!r}, "
        "listing=speedups.listing())\n"
    )
    _python(tmp_path, relist)
    assert _check(tmp_path) == [True, False]  # sizes and times as listed: nothing hashed
    source = copy / "links.py"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert _check(tmp_path) == [True, True]  # touched: hashed, and the same content
    with source.open("a", encoding="utf-8") as edited:
        edited.write("# edited after the build\n")
    assert _check(tmp_path) == [False, True]
    source.write_bytes((speedups.PACKAGE / "links.py").read_bytes())
    assert _check(tmp_path) == [True, True]
    (copy / "added.py").write_text("VALUE = 1\n", encoding="utf-8")  # a source more
    assert _check(tmp_path) == [False, True]
    (copy / "added.py").unlink()
    (copy / ".#links.py").symlink_to(tmp_path / "gone")  # an editor's lock: a dangling link
    assert _check(tmp_path) == [False, False]
    assert _loaded_from(tmp_path) == str(copy / "mail" / "splice.py")


def test_an_extension_beside_a_source_is_never_loaded(tmp_path: Path) -> None:
    # What an older build layout, or another tool, may leave there: Python's own importer
    # would prefer it to the source. Here it is not even a valid extension.
    copy = tmp_path / "newsletter"
    shutil.copytree(speedups.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (copy / "mail" / f"splice{suffix}").write_bytes(b"not an extension")
    assert _loaded_from(tmp_path, pure=True) == str(copy / "mail" / "splice.py")
    if speedups.current():
        assert _loaded_from(tmp_path).startswith(str(copy / "_compiled"))


def test_plain_python_builds_the_same_emails() -> None:
    """The message-by-message equality tests, with every compiled module loaded from source."""
    tests = ["test_compose.py", "test_compose_per_paper.py", "test_fragments.py"]
    tests += ["test_match.py", "test_message.py", "test_tokens.py"]
    script = (
        "import sys, pytest\n"
        f"code = pytest.main(['-p', 'no:cacheprovider', *{tests!r}])\n"
        "from newsletter import speedups\n"
        "loaded = [sys.modules[m].__file__ for m in speedups.MODULES if m in sys.modules]\n"
        "assert len(loaded) == len(speedups.MODULES), loaded\n"
        "assert all(f.endswith('.py') for f in loaded), loaded\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, speedups.PURE: "1"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT / "tests",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
