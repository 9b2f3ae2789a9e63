"""This tree against another commit, alternating in the same hour: compose alone and the real
`newsletter send`, realistic subscribers (bench/subscribers.py, no two profiles alike).

A noisy host moves every figure from one day to the next; a change is judged by running the
code before it and after it in turn, on the same data, in one run. The other commit is cloned
into a temporary folder and compiled there (`scripts/compile.py`); each pass is a fresh
process importing its own tree (PYTHONPATH), with the same Python and libraries.

- compose alone: `bench_scale.py --compose-pass` of each tree, messages/s per core, medians;
- send: `newsletter send` of each tree into one Postfix `smtp-sink`, each run paired with an
  `smtp-source -s 16 -d` run of the same count and size, median ratios.

    python bench/bench_ab.py --against 2af4cbc --size 20000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_scale import make_db, newsletter_send, sent_all, sink, smtp_source  # noqa: E402


def checkout(rev: str, into: Path) -> Path:
    """A compiled clone of this repository at `rev`."""
    tree = into / "tree"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(tree)], check=True)
    subprocess.run(["git", "-C", str(tree), "checkout", "-q", rev], check=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "scripts/compile.py"], cwd=tree, env=env, check=True, capture_output=True
    )
    return tree


def compose_pass(tree: Path, db: Path) -> tuple[float, int]:
    """Messages/s per core and average message size of one compose pass of `tree`'s code,
    in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [sys.executable, str(tree / "bench" / "bench_scale.py"), "--compose-pass", str(db)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    cpu, sent, size, _gc = json.loads(done.stdout.strip().splitlines()[-1])
    return sent / cpu, size // max(sent, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD~1", help="the commit to compare with")
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        trees = {args.against: checkout(args.against, tmp), "this tree": ROOT}
        base = tmp / "base.db"
        make_db(base, args.size)
        composed: dict[str, list[float]] = {label: [] for label in trees}
        ratios: dict[str, list[float]] = {label: [] for label in trees}
        with sink() as port:
            for run in range(args.runs):
                for label, tree in trees.items():
                    rate, size = compose_pass(tree, base)
                    composed[label].append(rate)
                    db = tmp / "run.db"
                    db.write_bytes(base.read_bytes())
                    wall, _cpu, _peak, summary = newsletter_send(
                        db, port, 1, {"PYTHONPATH": str(tree)}
                    )
                    sent = int(summary.split("sent ")[1].split(",")[0])
                    sent_all(summary, sent)
                    source = smtp_source(port, sent, size)
                    ratios[label].append(source / wall)
                    print(
                        f"  run {run + 1}, {label}: compose {composed[label][-1]:,.0f}/s per "
                        f"core; send {sent / wall:,.0f}/s vs smtp-source {sent / source:,.0f}/s "
                        f"({ratios[label][-1]:.2f}x)",
                        flush=True,
                    )
        for label in trees:
            print(
                f"{label}: compose median {statistics.median(composed[label]):,.0f}/s per core, "
                f"send median {statistics.median(ratios[label]):.2f}x smtp-source"
            )
        old, new = (statistics.median(composed[label]) for label in trees)
        print(f"compose, this tree / {args.against}: {new / old:.3f}x")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
