"""`newsletter ingest` and `newsletter digests` through the real CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main

from .conftest import FIXTURES
from .test_store_faults import as_unprivileged


def test_ingest_then_digests_json(runner: CliRunner, cli_env: dict[str, str]) -> None:
    result = runner.invoke(main, ["ingest", str(FIXTURES)], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "ingested 3 files: 3 added, 0 updated, 0 unchanged, 0 failed" in result.output
    listed = runner.invoke(main, ["digests", "--json"], env=cli_env)
    assert listed.exit_code == 0
    assert json.loads(listed.output) == [
        {"date": "2024-12-13", "papers": 27, "top_votes": 59},
        {"date": "2024-10-16", "papers": 18, "top_votes": 19},
        {"date": "2024-06-28", "papers": 9, "top_votes": 14},
    ]
    again = runner.invoke(main, ["ingest", str(FIXTURES)], env=cli_env)
    assert "0 added, 0 updated, 3 unchanged" in again.output


def test_db_option_beats_environment(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    result = runner.invoke(
        main, ["ingest", "--db", str(other), str(FIXTURES / "2024-06-28.md")], env=cli_env
    )
    assert result.exit_code == 0 and other.exists()
    assert not Path(cli_env["NEWSLETTER_DB"]).exists()


def test_bad_files_one_line_each_nonzero_and_good_ones_stored(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "2024-01-03.md").write_text(
        "## Daily Papers (2024-01-03)\n### No link here\n", encoding="utf-8"
    )
    (bad / "2024-01-04.md").write_text(
        "## Daily Papers (2024-01-04)\n### [T](https://arxiv.org/abs/2401.1)\nVote: lots\n",
        encoding="utf-8",
    )
    result = runner.invoke(main, ["ingest", str(FIXTURES / "2024-06-28.md"), str(bad)], env=cli_env)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert errors[0].endswith(
        "2024-01-03.md:2: paper heading without a link (expected '### [Title](https://arxiv.org/abs/ID)')"
    )
    assert "Traceback" not in result.output
    listed = runner.invoke(main, ["digests", "--json"], env=cli_env)
    assert [d["date"] for d in json.loads(listed.output)] == ["2024-06-28"]


def test_missing_path_and_empty_store(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = runner.invoke(main, ["ingest", "nowhere.md", "nor/here"], env=cli_env)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: nowhere.md: no such file\nerror: nor/here: no such file\n"
        "failed: nowhere.md, nor/here\n"
    )
    # A mistyped path leaves no empty database behind to answer as if it were the real one.
    assert not Path(cli_env["NEWSLETTER_DB"]).exists()
    (tmp_path / "empty").mkdir()
    made = runner.invoke(main, ["ingest", str(tmp_path / "empty")], env=cli_env)
    assert made.exit_code == 1 and "no digest files found" in made.stderr
    empty = runner.invoke(main, ["digests"], env=cli_env)
    assert empty.exit_code == 0 and "no digests stored yet" in empty.output


def test_unknown_option_is_a_usage_error(runner: CliRunner, cli_env: dict[str, str]) -> None:
    result = runner.invoke(main, ["ingest", "--frobnicate", "x"], env=cli_env)
    assert (
        result.exit_code == 2
        and "No such option" in result.output
        and "--frobnicate" in result.output
    )


def test_bad_config_file_is_one_line(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[smtp]\nport = 'twenty-five'\n", encoding="utf-8")
    result = runner.invoke(main, ["digests", "--config", str(config)], env=cli_env)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: setting smtp_port: bad value 'twenty-five'")
    assert len(result.stderr.strip().splitlines()) == 1


PAPER_HEADING = "## Daily Papers ({date})\n### [T](https://arxiv.org/abs/2401.00001)\n"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("Vote: 99999999999999999999\n", 3, "vote count 99999999999999999999 is over 10,000,000"),
        ("Vote: 10000001\n", 3, "vote count 10000001 is over 10,000,000"),
        ("Vote: " + "9" * 5000 + "\n", 3, "vote count 99999999999999999999… is over 10,000,000"),
        ("![](https://[x/y.png)\n", 3, "image link is not a valid URL: https://[x/y.png"),
    ],
    ids=["vote-over-int64", "vote-over-bound", "vote-5000-digits", "image-bad-ipv6"],
)
def test_hostile_values_fail_their_file_only(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path, body: str, line: int, message: str
) -> None:
    bad = tmp_path / "2024-01-03.md"
    bad.write_text(PAPER_HEADING.format(date="2024-01-03") + body, encoding="utf-8")
    result = runner.invoke(main, ["ingest", str(FIXTURES / "2024-06-28.md"), str(bad)], env=cli_env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert f"error: {bad}:{line}: {message}\n" in result.stderr
    assert "Traceback" not in result.output
    listed = runner.invoke(main, ["digests", "--json"], env=cli_env)
    assert [d["date"] for d in json.loads(listed.output)] == ["2024-06-28"]


def test_bad_ipv6_paper_link_fails_its_file_only(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "2024-01-03.md"
    bad.write_text(
        "## Daily Papers (2024-01-03)\n### [T](https://[arxiv.org/abs/2503.00003)\n",
        encoding="utf-8",
    )
    result = runner.invoke(main, ["ingest", str(bad), str(FIXTURES / "2024-06-28.md")], env=cli_env)
    assert result.exit_code == 1
    assert (
        f"error: {bad}:2: paper link is not a valid URL: https://[arxiv.org/abs/2503.00003\n"
        in result.stderr
    )
    assert "Traceback" not in result.output
    listed = runner.invoke(main, ["digests", "--json"], env=cli_env)
    assert [d["date"] for d in json.loads(listed.output)] == ["2024-06-28"]


def test_two_files_for_one_date_both_fail_and_others_are_stored(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    first, second = tmp_path / "a" / "2024-06-28.md", tmp_path / "b" / "june-28.md"
    for path in (first, second):
        path.parent.mkdir()
    first.write_text((FIXTURES / "2024-06-28.md").read_text(encoding="utf-8"), encoding="utf-8")
    second.write_text(
        (FIXTURES / "2024-06-28.md").read_text(encoding="utf-8").replace("Vote: 14", "Vote: 15"),
        encoding="utf-8",
    )
    result = runner.invoke(
        main, ["ingest", str(first), str(second), str(FIXTURES / "2024-10-16.md")], env=cli_env
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {first}: digest 2024-06-28 is also in {second}; one file per date, none stored",
        f"error: {second}: digest 2024-06-28 is also in {first}; one file per date, none stored",
    ]
    assert "ingested 3 files: 1 added, 0 updated, 0 unchanged, 2 failed" in result.stdout
    listed = runner.invoke(main, ["digests", "--json"], env=cli_env)
    assert [d["date"] for d in json.loads(listed.output)] == ["2024-10-16"]


def test_one_file_named_twice_is_ingested_once(runner: CliRunner, cli_env: dict[str, str]) -> None:
    result = runner.invoke(
        main, ["ingest", str(FIXTURES), str(FIXTURES / "2024-06-28.md")], env=cli_env
    )
    assert result.exit_code == 0, result.output
    assert "ingested 3 files: 3 added, 0 updated, 0 unchanged, 0 failed" in result.stdout
    assert "warning" not in result.stderr


NEWSLETTER = Path(sys.executable).parent / "newsletter"


def run_with_bytes(
    *args: bytes, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bytes(NEWSLETTER), *args],
        env={**os.environ, **env, "PYTHONIOENCODING": "utf-8"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_argument_that_is_not_utf8_is_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    name = b"\xff-2024-06-28.md"
    (tmp_path / os.fsdecode(name)).write_bytes((FIXTURES / "2024-06-28.md").read_bytes())
    result = run_with_bytes(b"ingest", name, env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: argument '\\xff-2024-06-28.md' is not UTF-8 text\n"
    assert result.stdout == ""


@pytest.mark.slow
def test_file_name_that_is_not_utf8_fails_that_file_only(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "digests"
    folder.mkdir()
    (folder / os.fsdecode(b"\xff-2024-06-29.md")).write_text(
        (FIXTURES / "2024-06-28.md").read_text(encoding="utf-8").replace("06-28", "06-29"),
        encoding="utf-8",
    )
    (folder / "2024-06-28.md").write_bytes((FIXTURES / "2024-06-28.md").read_bytes())
    os.mkfifo(folder / os.fsdecode(b"\xfe-pipe.md"))  # named by the walk, shown the same way
    result = run_with_bytes(b"ingest", b"digests", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "error: digests/\\xff-2024-06-29.md: file name is not UTF-8 text; rename the file\n"
        in result.stderr
    )
    assert "error: digests/\\xfe-pipe.md: cannot read: not a regular file\n" in result.stderr
    assert "Traceback" not in result.stderr
    assert "digests/2024-06-28.md: added 2024-06-28 (9 papers)" in result.stdout


def ingest_held_to_modes(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`newsletter ingest FOLDER` held to file modes, which root ignores otherwise."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(NEWSLETTER), "ingest", str(folder)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        **as_unprivileged(),
    )


def test_what_a_folder_holds_that_cannot_be_read_is_named_and_the_rest_stored(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "digests"
    (folder / "locked").mkdir(parents=True)
    (folder / "2024-06-28.md").write_bytes((FIXTURES / "2024-06-28.md").read_bytes())
    (folder / "locked" / "2024-12-13.md").write_bytes((FIXTURES / "2024-12-13.md").read_bytes())
    (folder / "locked").chmod(0)
    (folder / "gone.md").symlink_to(tmp_path / "nowhere.md")
    os.mkfifo(folder / "pipe.md")  # reading it would wait for a writer for ever
    (folder / ".#2024-10-16.md").symlink_to("root@host.123")  # an editor's lock: passed over
    result = ingest_held_to_modes(folder, cli_env)
    (folder / "locked").chmod(0o755)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {folder / 'gone.md'}: cannot read: a link to nothing",
        f"error: {folder / 'locked'}: cannot read folder: Permission denied",
        f"error: {folder / 'pipe.md'}: cannot read: not a regular file",
        f"failed: {folder / 'gone.md'}, {folder / 'locked'}, {folder / 'pipe.md'}",
    ]
    assert result.stdout.splitlines() == [
        f"{folder / '2024-06-28.md'}: added 2024-06-28 (9 papers)",
        "ingested 4 files: 1 added, 0 updated, 0 unchanged, 3 failed",
    ]


def test_a_fifo_named_on_the_command_line_fails_at_once(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "pipe.md")
    # A process of its own, timed: reading the FIFO would wait for a writer for ever.
    result = run_with_bytes(b"ingest", b"pipe.md", env=cli_env, cwd=tmp_path, timeout=20)
    assert result.returncode == 1
    assert result.stderr == "error: pipe.md: cannot read: not a regular file\nfailed: pipe.md\n"


@pytest.mark.parametrize(
    "args",
    [
        ["digests"],
        ["deliveries"],
        ["subscribers", "list"],
        ["subscribers", "remove", "a@example.com"],
        ["match", "--keywords", "agents"],
        ["preview", "--all"],
        ["send", "--dry-run"],
        ["build"],
    ],
)
def test_a_command_that_only_reads_leaves_no_database_behind_a_mistyped_path(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    typo = tmp_path / "newsleter.db"
    result = runner.invoke(main, [*args, "--db", str(typo)], env=cli_env)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {typo}: no database here (`newsletter ingest` or `newsletter subscribers "
        "import` creates one)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_commands_that_bring_data_in_create_the_database(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "new" / "news.db"
    added = runner.invoke(
        main, ["subscribers", "add", "a@example.com", "--db", str(db)], env=cli_env
    )
    assert added.exit_code == 0, added.output
    assert db.exists()
    db.unlink()
    ingested = runner.invoke(main, ["ingest", str(FIXTURES), "--db", str(db)], env=cli_env)
    assert ingested.exit_code == 0 and db.exists()


def remove_bottom_up(deepest: Path, *, until: Path) -> None:
    """Remove a chain of folders from `deepest` up to (not including) `until`, in a loop."""
    while deepest != until:
        for item in deepest.iterdir():
            item.unlink()
        deepest.rmdir()
        deepest = deepest.parent


def test_folders_that_cannot_be_searched_links_into_them_loops_and_deep_trees(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "digests"
    deep = folder
    for _ in range(1100):  # deeper than Python's recursion limit
        deep = deep / "d"
        deep.mkdir(parents=deep.parent == folder)
    (deep / "2024-06-28.md").write_bytes((FIXTURES / "2024-06-28.md").read_bytes())
    names_only = folder / "names-only"  # its names can be listed, not looked at
    names_only.mkdir()
    (names_only / "2024-12-13.md").write_bytes((FIXTURES / "2024-12-13.md").read_bytes())
    names_only.chmod(0o444)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "2024-10-16.md").write_bytes((FIXTURES / "2024-10-16.md").read_bytes())
    private.chmod(0o000)
    (folder / "linked.md").symlink_to(private / "2024-10-16.md")
    (folder / "loop.md").symlink_to(folder / "loop.md")
    try:
        result = ingest_held_to_modes(folder, cli_env)
    finally:
        names_only.chmod(0o755)
        private.chmod(0o755)
        remove_bottom_up(deep, until=folder)  # pytest's own clean-up recurses, and would fail
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {folder / 'linked.md'}: cannot read: Permission denied",
        f"error: {folder / 'loop.md'}: cannot read: a link loop",
        f"error: {names_only}: cannot read folder: Permission denied",
        f"failed: {folder / 'linked.md'}, {folder / 'loop.md'}, {names_only}",
    ]
    assert result.stdout.splitlines() == [
        f"{deep / '2024-06-28.md'}: added 2024-06-28 (9 papers)",
        "ingested 4 files: 1 added, 0 updated, 0 unchanged, 3 failed",
    ]


def test_an_empty_file_is_no_database_and_a_dry_run_import_writes_none(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    listed = runner.invoke(main, ["digests", "--db", str(empty)], env=cli_env)
    assert listed.exit_code == 1
    assert "no database here" in listed.stderr
    assert empty.stat().st_size == 0  # no schema written into it
    typo = tmp_path / "typo.db"
    example = Path(__file__).parent.parent / "subscribers.example.csv"
    dry = runner.invoke(
        main, ["subscribers", "import", str(example), "--dry-run", "--db", str(typo)], env=cli_env
    )
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing written" in dry.stdout and "12 added" in dry.stdout
    assert not typo.exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["ingest", ""], "PATHS..."),
        (["ingest", "--db", "", "."], "--db"),
        (["digests", "--db", ""], "--db"),
        (["build", "--out", ""], "--out"),
        (["subscribers", "import", ""], "CSV"),
        (["preview", "--all", "--out", ""], "--out"),
        (["serve", "--site", ""], "--site"),
        (["send", "--config", ""], "--config"),
    ],
)
def test_an_empty_path_is_a_usage_error_not_the_current_folder(
    runner: CliRunner,
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    option: str,
) -> None:
    # '' used to become '.': `ingest ""` read the current folder, `build --out ""` wrote the
    # site into it.
    here = tmp_path / "here"
    here.mkdir()
    (here / "2024-12-13.md").write_bytes((FIXTURES / "2024-12-13.md").read_bytes())
    monkeypatch.chdir(here)
    result = runner.invoke(main, args, env=cli_env)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for '{option}': an empty name is not a path"
    )
    assert sorted(p.name for p in here.iterdir()) == ["2024-12-13.md"]
    assert not Path(cli_env["NEWSLETTER_DB"]).exists()


def test_a_digest_dated_after_tomorrow_is_refused_and_the_others_stored(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # A typo in the year would be sent at once, then hold back every real day after it.
    folder = tmp_path / "in"
    folder.mkdir()
    text = (FIXTURES / "2024-06-28.md").read_text(encoding="utf-8")
    (folder / "typo.md").write_text(text.replace("2024-06-28", "2099-06-28"), encoding="utf-8")
    (folder / "2024-06-28.md").write_text(text, encoding="utf-8")
    result = runner.invoke(main, ["ingest", str(folder)], env=cli_env)
    today = dt.datetime.now(dt.UTC).date()
    ahead = (dt.date(2099, 6, 28) - today).days
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: {folder / 'typo.md'}: dated 2099-06-28, {ahead:,} days after today: a digest "
        "comes out on its day; fix the date in its header"
    )
    assert f"{folder / '2024-06-28.md'}: added 2024-06-28 (9 papers)" in result.stdout
    listed = runner.invoke(main, ["digests", "--json"], env=cli_env)
    assert [d["date"] for d in json.loads(listed.output)] == ["2024-06-28"]


def test_digest_text_reaches_the_terminal_escaped(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # ESC ] ... BEL retitles a terminal window; C1 and bidi controls act too.
    text = (FIXTURES / "2024-06-28.md").read_text(encoding="utf-8")
    title = "Step-DPO: Step-wise Preference Optimization"
    hostile = text.replace(
        title, "Step-DPO\x1b]0;pwned\x07 \x85\u202e: Step-wise Preference Optimization"
    )
    good = tmp_path / "2024-06-28.md"
    good.write_text(hostile, encoding="utf-8")
    bad = tmp_path / "bad" / "2024-06-27.md"
    bad.parent.mkdir()
    bad.write_text(
        "## Daily Papers (2024-06-27)\n### [t](https://example.com/\x1b]0;pwned\x07)\n",
        encoding="utf-8",
    )
    ingested = runner.invoke(main, ["ingest", str(good), str(bad)], env=cli_env)
    matched = runner.invoke(
        main, ["match", "--date", "2024-06-28", "--keywords", "Step-DPO"], env=cli_env
    )
    as_json = runner.invoke(
        main, ["match", "--date", "2024-06-28", "--keywords", "Step-DPO", "--json"], env=cli_env
    )
    for result in (ingested, matched, as_json):
        assert not {"\x1b", "\x07", "\x85", "\u202e"} & set(result.output)
    assert "https://example.com/\\x1b]0;pwned\\x07" in ingested.stderr
    assert "Step-DPO\\x1b]0;pwned\\x07 \\x85\\u202e: Step-wise" in matched.stdout
    assert json.loads(as_json.stdout)[0]["title"].startswith("Step-DPO\x1b]0;pwned\x07")


def test_the_daily_job_prints_a_broken_digests_error_escaped(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # `run` prints ingest errors of its own: they went out raw when `ingest` was mended.
    folder = tmp_path / "digests"
    folder.mkdir()
    (folder / "2024-06-28.md").write_bytes((FIXTURES / "2024-06-28.md").read_bytes())
    (folder / "2024-06-27.md").write_text(
        "## Daily Papers (2024-06-27)\n### [t](https://example.com/\x1b]0;pwned\x07)\n",
        encoding="utf-8",
    )
    result = runner.invoke(
        main, ["run", str(folder), "--out", str(tmp_path / "site"), "--dry-run"], env=cli_env
    )
    assert result.exit_code == 1
    assert not {"\x1b", "\x07"} & set(result.output)
    assert "https://example.com/\\x1b]0;pwned\\x07" in result.stderr
