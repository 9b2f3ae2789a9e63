"""Compile the compose path with mypyc (`newsletter.speedups.MODULES`) into newsletter/_compiled/.

    python scripts/compile.py           # `make compile`; `make test` and `make bench` run it

One build at a time (a lock). The stamp is written last and only when the sources read
after the build are the ones read before it, so an interrupted or failed build, or one that
raced an edit, is never used (`newsletter.speedups`). It is rebuilt when the sources, the
Python, mypy or this script change. Without a C compiler or the Python headers the package
runs as plain Python, about 1.7x slower to compose: this says so in one line and exits 0,
unless CI is set (there the tests need the compiled build).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import speedups  # noqa: E402

TEMP = ROOT / "build" / "mypyc"


def missing() -> str | None:
    """What the build needs and this machine lacks, as an install hint; None if nothing."""
    for tool in ("mypyc", "setuptools"):
        if importlib.util.find_spec(tool) is None:
            return f"{tool} (pip install -e '.[test]', or make compile)"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"a C compiler ({compiler}; apt-get install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "the Python headers (apt-get install python3-dev)"
    return None


def inputs() -> str:
    """What else a build depends on: this Python's ABI, mypy (mypyc) and this script."""
    script = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return f"{sys.implementation.cache_tag} mypy-{version('mypy')} compile-{script}"


def clean() -> None:
    """Remove the build, and any extension an older layout left beside the sources."""
    shutil.rmtree(speedups.BUILD, ignore_errors=True)
    (speedups.PACKAGE / "speedups.stamp").unlink(missing_ok=True)  # the older layout's stamp
    for path in speedups.PACKAGE.rglob("*"):
        if path.name.endswith(tuple(EXTENSION_SUFFIXES)) and path.is_file():
            path.unlink()


def build() -> None:
    """The build itself (run in a child process, its output kept unless it fails)."""
    # Imported here: mypyc and setuptools are build tools (the test extra), not dependencies.
    from mypyc.build import mypycify
    from setuptools import Distribution

    paths = [str(speedups.source_path(m).relative_to(ROOT)) for m in speedups.MODULES]
    os.chdir(ROOT)
    group = speedups.LIBRARY.removesuffix("__mypyc")
    extensions = mypycify(paths, opt_level="3", group_name=group, target_dir=str(TEMP))
    # A Distribution of our own: setup() would read pyproject.toml, which is hatchling's.
    dist = Distribution({"name": "newsletter-speedups", "ext_modules": extensions})
    dist.script_args = [
        "build_ext",
        "--build-lib",
        str(speedups.BUILD),
        "--build-temp",
        str(TEMP / "temp"),
        "--parallel",
        str(os.cpu_count() or 1),
    ]
    dist.parse_command_line()
    dist.run_commands()


def main() -> int:
    if sys.argv[1:] == ["--build"]:  # the child below: mypyc and the compiler
        build()
        return 0
    need = missing()
    if need is not None:
        print(f"note: not compiling the compose path (needs {need}); running as plain Python")
        return 1 if os.environ.get("CI") else 0
    TEMP.mkdir(parents=True, exist_ok=True)
    with (TEMP / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build waits, then finds this one current
        return compile_locked()


def compile_locked() -> int:
    listing, digest, wanted = speedups.listing(), speedups.source_digest(), inputs()
    if speedups.built() and speedups.stamp()[:2] == [digest, wanted]:
        # Sources touched, not changed (compared by content: a build that the sizes and times
        # alone pass is rebuilt here if its content differs). Their new times spare later
        # processes the hashing, and the newer stamp tells make it is up to date.
        speedups.write_stamp(digest=digest, inputs=wanted, listing=listing)
        return 0
    clean()
    done = subprocess.run(
        [sys.executable, __file__, "--build"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        clean()
        print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
        print("error: compiling the compose path with mypyc failed (above)", file=sys.stderr)
        return 1
    if speedups.source_digest() != digest or not speedups.built():
        clean()
        print("error: the sources changed while they were compiled; run it again", file=sys.stderr)
        return 1
    speedups.write_stamp(digest=digest, inputs=wanted, listing=listing)
    print(f"compiled the compose path with mypyc ({len(speedups.MODULES)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
