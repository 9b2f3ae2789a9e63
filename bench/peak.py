"""Peak memory of a process, measured so that the parent's size never leaks into it.

On Linux a child's `ru_maxrss` (getrusage, wait4) starts from the RSS of the process it was
forked from, and keeps it across exec. A benchmark parent holding 100,000 subscribers made a
100 MB send look like 200 MB. So:
- `own_peak_mb()`: this process's high-water mark since its exec (VmHWM, reset by exec);
- `python bench/peak.py COMMAND...`: runs COMMAND as the child of this small process and
  prints, as its last line on stderr, `peak <MB> cpu <seconds>` of COMMAND and the processes
  it waited for (its workers).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

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


def parse(stderr: str) -> tuple[float, float]:
    """(peak MB, CPU seconds) from the stderr of a wrapped command."""
    line = next(x for x in reversed(stderr.splitlines()) if x.startswith(MARK))
    _, peak, _, cpu = line.split()
    return float(peak), float(cpu)


def main() -> int:
    process = subprocess.Popen(sys.argv[1:])
    _, status, usage = os.wait4(process.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"{MARK}{usage.ru_maxrss / 1024:.1f} cpu {cpu:.3f}", file=sys.stderr)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
