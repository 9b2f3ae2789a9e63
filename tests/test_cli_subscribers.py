"""`newsletter subscribers` and `newsletter match` through the real CLI and a real SQLite file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import main
from newsletter.model import Filters
from newsletter.store import Store

from .conftest import FIXTURES

EXAMPLE = Path(__file__).parent.parent / "subscribers.example.csv"
HEADER = "email,name,keywords,min_votes,exclude,max_papers\n"


@pytest.fixture
def cli(runner: CliRunner, cli_env: dict[str, str]) -> Any:
    def run(*args: str) -> Result:
        return runner.invoke(main, list(args), env=cli_env)

    return run


def listed(cli: Any) -> list[dict[str, Any]]:
    result = cli("subscribers", "list", "--json")
    assert result.exit_code == 0, result.output
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def test_import_example_then_again_is_unchanged(cli: Any) -> None:
    first = cli("subscribers", "import", str(EXAMPLE))
    assert first.exit_code == 0, first.output
    assert first.stdout.endswith(": 12 added, 0 updated, 0 unchanged, 0 rejected\n")
    again = cli("subscribers", "import", str(EXAMPLE))
    assert again.exit_code == 0
    assert "0 added, 0 updated, 12 unchanged, 0 rejected" in again.stdout
    people = listed(cli)
    assert len(people) == 12 and {p["status"] for p in people} == {"active"}


def test_import_with_bad_rows_names_each_stores_the_rest_and_fails(
    cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        HEADER
        + "ana@example.com,Ana,RAG,0,,\n"
        + "bad-address,Bad,RAG,0,,\n"
        + "bo@example.com,Bo,RAG,lots,,\n"
        + "cy@example.com,Cy,멀티모달,2,,\n",
        encoding="utf-8",
    )
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}: row 3: not an e-mail address: 'bad-address'",
        f"{path}: row 4: min_votes must be a non-negative whole number up to 1000000, not 'lots'",
    ]
    assert "2 added, 0 updated, 0 unchanged, 2 rejected" in result.stdout
    assert [p["email"] for p in listed(cli)] == ["ana@example.com", "cy@example.com"]


def test_import_unknown_column_is_one_line_and_nothing_stored(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("email,name,keywords,min_votes,topics\nana@example.com,A,RAG,0,x\n")
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {path}: row 1: unknown column 'topics'; valid columns: "
        "email, name, keywords, min_votes, exclude, max_papers, cadence, status\n"
    )
    assert listed(cli) == []


def test_import_dry_run_and_sync(cli: Any, tmp_path: Path) -> None:
    dry = cli("subscribers", "import", str(EXAMPLE), "--dry-run")
    assert dry.exit_code == 0 and "dry run, nothing written" in dry.stdout
    assert not (tmp_path / "cli.db").exists()  # nothing written, not even a database
    cli("subscribers", "import", str(EXAMPLE))
    one = tmp_path / "one.csv"
    one.write_text(HEADER + "minji.kim@example.com,김민지,RAG;retrieval;검색 증강,0,,\n")
    synced = cli("subscribers", "import", str(one), "--sync")
    assert synced.exit_code == 0, synced.output
    assert "11 unsubscribed" in synced.stdout
    statuses = {p["email"]: p["status"] for p in listed(cli)}
    assert len(statuses) == 12
    assert [e for e, s in statuses.items() if s == "active"] == ["minji.kim@example.com"]


def test_sync_unsubscribes_nobody_when_a_row_is_rejected(cli: Any, tmp_path: Path) -> None:
    cli("subscribers", "import", str(EXAMPLE))
    rows = EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    # A stray quote in row 3: the rest of the file reads as one rejected field.
    name = rows[2].split(",")[1]
    broken = tmp_path / "broken.csv"
    broken.write_text("".join([*rows[:2], rows[2].replace(name, '"' + name, 1), *rows[3:]]))
    synced = cli("subscribers", "import", str(broken), "--sync")
    assert synced.exit_code == 1
    assert "--sync not applied" in synced.stderr and "unsubscribed" not in synced.stdout
    assert {p["status"] for p in listed(cli)} == {"active"}  # nobody lost
    typo = tmp_path / "typo.csv"
    typo.write_text("".join([rows[0], rows[1].rsplit(",", 3)[0] + ",ten,,\n", *rows[2:]]))
    retyped = cli("subscribers", "import", str(typo), "--sync")
    assert retyped.exit_code == 1 and "--sync not applied" in retyped.stderr
    assert {p["status"] for p in listed(cli)} == {"active"}


def test_add_list_remove(cli: Any) -> None:
    added = cli(
        "subscribers",
        "add",
        " Ana@Example.COM ",
        "--name",
        "Ana",
        "--keywords",
        "RAG;강화학습",
        "--min-votes",
        "5",
    )
    assert added.exit_code == 0, added.output
    assert added.stdout == "added Ana@example.com\n"
    assert listed(cli) == [
        {
            "email": "Ana@example.com",
            "name": "Ana",
            "status": "active",
            "keywords": ["RAG", "강화학습"],
            "exclude": [],
            "min_votes": 5,
            "max_papers": None,
            "cadence": "daily",
        }
    ]
    twice = cli("subscribers", "add", "Ana@example.com")
    assert twice.exit_code == 1 and "already a subscriber" in twice.stderr
    bad = cli("subscribers", "add", "bo@example.com", "--keywords", "x")
    assert bad.exit_code == 1 and "shorter than 2 characters" in bad.stderr
    removed = cli("subscribers", "remove", "Ana@example.com")
    assert removed.stdout == "unsubscribed Ana@example.com\n"
    again = cli("subscribers", "remove", "Ana@example.com")
    assert again.exit_code == 0 and "already unsubscribed" in again.stdout
    assert [p["status"] for p in listed(cli)] == ["unsubscribed"]  # kept, not deleted
    missing = cli("subscribers", "remove", "nobody@example.com")
    assert missing.exit_code == 1 and missing.stderr == "error: no subscriber nobody@example.com\n"


def test_list_text_and_status_filter(cli: Any) -> None:
    cli("subscribers", "add", "first@example.org")
    cli("subscribers", "remove", "first@example.org")
    assert cli("subscribers", "list", "--status", "active").stdout == "no active subscribers\n"
    assert cli("subscribers", "list", "--status", "bounced").stdout == "no bounced subscribers\n"
    cli("subscribers", "import", str(EXAMPLE))
    cli("subscribers", "remove", "alex.chen@example.org")
    text = cli("subscribers", "list").stdout
    assert "alex.chen@example.org" in text and "13 subscribers" in text
    only = cli("subscribers", "list", "--status", "unsubscribed", "--json")
    assert [p["email"] for p in json.loads(only.stdout)] == [
        "first@example.org",
        "alex.chen@example.org",
    ]


RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_control_characters_are_refused_and_stored_ones_listed_escaped(
    cli: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    refused = cli("subscribers", "add", "ana@example.com", "--name", "\x1b[2J\x1b[31mAna")
    assert refused.exit_code == 1
    assert refused.stderr == "error: name holds control character U+001B\n"
    path = tmp_path / "controls.csv"
    path.write_text(HEADER + "bo@example.com,Bo,RAG;ab\x00cd,0,,\n", encoding="utf-8")
    imported = cli("subscribers", "import", str(path))
    assert imported.exit_code == 1
    assert imported.stderr == f"{path}: row 2: keywords holds control character U+0000\n"
    # Rows written before this check (or by other tools) are printed escaped, never raw.
    with Store(Path(cli_env["NEWSLETTER_DB"])) as store:
        store.add_subscriber(
            "cy@example.com",
            name="\x1b]0;owned\x07Cy",
            filters=Filters(keywords=("\x1b[31mred", "c1\x9bx", "line\u2028sep", "bidi\u202egnp")),
        )
    text = cli("subscribers", "list").stdout
    assert not RAW_CONTROLS.search(text)
    assert "\\x1b[31mred; c1\\x9bx; line\\u2028sep; bidi\\u202egnp" in text
    data = cli("subscribers", "list", "--json").stdout
    assert not RAW_CONTROLS.search(data)
    assert json.loads(data)[0]["name"] == "\x1b]0;owned\x07Cy"  # JSON escapes, data intact
    assert json.loads(data)[0]["keywords"][1] == "c1\x9bx"


# --- match -------------------------------------------------------------------------------------


@pytest.fixture
def loaded(cli: Any) -> Any:
    assert cli("ingest", str(FIXTURES)).exit_code == 0
    assert cli("subscribers", "import", str(EXAMPLE)).exit_code == 0
    return cli


def test_match_subscriber_json(loaded: Any) -> None:
    result = loaded("match", "--date", "2024-12-13", "--email", "alex.chen@example.org", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["arxiv_id"] for d in data] == ["2412.09596", "2412.08737", "2412.09618", "2412.09605"]
    assert [d["votes"] for d in data] == [59, 28, 17, 15]
    assert data[1] == {
        "arxiv_id": "2412.08737",
        "title": "Euclid: Supercharging Multimodal LLMs with Synthetic High-Fidelity Visual Descriptions",
        "votes": 28,
        "matched": [{"keyword": "LLM", "field": "title"}],
    }
    assert data[0]["matched"] == [
        {"keyword": "reasoning", "field": "What's New"},
        {"keyword": "추론", "field": "What's New"},
    ]


def test_match_adhoc_profile_text(loaded: Any) -> None:
    result = loaded(
        "match", "--date", "2024-06-28", "--keywords", "RAG;diffusion", "--exclude", "survey"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("2024-06-28: 1 of 9 papers for this profile")
    assert "2406.19215" in lines[1] and "SeaKR" in lines[1]
    assert lines[2].strip() == "matched: RAG in Performance Highlights"


def test_match_min_votes_on_top_and_vote_dash(loaded: Any) -> None:
    every = json.loads(loaded("match", "--date", "2024-06-28", "--json").stdout)
    assert len(every) == 9 and every[-1]["votes"] is None
    assert all(d["matched"] == [] for d in every)
    voted = json.loads(loaded("match", "--date", "2024-06-28", "--min-votes", "1", "--json").stdout)
    assert len(voted) == 8
    top = json.loads(
        loaded(
            "match", "--date", "2024-12-13", "--keywords", "LLM", "--min-votes", "20", "--json"
        ).stdout
    )
    assert [d["votes"] for d in top] == [28]


def test_match_defaults_to_newest_digest(loaded: Any) -> None:
    result = loaded("match", "--keywords", "diffusion", "--max-papers", "2")
    assert result.stdout.startswith("2024-12-13: 2 of 27 papers")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "nobody@example.com"], "error: no subscriber nobody@example.com"),
        (["--email", "alex.chen@example.org", "--keywords", "RAG"], "leave out the ad-hoc"),
        (
            ["--date", "2020-01-01"],
            "error: no digest stored for 2020-01-01 (newest: 2024-12-13; see: newsletter digests)",
        ),
        (["--keywords", "RAG;x"], "shorter than 2 characters"),
        (["--min-votes", "-2"], "min_votes must be a non-negative whole number"),
    ],
)
def test_match_errors_are_one_line(loaded: Any, args: list[str], message: str) -> None:
    result = loaded("match", *args)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.splitlines()) == 1


def test_match_notes_an_unsubscribed_subscriber(loaded: Any) -> None:
    loaded("subscribers", "remove", "alex.chen@example.org")
    result = loaded("match", "--email", "alex.chen@example.org")
    assert result.exit_code == 0
    assert "unsubscribed and gets no email" in result.stderr


def test_import_missing_or_binary_file_is_one_line(cli: Any, tmp_path: Path) -> None:
    missing = cli("subscribers", "import", str(tmp_path / "missing.csv"))
    assert missing.exit_code == 1
    assert missing.stderr == (
        f"error: {tmp_path / 'missing.csv'}: cannot read: No such file or directory\n"
    )
    binary = tmp_path / "subs.xlsx"
    binary.write_bytes(b"PK\x03\x04\xff\xfe" + bytes(range(256)))
    result = cli("subscribers", "import", str(binary))
    assert result.exit_code == 1
    assert result.stderr == f"error: {binary}: row 1: not UTF-8 text\n"


def test_oversized_field_rejects_its_row_and_keeps_the_rest(cli: Any, tmp_path: Path) -> None:
    big = "x" * 140_000
    path = tmp_path / "big.csv"
    path.write_text(
        HEADER
        + "ana@example.com,Ana,RAG,0,,\n"
        + f"bo@example.com,{big},RAG,0,,\n"
        + f'cy@example.com,"Cy {big}\nstill Cy",RAG,0,,\n'
        + "di@example.com,Di,RAG,0,,\n",
        encoding="utf-8",
    )
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}: row 3: a field is over 128 KB",
        f"{path}: row 4: a field is over 128 KB",
    ]
    assert result.stdout == f"{path}: 2 added, 0 updated, 0 unchanged, 2 rejected\n"
    assert [p["email"] for p in listed(cli)] == ["ana@example.com", "di@example.com"]


def test_oversized_header_names_the_file_once(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "big-header.csv"
    path.write_text("email," + "x" * 140_000 + "\nana@example.com,Ana\n", encoding="utf-8")
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}: row 1: a field is over 128 KB\n"
    assert listed(cli) == []


def test_list_csv_is_a_backup_that_import_restores(
    cli: Any, runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert cli("subscribers", "import", str(EXAMPLE)).exit_code == 0
    odd = 'Kim, "Minji" 김민지'  # a comma, quotes and Hangul in one name
    added = cli(
        "subscribers", "add", "odd@example.com", "--name", odd, "--keywords", "RAG; 에이전트",
        "--exclude", "survey", "--min-votes", "7", "--max-papers", "3", "--cadence", "weekly",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    # Whoever left must stay gone after a restore.
    assert cli("subscribers", "remove", "alex.chen@example.org").exit_code == 0
    with Store(Path(cli_env["NEWSLETTER_DB"])) as store:
        gone = store.subscriber_by_email("minji.kim@example.com")
        assert gone is not None and store.set_status(gone.id, "bounced")
    exported = cli("subscribers", "list", "--csv")
    assert exported.exit_code == 0
    assert exported.output.splitlines()[0] == (
        "email,name,keywords,min_votes,exclude,max_papers,cadence,status"
    )
    backup = tmp_path / "backup.csv"
    backup.write_text(exported.output, encoding="utf-8")
    before = listed(cli)
    restored_env = {**cli_env, "NEWSLETTER_DB": str(tmp_path / "restored.db")}
    restored = runner.invoke(main, ["subscribers", "import", str(backup)], env=restored_env)
    assert restored.exit_code == 0, restored.output
    after = runner.invoke(main, ["subscribers", "list", "--json"], env=restored_env)
    assert json.loads(after.output) == before
    statuses = {d["email"]: d["status"] for d in before}
    assert (statuses["alex.chen@example.org"], statuses["minji.kim@example.com"]) == (
        "unsubscribed",
        "bounced",
    )
    assert {"email": "odd@example.com", "name": odd, "status": "active",
            "keywords": ["RAG", "에이전트"], "exclude": ["survey"], "min_votes": 7,
            "max_papers": 3, "cadence": "weekly"} in before  # fmt: skip


def test_list_takes_json_or_csv_not_both(cli: Any) -> None:
    both = cli("subscribers", "list", "--json", "--csv")
    assert (both.exit_code, both.stderr) == (1, "error: give --json or --csv, not both\n")


def test_a_csv_status_suppresses_and_never_reactivates(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,keywords,min_votes,status\n"
        "new.gone@example.com,,,0,unsubscribed\n"
        "kept@example.com,,,0,\n"
        "later@example.com,,,0,active\n",
        encoding="utf-8",
    )
    assert cli("subscribers", "import", str(path)).exit_code == 0
    assert cli("subscribers", "remove", "later@example.com").exit_code == 0
    path.write_text(
        "email,name,keywords,min_votes,status\n"
        "new.gone@example.com,,,0,active\n"  # a CSV never brings anyone back
        "kept@example.com,,,0,bounced\n"  # but applies a suppression
        "later@example.com,,,0,active\n"
        "odd@example.com,,,0,pending\n",
        encoding="utf-8",
    )
    again = cli("subscribers", "import", str(path))
    assert again.exit_code == 1
    assert f"{path}: row 5: status must be active, unsubscribed or bounced, not 'pending'" in (
        again.stderr
    )
    assert {d["email"]: d["status"] for d in listed(cli)} == {
        "new.gone@example.com": "unsubscribed",
        "kept@example.com": "bounced",
        "later@example.com": "unsubscribed",
    }
