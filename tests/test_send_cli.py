"""`newsletter send`, `deliveries` and `run` through the real CLI, real SMTP servers and processes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import main
from newsletter.digest.ingest import ingest_paths
from newsletter.model import Filters
from newsletter.store import Store
from tests.conftest import DIGESTS, FIXTURES
from tests.smtp_servers import RecordingHandler, free_port, smtp_server

NEWEST = "2024-12-13"
NEWSLETTER = Path(sys.executable).parent / "newsletter"


@pytest.fixture
def db(cli_env: dict[str, str]) -> Path:
    """The CLI's database with the three fixture digests, 8 readers and one with nothing today."""
    path = Path(cli_env["NEWSLETTER_DB"])
    with Store(path) as store:
        assert not ingest_paths(store, DIGESTS).failed
        for i in range(8):
            store.add_subscriber(f"reader{i}@example.com", name=f"Reader {i}")
        store.add_subscriber(
            "niche@example.com", filters=Filters(keywords=("zzz-no-paper-has-this",))
        )
    return path


def readers(db: Path) -> set[str]:
    with Store(db) as store:
        return {s.email for s in store.subscribers(status="active")} - {"niche@example.com"}


def invoke(runner: CliRunner, env: dict[str, str], *args: str) -> Result:
    return runner.invoke(main, list(args), env=env, catch_exceptions=False)


def smtp_args(port: int) -> list[str]:
    return ["--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--smtp-tls", "none"]


def got(handler: RecordingHandler) -> Counter[str]:
    return Counter(r for received in handler.received for r in received.rcpt_tos)


def day_with_readers(db: Path, count: int, *, prefix: str) -> set[str]:
    """The fixture digests and `count` new readers in the store at `db`; their addresses."""
    with Store(db) as store:
        assert not ingest_paths(store, DIGESTS).failed
        return {store.add_subscriber(f"{prefix}{i:03d}@example.com").email for i in range(count)}


