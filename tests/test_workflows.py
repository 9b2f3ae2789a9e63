"""Every workflow and the action validate against GitHub's schemas (check-jsonschema, offline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
