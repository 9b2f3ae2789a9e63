"""The demo's signing key: random per output folder, kept, never printed; a weak key of the user's refused."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import key_weakness

from .conftest import OLD_DEMO_KEY, OLD_DEMO_KEY_ERROR, TEST_KEY
from .web_server import first_health, free_port

ROOT = Path(__file__).resolve().parent.parent


def run_demo(runner: CliRunner, out: Path, env: dict[str, str]) -> str:
    args = ["demo", "--out", str(out), "--digests", str(ROOT / "examples" / "digests")]
    result = runner.invoke(
        main, [*args, "--subscribers", str(ROOT / "subscribers.example.csv")], env=env
    )
    assert result.exit_code == 0, result.output
    return result.output


def unsubscribe_path(mailbox: Path) -> tuple[str, str]:
    """The one-click unsubscribe path of a message the demo delivered, and its recipient."""
    first = sorted(mailbox.glob("*.eml"))[0]
    message = email.message_from_bytes(first.read_bytes(), policy=email.policy.default)
    found = re.search(r"<https?://[^/>]+(/u/[^>]+)>", str(message["List-Unsubscribe"]))
    assert found, message["List-Unsubscribe"]
    return found.group(1), str(message["To"].addresses[0].addr_spec)


def test_demo_makes_a_strong_key_per_folder_keeps_it_and_never_prints_it(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    no_key = {**cli_env, "NEWSLETTER_SECRET_KEY": ""}
    out = tmp_path / "demo"
    first = run_demo(runner, out, no_key)
    key_file = out / "secret-key"
    key = key_file.read_text(encoding="ascii").strip()
    assert len(key) == 43 and key_weakness(key) is None
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key not in first
    serve = (
        f"  NEWSLETTER_SECRET_KEY=$(cat {key_file}) newsletter serve --db {out / 'newsletter.db'} "
        f"--site {out / 'site'}   (then open http://127.0.0.1:8000/subscribe)"
    )
    assert first.splitlines()[-1] == serve

    again = run_demo(runner, out, no_key)
    assert key_file.read_text(encoding="ascii").strip() == key  # earlier emails stay valid
    assert again.splitlines()[-1] == serve

    other = tmp_path / "other"
    run_demo(runner, other, no_key)
    assert (other / "secret-key").read_text(encoding="ascii").strip() != key


def feed_path(mailbox: Path, recipient: str) -> str:
    """The path of the private-feed link in the demo email sent to `recipient`."""
    for path in sorted(mailbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if recipient in str(message["To"]):
            part = message.get_body(preferencelist=("plain",))
            assert part is not None
            found = re.search(r"https?://[^/\s]+(/feeds/[A-Za-z0-9_.-]+\.xml)", part.get_content())
            assert found is not None
            return found.group(1)
    raise AssertionError(f"no demo email to {recipient}")


def test_the_printed_serve_command_accepts_the_demo_emails_links(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    command = run_demo(runner, out, {**cli_env, "NEWSLETTER_SECRET_KEY": ""}).splitlines()[-1]
    command = command.split("   (then open")[0].strip()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Through a shell, as the user would paste it; its own session so SIGINT reaches serve.
    process = subprocess.Popen(
        ["bash", "-c", f"{command} --port {port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert first_health(process, port).json()["ok"] is True
        path, recipient = unsubscribe_path(out / "mailbox")
        page = httpx.get(f"http://127.0.0.1:{port}{path}")
        assert page.status_code == 200  # a link signed with another key is a 404
        assert recipient in page.text
        # The private feed each email links: served by `serve` from the store, never a file.
        feed = httpx.get(f"http://127.0.0.1:{port}{feed_path(out / 'mailbox', recipient)}")
        assert feed.status_code == 200, feed.text[:200]
        assert feed.headers["content-type"].startswith("application/rss+xml")
        assert "private" in feed.headers["cache-control"]
        assert feed.text.lstrip().startswith("<?xml") and "<item>" in feed.text
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=20)


def test_demo_uses_the_users_key_without_printing_it_or_writing_one(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    output = run_demo(runner, out, cli_env)
    assert TEST_KEY not in output
    assert not (out / "secret-key").exists()
    assert output.splitlines()[-1].startswith(f"  newsletter serve --db {out / 'newsletter.db'} ")


def test_demo_refuses_a_weak_key_the_user_set(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    weak = {**cli_env, "NEWSLETTER_SECRET_KEY": OLD_DEMO_KEY}
    result = runner.invoke(main, ["demo", "--out", str(tmp_path / "demo")], env=weak)
    assert result.exit_code == 1
    assert result.output.splitlines() == [OLD_DEMO_KEY_ERROR]
