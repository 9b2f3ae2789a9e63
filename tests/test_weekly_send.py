"""The weekly edition and subscriber cadence through the real CLI, SQLite and SMTP servers."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result

from newsletter.cli import main
from newsletter.model import Filters
from newsletter.store import Store
from tests.smtp_servers import RecordingHandler, smtp_server

from .sites import digest_text, save
from .test_migrations import old_database

WEEKLY, DAILY = "weekly@example.com", "daily@example.com"


def invoke(runner: CliRunner, env: dict[str, str], *args: str) -> Result:
    return runner.invoke(main, list(args), env=env, catch_exceptions=False)


def smtp_args(port: int) -> list[str]:
    return ["--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--smtp-tls", "none"]


def week_of_digests(db: Path, monday: dt.date) -> None:
    """Monday and Wednesday of a week; paper 2502.00001 is listed on both days."""
    wednesday = monday + dt.timedelta(days=2)
    with Store(db) as store:
        save(
            store,
            digest_text(
                monday.isoformat(),
                [
                    {"id": "2502.00001", "title": "Alpha Agents", "votes": 5},
                    {"id": "2502.00002", "title": "Beta Vision", "votes": 30},
                ],
            ),
            digest_text(
                wednesday.isoformat(),
                [
                    {"id": "2502.00001", "title": "Alpha Agents v2", "votes": 40},
                    {"id": "2502.00003", "title": "Gamma Agents", "votes": 2},
                ],
            ),
        )
        store.add_subscriber(WEEKLY, filters=Filters(keywords=("agents",)), cadence="weekly")
        store.add_subscriber(DAILY)


def test_send_week_mails_weekly_readers_once_with_the_weeks_papers(
    runner: CliRunner, cli_env: dict[str, str]
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    week_of_digests(db, dt.date(2025, 2, 24))
    with smtp_server(RecordingHandler()) as (server, handler):
        first = invoke(runner, cli_env, "send", "--week", "2025-W09", *smtp_args(server.port))
        assert first.exit_code == 0, first.output
        assert first.output == "2025-W09: sent 1, skipped 0, deferred 0, failed 0, ambiguous 0\n"
        assert [r.rcpt_tos for r in handler.received] == [[WEEKLY]]
        message = handler.received[0].message
        assert message["Subject"] == "Daily Papers 주간 2025-W09 · 논문 2편"
        assert message["Message-ID"].startswith("<weekly.2025-02-24.")
        # Complaint reports group by Feedback-ID: the weekly edition is labelled as such.
        assert message["Feedback-ID"].startswith("20250224:weekly:")
        # No mailto by default: one no code reads would unsubscribe nobody.
        assert str(message["List-Unsubscribe"]).count("<") == 1
        text = message.get_body(("plain",)).get_content()
        assert "주간 에디션 · 2025-W09 (2월 24일 ~ 3월 2일)" in text
        assert "이번 주 조건에 맞는 논문은 2편입니다." in text
        # Alpha once, with its Wednesday data (40 votes), before Gamma; Beta does not match.
        assert text.count("Alpha Agents") == 1 and "Alpha Agents v2" in text
        assert text.index("Alpha Agents v2") < text.index("Gamma Agents")
        assert "Beta Vision" not in text
        again = invoke(runner, cli_env, "send", "--week", "2025-W09", *smtp_args(server.port))
        assert again.output.startswith("2025-W09: sent 0,")
        assert "earlier runs: 1 sent" in again.output
        assert len(handler.received) == 1
        # That Monday's daily email is a different delivery, and goes to daily readers only.
        daily = invoke(runner, cli_env, "send", "--date", "2025-02-24", *smtp_args(server.port))
        assert daily.output.startswith("2025-02-24: sent 1,")
        assert [r.rcpt_tos for r in handler.received[1:]] == [[DAILY]]
        assert handler.received[1].message["Subject"] == "Daily Papers 2025-02-24 · 논문 2편"
        assert handler.received[1].message["Feedback-ID"].startswith("20250224:digest:")
    shown = json.loads(invoke(runner, cli_env, "deliveries", "--week", "2025-W09", "--json").output)
    assert (shown["kind"], shown["counts"]["sent"]) == ("weekly", 1)
    assert [d["email"] for d in shown["deliveries"]] == [WEEKLY]
    rows = sqlite3.connect(db).execute("SELECT kind, date FROM deliveries ORDER BY kind").fetchall()
    assert rows == [("daily", "2025-02-24"), ("weekly", "2025-02-24")]


def test_deliveries_of_a_day_and_a_week_at_once_is_refused(
    runner: CliRunner, cli_env: dict[str, str]
) -> None:
    week_of_digests(Path(cli_env["NEWSLETTER_DB"]), dt.date(2025, 2, 24))
    args = ["deliveries", "--week", "2025-W09", "--date", "2025-02-24"]
    result = runner.invoke(main, args, env=cli_env)
    assert result.exit_code == 2
    assert "give --date or --week, not both" in result.output
    assert "Traceback" not in result.output


def test_a_bad_week_is_one_line(runner: CliRunner, cli_env: dict[str, str]) -> None:
    week_of_digests(Path(cli_env["NEWSLETTER_DB"]), dt.date(2025, 2, 24))
    for week, said in (
        ("2025-09", "error: '2025-09' is not an ISO week such as 2025-W09\n"),
        ("2025-W10", "error: no digests stored for week 2025-W10 (2025-03-03 to 2025-03-09)\n"),
        ("9999-W52", "error: '9999-W52': the week ends after the year 9999\n"),  # was a traceback
    ):
        result = runner.invoke(main, ["send", "--week", week, "--dry-run"], env=cli_env)
        assert (result.exit_code, result.stderr) == (1, said)


def test_run_sends_last_weeks_edition_from_the_weekly_day_on_and_only_once(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    last_monday = today - dt.timedelta(days=today.weekday() + 7)
    db = Path(cli_env["NEWSLETTER_DB"])
    week_of_digests(db, last_monday)
    empty = tmp_path / "digests"
    empty.mkdir()
    names = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    year, week, _ = last_monday.isocalendar()
    with smtp_server(RecordingHandler()) as (server, handler):
        args = ["run", str(empty), "--out", str(tmp_path / "site"), *smtp_args(server.port)]
        # Due every day from Monday on: a Monday run that failed or never ran catches up.
        first = invoke(runner, {**cli_env, "NEWSLETTER_WEEKLY_DAY": "monday"}, *args)
        assert first.exit_code == 0, first.output
        assert f"{year}-W{week:02d}: sent 1," in first.output
        again = invoke(runner, {**cli_env, "NEWSLETTER_WEEKLY_DAY": names[today.weekday()]}, *args)
        assert again.exit_code == 0, again.output
        assert f"{year}-W{week:02d}: sent 0," in again.output  # the ledger: once a week
    assert sorted(r for m in handler.received for r in m.rcpt_tos) == [DAILY, WEEKLY]


def test_cadence_in_the_csv_and_on_the_command_line(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    csv = tmp_path / "subscribers.csv"
    csv.write_text(
        "email,name,keywords,min_votes,cadence\n"
        "a@example.com,A,,0,weekly\n"
        "b@example.com,B,,0,\n"
        "c@example.com,C,,0,monthly\n",
        encoding="utf-8",
    )
    imported = runner.invoke(main, ["subscribers", "import", str(csv)], env=cli_env)
    assert imported.exit_code == 1
    assert "row 4: cadence must be daily or weekly, not 'monthly'" in imported.stderr
    added = invoke(runner, cli_env, "subscribers", "add", "d@example.com", "--cadence", "weekly")
    assert added.output == "added d@example.com (weekly)\n"
    listed = json.loads(invoke(runner, cli_env, "subscribers", "list", "--json").output)
    assert {s["email"]: s["cadence"] for s in listed} == {
        "a@example.com": "weekly",
        "b@example.com": "daily",
        "d@example.com": "weekly",
    }
    bad = runner.invoke(
        main, ["subscribers", "add", "e@example.com", "--cadence", "x"], env=cli_env
    )
    assert bad.exit_code == 2


def test_migration_keeps_old_deliveries_as_daily_and_readers_daily(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(
        path,
        before="m007_cadence",
        statements=[
            """INSERT INTO subscribers (id, email, email_key, created_at, updated_at)
               VALUES (1, 'old@example.com', 'old@example.com', 'x', 'x')""",
            """INSERT INTO deliveries (date, subscriber_id, status, claimed_at, updated_at)
               VALUES ('2025-02-24', 1, 'sent', 'x', 'x')""",
        ],
    )
    with Store(path) as store:
        old = store.subscriber(1)
        assert old is not None and old.cadence == "daily"
        monday = dt.date(2025, 2, 24)
        assert store.delivery_states(monday, [1]) == {1: "sent"}
        assert store.delivery_states(monday, [1], kind="weekly") == {}
        # The weekly edition of the week starting that Monday is its own row.
        assert store.claim_delivery(monday, 1, message_id="w", kind="weekly") == "new"
        assert store.claim_delivery(monday, 1, message_id="d") is None


def test_a_week_that_has_not_ended_is_not_sent(runner: CliRunner, cli_env: dict[str, str]) -> None:
    # Its edition would miss the days to come, and the ledger would keep the whole one away.
    today = dt.datetime.now(dt.UTC).date()
    monday = today - dt.timedelta(days=today.weekday())
    week_of_digests(Path(cli_env["NEWSLETTER_DB"]), monday)
    year, week, _ = monday.isocalendar()
    name = f"{year}-W{week:02d}"
    result = runner.invoke(main, ["send", "--week", name, "--dry-run"], env=cli_env)
    sunday = monday + dt.timedelta(days=6)
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: week {name} has not ended (its Sunday is {sunday}); its edition can go out "
        "from the Monday after, when the daily job sends it on the weekly day\n",
    )