def start_send(cli_env: dict[str, str], cwd: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    """The real `newsletter send` in a process of its own (4 connections), output together."""
    return subprocess.Popen(
        [str(NEWSLETTER), "send", *smtp_args(port), "--concurrency", "4", *extra],
        env={**os.environ, **cli_env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def ledger(db: Path, status: str | None = None) -> list[Any]:
    with Store(db) as store:
        return list(store.deliveries(dt.date.fromisoformat(NEWEST), status=status))


def test_send_mails_every_reader_once_and_a_rerun_sends_nothing(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    with smtp_server(RecordingHandler()) as (server, handler):
        result = invoke(runner, cli_env, "send", *smtp_args(server.port))
        assert result.exit_code == 0, result.output
        assert result.output == (
            f"{NEWEST}: sent 8, skipped 1, deferred 0, failed 0, ambiguous 0\n"
        )
        assert got(handler) == {email: 1 for email in readers(db)}
        message = handler.received[0].message
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(
            r"bounces\+\d+-\d{8}-[0-9a-f]{20}@localhost", handler.received[0].mail_from
        )

        again = invoke(runner, cli_env, "send", *smtp_args(server.port))
        assert again.exit_code == 0
        assert "sent 0," in again.output and "earlier runs: 8 sent" in again.output
        assert len(handler.received) == 8


def test_the_server_comes_from_the_environment(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    with smtp_server(RecordingHandler()) as (server, handler):
        env = {
            **cli_env,
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(server.port),
            "NEWSLETTER_SMTP_TLS": "none",
        }
        result = invoke(runner, env, "send", "--date", NEWEST)
    assert result.exit_code == 0, result.output
    assert len(handler.received) == 8


def test_tls_required_against_a_server_without_starttls_fails_in_one_line(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    with smtp_server(RecordingHandler()) as (server, handler):
        result = runner.invoke(
            main, ["send", "--smtp-port", str(server.port), "--smtp-tls", "starttls"], env=cli_env
        )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: 127.0.0.1:")
    assert "does not offer STARTTLS" in result.output
    assert handler.received == []
    assert ledger(db) == []  # the run stopped before it claimed (or even skipped) anyone


def no_claims(runner: CliRunner, env: dict[str, str]) -> None:
    """`newsletter deliveries` shows the day with nothing claimed (or recorded at all)."""
    shown = invoke(runner, env, "deliveries", "--date", NEWEST, "--json")
    assert shown.exit_code == 0
    data = json.loads(shown.output)
    assert data["counts"]["claimed"] == 0 and data["deliveries"] == []


@pytest.mark.parametrize(
    ("args", "env", "toml", "start"),
    [
        (
            ["--smtp-port", "70000"],
            {},
            "",
            "setting smtp_port: bad value 70000 from option --smtp-port",
        ),
        (["--smtp-port", "-1"], {}, "", "setting smtp_port: bad value -1 from option --smtp-port"),
        ([], {}, "[smtp]\nport = 1e30\n", "setting smtp_port: bad value 1e+30 from "),
        ([], {}, "[smtp]\nport = inf\n", "setting smtp_port: bad value inf from "),
        (
            [],
            {"NEWSLETTER_SMTP_HOST": "relay\u2028example.com"},
            "",
            "setting smtp_host: bad value 'relay\\u2028example.com' from NEWSLETTER_SMTP_HOST",
        ),
    ],
)
def test_a_bad_smtp_port_or_host_is_one_line_and_claims_nothing(
    runner: CliRunner,
    cli_env: dict[str, str],
    db: Path,
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    toml: str,
    start: str,
) -> None:
    if toml:
        config = tmp_path / "smtp.toml"
        config.write_text(toml, encoding="utf-8")
        args = [*args, "--config", str(config)]
    result = runner.invoke(main, ["send", "--smtp-tls", "none", *args], env={**cli_env, **env})
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {start}"), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    no_claims(runner, cli_env)


def test_a_server_nobody_listens_on_is_one_line_and_claims_nothing(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    port = free_port()
    result = runner.invoke(main, ["send", *smtp_args(port)], env=cli_env)
    assert result.exit_code == 1
    assert result.output == (
        f"error: cannot connect to SMTP server 127.0.0.1:{port}: Connection refused\n"
    )
    no_claims(runner, cli_env)


def test_serve_refuses_a_port_out_of_range_in_one_line(
    runner: CliRunner, cli_env: dict[str, str]
) -> None:
    result = runner.invoke(main, ["serve", "--port", "70000"], env=cli_env)
    assert result.exit_code == 1
    assert result.output == (
        "error: setting serve_port: bad value 70000 from option --port: "
        "must be a port number from 1 to 65535\n"
    )


def test_the_password_is_never_a_command_line_option(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    result = runner.invoke(main, ["send", "--smtp-password", "hunter2"], env=cli_env)
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_deferred_messages_exit_non_zero_and_go_out_next_run(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    busy = RecordingHandler(reply=lambda env, n: "451 4.3.0 busy")
    with smtp_server(busy) as (server, _):
        result = invoke(
            runner, cli_env, "send", *smtp_args(server.port), "--retries", "2", "--backoff", "0"
        )
    assert result.exit_code == 1
    assert f"{NEWEST}: sent 0, skipped 1, deferred 8, failed 0, ambiguous 0" in result.output
    assert "newsletter deliveries --date 2024-12-13" in result.output
    shown = invoke(runner, cli_env, "deliveries", "--status", "deferred", "--json")
    data = json.loads(shown.output)
    assert data["counts"]["deferred"] == 8
    assert {d["last_error"] for d in data["deliveries"]} == {"DATA refused: 451 4.3.0 busy"}
    assert {d["attempts"] for d in data["deliveries"]} == {2}
    with smtp_server(RecordingHandler()) as (server, handler):
        result = invoke(runner, cli_env, "send", *smtp_args(server.port))
    assert result.exit_code == 0
    assert got(handler) == {email: 1 for email in readers(db)}


def test_dry_run_and_outbox_send_nothing_and_record_nothing(
    runner: CliRunner, cli_env: dict[str, str], db: Path, tmp_path: Path
) -> None:
    with smtp_server(RecordingHandler()) as (server, handler):
        dry = invoke(runner, cli_env, "send", "--dry-run", *smtp_args(server.port))
        assert dry.exit_code == 0
        assert (
            dry.output == f"{NEWEST}: would send 8, skipped 1, deferred 0, failed 0, ambiguous 0\n"
        )
        outbox = invoke(runner, cli_env, "send", "--outbox", str(tmp_path / "out"))
        assert outbox.exit_code == 0
        assert handler.received == []
    files = sorted((tmp_path / "out").glob("*.eml"))
    assert len(files) == 8
    assert b"List-Unsubscribe: <http" in files[0].read_bytes()
    assert ledger(db) == []


def test_a_test_copy_goes_to_one_address_without_touching_the_ledger(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    with smtp_server(RecordingHandler()) as (server, handler):
        result = invoke(runner, cli_env, "send", "--to", "Me@Example.org", *smtp_args(server.port))
        bad = runner.invoke(main, ["send", "--to", "not an address\r\nBcc: x@y"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"sent a test copy of {NEWEST} to Me@example.org")
    assert got(handler) == {"Me@example.org": 1}
    assert ledger(db) == []
    assert bad.exit_code == 1 and bad.output.startswith("error: not an e-mail address")


def test_deliveries_lists_the_ledger(runner: CliRunner, cli_env: dict[str, str], db: Path) -> None:
    with smtp_server(RecordingHandler()) as (server, _):
        invoke(runner, cli_env, "send", *smtp_args(server.port))
    result = invoke(runner, cli_env, "deliveries", "--date", NEWEST)
    lines = result.output.splitlines()
    assert lines[0] == f"{NEWEST}: 0 claimed, 8 sent, 0 deferred, 0 failed, 1 skipped"
    assert len(lines) == 10
    assert lines[1].startswith("sent") and lines[1].endswith("reader0@example.com")


def test_no_digest_is_one_line(runner: CliRunner, cli_env: dict[str, str]) -> None:
    Store(Path(cli_env["NEWSLETTER_DB"])).close()  # a database without digests
    result = runner.invoke(main, ["send", "--dry-run"], env=cli_env)
    assert (result.exit_code, result.output) == (
        1,
        "error: no digests stored yet (run: newsletter ingest PATH)\n",
    )
    missing = runner.invoke(main, ["deliveries", "--date", "2020-01-01"], env=cli_env)
    assert missing.output.startswith("2020-01-01: 0 claimed, 0 sent")


def test_run_ingests_builds_and_sends_the_newest_day(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    with Store(Path(cli_env["NEWSLETTER_DB"])) as store:
        store.add_subscriber("daily@example.com")
    with smtp_server(RecordingHandler()) as (server, handler):
        site = tmp_path / "public"
        result = invoke(
            runner, cli_env, "run", str(FIXTURES), "--out", str(site), *smtp_args(server.port)
        )
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == "ingested 3 files: 3 added, 0 updated, 0 unchanged, 0 failed"
        assert lines[1].startswith(f"built {site}:")
        assert lines[2] == f"{NEWEST}: sent 1, skipped 0, deferred 0, failed 0, ambiguous 0"
        assert (site / "index.html").is_file() and (site / f"{NEWEST}.html").is_file()
        again = invoke(
            runner, cli_env, "run", str(FIXTURES), "--out", str(site), *smtp_args(server.port)
        )
        assert again.exit_code == 0
        assert "3 unchanged" in again.output and "earlier runs: 1 sent" in again.output
    assert got(handler) == {"daily@example.com": 1}


def test_run_with_a_bad_file_sends_the_good_days_and_exits_non_zero(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "digests"
    folder.mkdir()
    (folder / f"{NEWEST}.md").write_bytes((FIXTURES / f"{NEWEST}.md").read_bytes())
    (folder / "broken.md").write_text("# not a digest\n", encoding="utf-8")
    with Store(Path(cli_env["NEWSLETTER_DB"])) as store:
        store.add_subscriber("daily@example.com")
    with smtp_server(RecordingHandler()) as (server, handler):
        result = invoke(
            runner,
            cli_env,
            "run",
            str(folder),
            "--out",
            str(tmp_path / "site"),
            *smtp_args(server.port),
        )
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"error: {folder / 'broken.md'}")
    assert lines[1] == "ingested 2 files: 1 added, 0 updated, 0 unchanged, 1 failed"
    assert lines[3] == f"{NEWEST}: sent 1, skipped 0, deferred 0, failed 0, ambiguous 0"
    assert got(handler) == {"daily@example.com": 1}


def test_run_to_an_address_builds_and_sends_one_test_copy(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    with Store(Path(cli_env["NEWSLETTER_DB"])) as store:
        store.add_subscriber("daily@example.com")
    with smtp_server(RecordingHandler()) as (server, handler):
        result = invoke(
            runner,
            cli_env,
            "run",
            str(FIXTURES),
            "--out",
            str(tmp_path / "site"),
            "--to",
            "me@example.org",
            *smtp_args(server.port),
        )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].startswith(f"built {tmp_path / 'site'}:")
    assert lines[2].startswith(f"sent a test copy of {NEWEST} to me@example.org (")
    assert got(handler) == {"me@example.org": 1}
    with Store(Path(cli_env["NEWSLETTER_DB"])) as store:
        assert store.delivery_counts(dt.date.fromisoformat(NEWEST))["sent"] == 0


def test_run_on_an_empty_folder_is_one_line(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["run", str(empty), "--dry-run"], env=cli_env)
    assert (result.exit_code, result.output) == (
        1,
        f"ingested 0 files: 0 added, 0 updated, 0 unchanged, 0 failed\n"
        f"error: {empty}: no digest files found (expected .md files)\n",
    )


# --- a process killed mid-send ---------------------------------------------------------------


@dataclass
class SlowHandler(RecordingHandler):
    """Takes a while over each message, so a send is caught mid-way."""

    delay: float = 0.03

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def test_sigkill_mid_send_then_rerun_misses_nobody_and_doubles_only_ambiguous_claims(
    cli_env: dict[str, str], runner: CliRunner, tmp_path: Path
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    everyone = day_with_readers(db, 150, prefix="r")
    with smtp_server(SlowHandler()) as (server, handler):
        process = start_send(cli_env, tmp_path, server.port)
        deadline = time.monotonic() + 60
        while len(handler.received) < 40 and process.poll() is None:
            assert time.monotonic() < deadline, "the send never got going"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        time.sleep(0.2)  # messages the server was still taking finish arriving
        first = got(handler)
        assert 40 <= sum(first.values()) < 150

        rerun = invoke(runner, cli_env, "send", *smtp_args(server.port))
        ambiguous = {d.email for d in ledger(db, "claimed")}
        # `deliver`'s bound: the claimed group waiting for room in the queue, the queue and
        # the messages in flight (3 x concurrency 4), plus sent outcomes not yet committed
        # (2 x 4). Under load the queue fills, so the in-flight bound alone (12) does not hold.
        assert 1 <= len(ambiguous) <= 3 * 4 + 8
        assert rerun.exit_code == 1  # ambiguous claims are not "all sent"
        assert f"ambiguous {len(ambiguous)}" in rerun.output
        assert "--resend-ambiguous" in rerun.output
        second = got(handler)
        assert all(second[e] == 1 for e in everyone - ambiguous)  # nobody missing, nobody twice
        assert all(second[e] <= 1 for e in ambiguous)  # ambiguous: sent at most once so far

        resend = invoke(runner, cli_env, "send", *smtp_args(server.port), "--resend-ambiguous")
        assert resend.exit_code == 0, resend.output
        assert f"sent {len(ambiguous)}," in resend.output
        final = got(handler)
    assert set(final) == everyone
    assert {e for e, n in final.items() if n > 1} <= ambiguous
    assert ledger(db, "claimed") == []


def test_sigterm_lets_messages_in_flight_finish(cli_env: dict[str, str], tmp_path: Path) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 100, prefix="t")
    with smtp_server(SlowHandler()) as (server, handler):
        process = start_send(cli_env, tmp_path, server.port)
        while len(handler.received) < 20 and process.poll() is None:
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 143  # 128 + SIGTERM
    assert "error: interrupted" in output
    assert ledger(db, "claimed") == []
    sent = {d.email for d in ledger(db, "sent")}
    assert sent == set(got(handler))


def test_a_day_without_a_digest_is_one_line(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    result = runner.invoke(main, ["send", "--date", "2020-01-01", "--dry-run"], env=cli_env)
    assert (result.exit_code, result.output) == (
        1,
        "error: no digest stored for 2020-01-01 (newest: 2024-12-13; see: newsletter digests)\n",
    )


def test_a_send_split_across_processes_mails_everyone_exactly_once(
    cli_env: dict[str, str], db: Path
) -> None:
    # The real CLI as a subprocess: --processes starts workers (forked on Linux), each with
    # its share of readers.
    with Store(db) as store:
        for i in range(8, 40):
            store.add_subscriber(f"reader{i}@example.com")
    env = {**os.environ, **cli_env}
    command = [str(NEWSLETTER), "send", "--processes", "3", "--concurrency", "6"]
    with smtp_server(RecordingHandler()) as (server, handler):
        first = subprocess.run(
            [*command, *smtp_args(server.port)], env=env, capture_output=True, text=True
        )
        assert first.returncode == 0, first.stderr
        assert first.stdout == f"{NEWEST}: sent 40, skipped 1, deferred 0, failed 0, ambiguous 0\n"
        assert got(handler) == {email: 1 for email in readers(db)}
        again = subprocess.run(
            [*command, *smtp_args(server.port)], env=env, capture_output=True, text=True
        )
        assert again.returncode == 0, again.stderr
        assert "sent 0," in again.stdout and "earlier runs: 40 sent" in again.stdout
    assert len(handler.received) == 40
    assert {row.status for row in ledger(db)} == {"sent", "skipped"}


def test_processes_are_for_send_only(runner: CliRunner, cli_env: dict[str, str], db: Path) -> None:
    result = runner.invoke(main, ["run", str(FIXTURES), "--processes", "2"], env=cli_env)
    assert result.exit_code == 2
    assert "Error: No such option '--processes'." in result.output
    helped = runner.invoke(main, ["run", "--help"], env=cli_env)
    assert "--processes" not in helped.output
    assert "--processes" in runner.invoke(main, ["send", "--help"], env=cli_env).output


def test_retry_failed_sends_the_failed_again_once_the_cause_is_fixed(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    refused = {f"reader{i}@example.com" for i in range(4)}
    policy = RecordingHandler(
        reply=lambda env, n: "554 5.7.1 rejected by policy" if set(env.rcpt_tos) & refused else None
    )
    with smtp_server(policy) as (server, first):
        result = invoke(runner, cli_env, "send", *smtp_args(server.port))
        assert result.exit_code == 1
        assert f"{NEWEST}: sent 4, skipped 1, deferred 0, failed 4, ambiguous 0" in result.output
        rerun = invoke(runner, cli_env, "send", *smtp_args(server.port))
    assert rerun.exit_code == 0
    assert "earlier runs: 4 sent, 4 failed" in rerun.output
    assert "note: 4 messages failed in earlier runs" in rerun.output
    assert f"`newsletter send --date {NEWEST} --retry-failed` sends them" in rerun.output
    assert "deferred messages go out" not in result.output  # none was deferred
    with Store(db) as store:  # a failed reader who left since is not mailed again
        leaver = store.subscriber_by_email("reader3@example.com")
        assert leaver is not None and store.unsubscribe(leaver.id)
    with smtp_server(RecordingHandler()) as (server, fixed):
        retry = invoke(runner, cli_env, "send", "--retry-failed", *smtp_args(server.port))
        assert retry.exit_code == 0, retry.output
        assert retry.output.startswith(f"{NEWEST}: 3 failed messages put back to be sent again\n")
        assert f"{NEWEST}: sent 3," in retry.output
        again = invoke(runner, cli_env, "send", "--retry-failed", *smtp_args(server.port))
    assert again.output.startswith(f"{NEWEST}: 0 failed messages put back")
    assert got(fixed) == {f"reader{i}@example.com": 1 for i in range(3)}
    assert got(first) + got(fixed) == {email: 1 for email in readers(db)}
    assert [d.email for d in ledger(db, "failed")] == ["reader3@example.com"]


def test_retry_failed_with_a_week_and_processes_is_refused_before_anything_is_written(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    with Store(db) as store:
        store.claim_delivery(dt.date(2024, 12, 9), 1, message_id="m", kind="weekly")
        store.finish_delivery(
            dt.date(2024, 12, 9), 1, status="failed", attempts=1, error="x", kind="weekly"
        )
    result = runner.invoke(
        main, ["send", "--week", "2024-W50", "--retry-failed", "--processes", "2"], env=cli_env
    )
    assert result.exit_code == 1
    assert result.stderr == "error: --to and --processes apply to daily sends, not --week\n"
    with Store(db) as store:
        assert store.delivery_counts(dt.date(2024, 12, 9), kind="weekly")["failed"] == 1


@pytest.mark.parametrize("other", [["--dry-run"], ["--outbox", "out"], ["--to", "me@example.com"]])
def test_retry_failed_writes_the_ledger_so_not_with_a_dry_run(
    runner: CliRunner, cli_env: dict[str, str], db: Path, other: list[str]
) -> None:
    result = runner.invoke(main, ["send", "--retry-failed", *other], env=cli_env)
    assert result.exit_code == 2
    assert "--retry-failed records sends: not with --dry-run, --outbox or --to" in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["send", "--backoff", "nan"],
            "Invalid value for '--backoff': 'nan' is not a number of seconds",
        ),
        (
            ["send", "--backoff", "inf"],
            "Invalid value for '--backoff': inf is not in the range 0<=x<=3600.",
        ),
        (
            ["send", "--backoff", "0x10"],
            "Invalid value for '--backoff': '0x10' is not a valid number of seconds.",
        ),
        (
            ["doctor", "--timeout", "nan"],
            "Invalid value for '--timeout': 'nan' is not a number of seconds",
        ),
        (
            ["serve", "--interval", "NaN"],
            "Invalid value for '--interval': 'NaN' is not a number of seconds",
        ),
    ],
)
def test_a_wait_that_would_never_end_is_a_usage_error(
    runner: CliRunner, cli_env: dict[str, str], args: list[str], said: str
) -> None:
    result = runner.invoke(main, args, env=cli_env)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"Error: {said}"


def children(pid: int) -> list[int]:
    """The processes `pid` started, oldest first (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:  # the field after the state is the parent's pid
                found.append(int(stat.parent.name))
    return sorted(found)


def running(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie left for its new parent to reap does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def split_send_under_way(
    cli_env: dict[str, str], db: Path, *, readers: int
) -> Iterator[tuple[subprocess.Popen[str], list[int], SlowHandler]]:
    """A real `send --processes 2` (a connection each) to `readers` more readers, into a slow
    server, caught once 6 messages arrived: (the send, its two workers, the server's handler)."""
    with Store(db) as store:
        for i in range(8, 8 + readers):
            store.add_subscriber(f"reader{i}@example.com")
    handler = SlowHandler()
    handler.delay = 0.05
    with smtp_server(handler) as (server, _):
        command = ["send", "--processes", "2", "--concurrency", "2", *smtp_args(server.port)]
        process = subprocess.Popen(
            [str(NEWSLETTER), *command],
            env={**os.environ, **cli_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while len(handler.received) < 6 and time.monotonic() < deadline:
                time.sleep(0.01)
            workers = children(process.pid)
            assert len(workers) == 2
            yield process, workers, handler
        finally:
            process.kill()  # when a test failed: nothing left running
            process.wait()


def test_a_split_send_with_a_worker_killed_still_reports_what_the_other_sent(
    cli_env: dict[str, str], db: Path
) -> None:
    with split_send_under_way(cli_env, db, readers=52) as (process, workers, _):
        os.kill(workers[1], signal.SIGKILL)  # the second worker: share 1, the odd ids
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.splitlines()[-1] == (
        "error: send process send-1 was killed by SIGKILL; what it sent before is in the "
        "ledger, not in the counts above; run again to send the rest"
    )
    rows = ledger(db)
    survivor_sent = sum(1 for r in rows if r.status == "sent" and r.subscriber_id % 2 == 0)
    claimed = sum(1 for r in rows if r.status == "claimed")
    assert survivor_sent == 30  # share 0 finished: the even ids of 1..61 (the niche reader is 9)
    assert out == (
        f"{NEWEST}: sent {survivor_sent}, skipped 0, deferred 0, failed 0, ambiguous {claimed}\n"
    )


def test_workers_of_a_split_send_stop_when_their_parent_is_killed(
    cli_env: dict[str, str], db: Path
) -> None:
    with split_send_under_way(cli_env, db, readers=192) as (process, workers, handler):
        process.kill()  # no chance to tell its workers
        _, err = process.communicate(timeout=30)
        deadline = time.monotonic() + 15
        while any(running(pid) for pid in workers):
            assert time.monotonic() < deadline, "the workers went on sending without a parent"
            time.sleep(0.05)
        arrived = len(handler.received)
    assert arrived < 150  # they stopped, far from the end of the list
    assert "Traceback" not in err
    assert [r for r in ledger(db) if r.status == "claimed"] == []  # in-flight ones finished
    assert {r.email for r in ledger(db) if r.status == "sent"} == set(got(handler))


def test_a_change_of_preferences_during_a_send_is_honoured(
    runner: CliRunner, cli_env: dict[str, str], db: Path
) -> None:
    with Store(db) as store:
        by_email = {s.email: s for s in store.subscribers(status="active")}
    narrower, emptied, weekly = (by_email[f"reader{i}@example.com"] for i in (5, 6, 7))
    narrow = Filters(keywords=("diffusion",))

    def change_when_second_arrives(envelope: Any, attempt: int) -> str | None:
        if envelope.rcpt_tos == ["reader1@example.com"]:
            # The preferences page, from its own connection, after the send read everyone.
            with Store(db) as web:
                web.update_filters(narrower.id, filters=narrow)
                web.update_filters(emptied.id, filters=Filters(keywords=("zzz-none",)))
                web.update_filters(weekly.id, filters=weekly.filters, cadence="weekly")
        return None

    handler = RecordingHandler(reply=change_when_second_arrives)
    with smtp_server(handler) as (server, _):
        result = invoke(runner, cli_env, "send", *smtp_args(server.port), "--concurrency", "1")
    assert result.exit_code == 0, result.output
    assert result.output == f"{NEWEST}: sent 6, skipped 3, deferred 0, failed 0, ambiguous 0\n"
    assert set(got(handler)) == readers(db) - {emptied.email, weekly.email}
    (message,) = [r.message for r in handler.received if r.rcpt_tos == [narrower.email]]
    html = message.get_body(("html",))
    assert html is not None
    in_email = list(dict.fromkeys(re.findall(r"arxiv\.org/abs/([0-9.]+)", html.get_content())))
    chosen = invoke(runner, cli_env, "match", "--email", narrower.email, "--json")
    expected = [p["arxiv_id"] for p in json.loads(chosen.output)]
    assert 0 < len(expected) < 10  # narrower than everything
    assert in_email == expected
    # Nothing was recorded for the two who now get nothing: the next run decides afresh.
    with Store(db) as store:
        states = store.delivery_states(dt.date.fromisoformat(NEWEST), [emptied.id, weekly.id])
    assert states == {}
