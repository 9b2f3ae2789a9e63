"""Peak memory of a process, measured so that the parent's size never leaks into it.

On Linux a child's `ru_maxrss` (getrusage, wait4) starts from the RSS of the process it was
forked from, and keeps it across exec. A benchmark parent holding 100,000 subscribers made a
100 MB send look like 200 MB. So:
- `own_peak_mb()`: this process's high-water mark since its exec (VmHWM, reset by exec);
- `python bench/peak.py COMMAND...`: runs COMMAND as the child of this small process and
  prints, as its last line on stderr, `peak <MB> cpu <seconds> wall <seconds>` of COMMAND and
  the processes it waited for (its workers); wall runs from just before COMMAND starts until
  it has exited, so this script's own start-up is not counted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

MARK = "peak "


def own_peak_mb() -> float:
    """This process's peak resident memory in MB since it started (exec)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def wrap(command: list[str]) -> list[str]:
    """`command` run through this script, for `parse` to read its peak and CPU."""
    return [sys.executable, str(Path(__file__).resolve()), *command]


class Usage(NamedTuple):
    """What a wrapped command used: peak MB, CPU seconds, wall-clock seconds."""

    peak_mb: float
    cpu: float
    wall: float


def parse(stderr: str) -> Usage:
    """The Usage printed on the stderr of a wrapped command."""
    line = next(x for x in reversed(stderr.splitlines()) if x.startswith(MARK))
    _, peak, _, cpu, _, wall = line.split()
    return Usage(float(peak), float(cpu), float(wall))


def main() -> int:
    start = time.perf_counter()
    process = subprocess.Popen(sys.argv[1:])
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    print(f"{MARK}{usage.ru_maxrss / 1024:.1f} cpu {cpu:.3f} wall {wall:.4f}", file=sys.stderr)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
