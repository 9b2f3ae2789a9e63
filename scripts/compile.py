"""Compile the compose path with mypyc (`newsletter.speedups.MODULES`), in place.

    python scripts/compile.py           # `make compile`; `make test` and `make bench` run it

The extensions land beside their sources and the stamp is written last, so an interrupted
or failed build is never used (`newsletter.speedups`). Without a C compiler or the Python
headers the package runs as plain Python, about 1.7x slower to compose: this says so in one
line and exits 0, unless CI is set (there the tests need the compiled build).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import speedups  # noqa: E402

BUILD = ROOT / "build" / "mypyc"


def missing() -> str | None:
    """What the build needs and this machine lacks, as an install hint; None if nothing."""
    compiler = sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        return f"a C compiler ({compiler.split()[0]}; apt-get install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "the Python headers (apt-get install python3-dev)"
    return None


def clean() -> None:
    """Remove the stamp, then every extension of the group (before a build, or after a failed one)."""
    speedups.STAMP.unlink(missing_ok=True)
    for module in (*speedups.MODULES, speedups.GROUP + "__mypyc"):
        path = speedups.source_path(module)
        for built in path.parent.glob(path.stem + ".*"):
            if built.suffix != ".py":
                built.unlink()


def build() -> None:
    # Imported here: mypyc and setuptools are build tools (the test extra), not dependencies.
    from mypyc.build import mypycify
    from setuptools import Distribution

    paths = [str(speedups.source_path(m).relative_to(ROOT)) for m in speedups.MODULES]
    os.chdir(ROOT)
    extensions = mypycify(paths, opt_level="3", group_name=speedups.GROUP, target_dir=str(BUILD))
    # A Distribution of our own: setup() would read pyproject.toml, which is hatchling's.
    dist = Distribution({"name": "newsletter-speedups", "ext_modules": extensions})
    dist.script_args = [
        "build_ext",
        "--inplace",
        "--parallel",
        str(os.cpu_count() or 1),
        "--build-temp",
        str(BUILD / "temp"),
    ]
    dist.parse_command_line()
    dist.run_commands()


def main() -> int:
    if sys.argv[1:] == ["--build"]:  # the child below: mypyc and the compiler, their output kept
        build()
        return 0
    need = missing()
    if need is not None:
        print(f"note: not compiling the compose path (needs {need}); running as plain Python")
        return 1 if os.environ.get("CI") else 0
    if speedups.current():
        speedups.STAMP.touch()  # sources touched, not changed: tell make it is up to date
        return 0
    digest = speedups.source_digest()
    clean()
    done = subprocess.run(
        [sys.executable, __file__, "--build"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        clean()
        print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
        print("error: compiling the compose path with mypyc failed (above)", file=sys.stderr)
        return 1
    speedups.STAMP.write_text(digest + "\n", encoding="ascii")
    print(f"compiled the compose path with mypyc ({len(speedups.MODULES)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
