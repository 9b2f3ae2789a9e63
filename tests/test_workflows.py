"""Every workflow and the action validate against GitHub's schemas (check-jsonschema, offline)."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
CHECK = Path(sys.executable).parent / "check-jsonschema"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def check(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    # The vendored schemas ship inside check-jsonschema: nothing is fetched.
    return subprocess.run(
        [str(CHECK), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def workflow(name: str) -> Any:
    """A workflow file as data (YAML 1.2, as GitHub reads it: `on` is a key, not true)."""
    return YAML(typ="safe").load((ROOT / ".github" / "workflows" / name).read_text("utf-8"))


@pytest.mark.slow
def test_every_workflow_and_the_action_are_valid() -> None:
    assert {p.name for p in WORKFLOWS} >= {"feeds.yml", "send.yml", "tests.yml"}
    workflows = check("vendor.github-workflows", *WORKFLOWS)
    assert workflows.returncode == 0, workflows.stdout + workflows.stderr
    action = check("vendor.github-actions", ROOT / "action.yml")
    assert action.returncode == 0, action.stdout + action.stderr


@pytest.mark.slow
def test_the_check_catches_a_broken_action(tmp_path: Path) -> None:
    broken = tmp_path / "action.yml"
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    broken.write_text(text.replace("using: composite", "using: compose"), encoding="utf-8")
    result = check("vendor.github-actions", broken)
    assert result.returncode == 1 and "validation errors" in result.stdout + result.stderr


def test_the_feeds_workflow_publishes_with_this_action_and_send_keeps_one_run_at_a_time() -> None:
    feeds = (ROOT / ".github" / "workflows" / "feeds.yml").read_text(encoding="utf-8")
    assert "uses: ./\n" in feeds
    send = (ROOT / ".github" / "workflows" / "send.yml").read_text(encoding="utf-8")
    assert "group: newsletter-send" in send and "cancel-in-progress: false" in send
    assert "STATE_BRANCH: newsletter-state" in send


def test_send_refuses_a_public_repository_and_runs_on_no_schedule() -> None:
    send = workflow("send.yml")
    triggers = send["on"]
    assert set(triggers) == {"workflow_dispatch"}
    first = send["jobs"]["send"]["steps"][0]
    assert "--jq .private" in first["run"] and "exit 1" in first["run"]


def test_the_ledger_commit_keeps_what_a_killed_send_left_in_the_wal(tmp_path: Path) -> None:
    send = workflow("send.yml")
    (commit,) = [s for s in send["jobs"]["send"]["steps"] if s.get("name", "").startswith("Commit")]
    fold = next(line.strip() for line in commit["run"].splitlines() if "wal_checkpoint" in line)
    # A send killed with rows still in newsletter.db-wal (the process never closed the file).
    writer = (
        "import os, sqlite3\n"
        "c = sqlite3.connect('newsletter.db')\n"
        "c.execute('PRAGMA journal_mode=wal'); c.execute('PRAGMA wal_autocheckpoint=0')\n"
        "c.execute('CREATE TABLE deliveries (id INTEGER)')\n"
        "c.executemany('INSERT INTO deliveries VALUES (?)', [(i,) for i in range(29)])\n"
        "c.commit(); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", writer], cwd=tmp_path, check=True)
    assert (tmp_path / "newsletter.db-wal").stat().st_size > 0

    def committed_rows() -> int:
        copy = tmp_path / "copy"
        copy.mkdir(exist_ok=True)
        (copy / "newsletter.db").write_bytes((tmp_path / "newsletter.db").read_bytes())
        with contextlib.closing(sqlite3.connect(copy / "newsletter.db")) as conn:
            try:
                return int(conn.execute("SELECT count(*) FROM deliveries").fetchone()[0])
            except sqlite3.OperationalError:  # the table itself is still in the WAL
                return 0

    assert committed_rows() == 0  # what `git add newsletter.db` alone would commit
    subprocess.run(
        ["bash", "-c", fold.replace("python ", f"{sys.executable} ", 1)], cwd=tmp_path, check=True
    )
    assert committed_rows() == 29


def action_step(step_id: str) -> dict[str, Any]:
    action = YAML(typ="safe").load((ROOT / "action.yml").read_text("utf-8"))
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == step_id]
    return dict(step)


@pytest.mark.slow
@pytest.mark.parametrize("hub", ["https://hub.example.com/", ""])
def test_the_action_names_the_hub_in_its_feeds_and_lists_them_for_a_ping_after_deploy(
    tmp_path: Path, hub: str
) -> None:
    # The action's build step as a runner runs it: bash, its env, an output file.
    step = action_step("build")
    outputs = tmp_path / "outputs"
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DIGESTS": str(ROOT / "tests" / "fixtures"),
        "OUT": str(tmp_path / "site"),
        "CONFIG": "",
        "BASE_URL": "https://owner.github.io/papers",
        "HUB": hub,
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(outputs),
    }
    done = subprocess.run(
        ["bash", "-c", step["run"]], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    feeds = [p for p in (tmp_path / "site").rglob("*") if p.suffix in (".xml", ".atom")]
    assert len(feeds) > 4
    named = sorted(
        p.relative_to(tmp_path / "site").as_posix()
        for p in feeds
        if f'rel="hub" href="{hub}"' in p.read_text("utf-8")
    )
    if not hub:  # no feed names any hub, and none is listed
        assert values["hub-feeds"] == ""
        assert not any('rel="hub"' in p.read_text("utf-8") for p in feeds)
        return
    assert {"rss.xml", "atom.xml", "digests.xml", "digests.atom"} <= set(named)
    assert values["hub-feeds"].split(" ") == [f"https://owner.github.io/papers/{n}" for n in named]
    # Nothing in the action tells the hub: it would fetch the feeds before they are deployed.
    assert "hub.mode" not in (ROOT / "action.yml").read_text("utf-8")
