"""Subscriber records: addresses, preferences, the CSV, and importing it into a real store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from newsletter.audience.importing import import_subscribers_csv
from newsletter.audience.match import select_papers
from newsletter.audience.subscribers import (
    COLUMNS,
    ERROR_CODES,
    escape_controls,
    normalize_email,
    parse_subscribers_csv,
    read_subscribers_csv,
    validate_filters,
    validate_name,
)
from newsletter.errors import SubscriberError
from newsletter.model import Filters
from newsletter.store import Store

EXAMPLE = Path(__file__).parent.parent / "subscribers.example.csv"
HEADER = "email,name,keywords,min_votes,exclude,max_papers\n"

GOOD = (
    HEADER
    + "ana@example.com,Ana,RAG;diffusion,5,,\n"
    + "민수@example.com,김민수,강화학습,0,survey,3\n"  # rejected: non-ASCII local part
    + " Bo@Example.ORG ,Bo,,,,\n"
)


def write(tmp_path: Path, text: str, name: str = "subs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rows_of(store: Store) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM subscribers ORDER BY id")


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ana@example.com", "ana@example.com"),
        ("  Ana.Lee@Example.COM \t", "Ana.Lee@example.com"),  # local part kept, domain lowered
        ("x+news@mail.example.org", "x+news@mail.example.org"),
    ],
)
def test_normalize_email(text: str, expected: str) -> None:
    assert normalize_email(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ana",
        "ana@",
        "@example.com",
        "ana@example",
        "ana@@example.com",
        "ana example@example.com",
        "ana@exa mple.com",
        "ana@-example.com",
        "ana..lee@example.com",
        "ana@example.com\nBcc: x@example.com",
        "ana@127.0.0.1",
        "a" * 65 + "@example.com",
    ],
)
def test_invalid_addresses(text: str) -> None:
    with pytest.raises(SubscriberError) as info:
        normalize_email(text)
    assert info.value.code == "email_invalid" and info.value.field == "email"


@pytest.mark.parametrize(
    "text", ["=?utf-8?q?victim=40evil.com?=@example.com", "a=?b@example.com", "=?x?b?dg==?=@a.io"]
)
def test_encoded_words_are_refused(text: str) -> None:
    with pytest.raises(SubscriberError) as info:
        normalize_email(text)
    assert info.value.code == "email_encoded" and "encoded word" in str(info.value)
    assert info.value.code in ERROR_CODES


# --- preferences -------------------------------------------------------------------------------


def test_validate_filters_defaults_and_splitting() -> None:
    assert validate_filters() == Filters()
    prefs = validate_filters(
        keywords=" RAG ; 강화학습;;rag ", exclude="survey", min_votes=" 10 ", max_papers="5"
    )
    assert prefs == Filters(("RAG", "강화학습"), ("survey",), 10, 5)
    assert validate_filters(keywords="ＡＩ").keywords == ("ＡＩ",)


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"keywords": "RAG;a"}, "keyword_too_short", "keywords"),
        ({"keywords": "Ａ"}, "keyword_too_short", "keywords"),  # one character once normalised
        ({"exclude": "x"}, "keyword_too_short", "exclude"),
        ({"keywords": "x" * 101}, "keyword_too_long", "keywords"),
        ({"keywords": ";".join(f"kw{i}" for i in range(51))}, "too_many_keywords", "keywords"),
        ({"min_votes": "-1"}, "min_votes_invalid", "min_votes"),
        ({"min_votes": "1.5"}, "min_votes_invalid", "min_votes"),
        ({"min_votes": "ten"}, "min_votes_invalid", "min_votes"),
        ({"min_votes": "١٢"}, "min_votes_invalid", "min_votes"),  # Arabic-Indic digits
        ({"min_votes": "99999999999999999999"}, "min_votes_invalid", "min_votes"),
        ({"min_votes": "9" * 5000}, "min_votes_invalid", "min_votes"),  # int() would raise
        ({"max_papers": "1" * 5000}, "max_papers_invalid", "max_papers"),
        ({"max_papers": "0"}, "max_papers_invalid", "max_papers"),
        ({"max_papers": "many"}, "max_papers_invalid", "max_papers"),
        ({"keywords": "RAG;a\x00b"}, "control_character", "keywords"),
        ({"keywords": "\x1b[31mred"}, "control_character", "keywords"),
        ({"exclude": "ab\x9bcd"}, "control_character", "exclude"),  # C1 CSI
        ({"keywords": "ab\x7f"}, "control_character", "keywords"),
        ({"keywords": "ab\u2028cd"}, "control_character", "keywords"),
        ({"keywords": "abc\u202edcba"}, "control_character", "keywords"),  # bidi override
        ({"keywords": "tab\there"}, "control_character", "keywords"),
        ({"keywords": "\u200b\u200b\u200b"}, "invisible_character", "keywords"),  # shows as ""
        ({"keywords": "\ufeffLLM"}, "invisible_character", "keywords"),  # would match nothing
        ({"exclude": "sur\u00advey"}, "invisible_character", "exclude"),  # a soft hyphen
        ({"keywords": "\ue000\ue000"}, "invisible_character", "keywords"),  # private use
        ({"keywords": "ab\U000e0001"}, "invisible_character", "keywords"),  # a language tag
        ({"keywords": "=?UTF-8?Q?LLM?="}, "keyword_encoded", "keywords"),
    ],
)
def test_invalid_preferences_have_stable_codes(
    fields: dict[str, str], code: str, field: str
) -> None:
    with pytest.raises(SubscriberError) as info:
        validate_filters(**fields)
    assert (info.value.code, info.value.field) == (code, field)
    assert code in ERROR_CODES


def test_keywords_keep_the_joiners_scripts_need() -> None:
    # ZWNJ and ZWJ shape Persian and Indic words and emoji; they are not hidden text.
    assert validate_filters(keywords="می\u200cخواهم; 👩\u200d💻").keywords == (
        "می\u200cخواهم",
        "👩\u200d💻",
    )


@pytest.mark.parametrize("name", ["\x1b[2JAna", "A\x00na", "A\x85na", "An\u2029a", "\u2066Ana"])
def test_names_with_control_characters_are_refused(name: str) -> None:
    with pytest.raises(SubscriberError) as info:
        validate_name(name)
    assert (info.value.code, info.value.field) == ("control_character", "name")
    assert "U+" in str(info.value)  # says which character, without printing it
    assert validate_name(" 김민수 Ana-Lee ") == "김민수 Ana-Lee"


@pytest.mark.parametrize("name", ["=?utf-8?q?Your_bank?=", "Ana =?utf-8?b?7JWI64WV?= Lee"])
def test_names_holding_an_encoded_word_are_refused(name: str) -> None:
    with pytest.raises(SubscriberError) as info:
        validate_name(name)
    assert (info.value.code, info.value.field) == ("name_encoded", "name")
    assert info.value.code in ERROR_CODES
    assert validate_name("a=?b and c?=d") == "a=?b and c?=d"  # no encoded word's shape


def test_escape_controls_makes_stored_text_printable() -> None:
    assert escape_controls("a\x1b[31mb\x00c\x9bd\u2028e\u202ef\tg") == (
        "a\\x1b[31mb\\x00c\\x9bd\\u2028e\\u202ef\\x09g"
    )
    assert escape_controls("강화학습 RAG") == "강화학습 RAG"


# --- reading the CSV ---------------------------------------------------------------------------


def test_example_csv_is_valid_and_its_subscribers_get_papers(loaded_store: Store) -> None:
    read = read_subscribers_csv(EXAMPLE)
    assert read.rejected == ()
    assert len(read.rows) >= 10
    emails = [r.email for r in read.rows]
    assert all(e.endswith(("@example.com", "@example.org")) for e in emails)
    assert any(not r.filters.keywords for r in read.rows)
    keywords = [k for r in read.rows for k in r.filters.keywords]
    assert any("\uac00" <= c <= "\ud7a3" for k in keywords for c in k)  # Korean ones too
    digests = loaded_store.digests(loaded_store.digest_dates())
    for row in read.rows:
        assert any(select_papers(d, row.filters) for d in digests), row.email


def test_bad_rows_are_named_with_row_numbers_and_good_rows_kept(tmp_path: Path) -> None:
    text = (
        HEADER
        + "ana@example.com,Ana,RAG,5,,\n"  # row 2: good
        + "not-an-address,X,RAG,0,,\n"  # row 3
        + "bo@example.com,Bo,RAG,-3,,\n"  # row 4
        + '"cy@example.com","Cy\nBcc: evil@example.com",RAG,0,,\n'  # row 5 (spans two lines)
        + "di@example.com,Di,RAG;a,0,,\n"  # row 6
        + "\n"  # row 7: blank, skipped
        + "ed@example.com,Ed,LLM,0,,,surplus\n"  # row 8
        + "ANA@example.com,Ana again,LLM,0,,\n"  # row 9: one address whatever its case
        + "ana@EXAMPLE.com,Ana twice,LLM,0,,\n"  # row 10: same normalised address as row 2
        + "fa@example.com,Fa,강화학습,,,\n"  # row 11: good, min_votes empty means 0
    )
    read = parse_subscribers_csv(text, source="subs.csv")
    assert [r.email for r in read.rows] == ["ana@example.com", "fa@example.com"]
    assert [r.row for r in read.rows] == [2, 11]
    assert read.rows[1].filters.min_votes == 0
    assert [(e.row, e.code) for e in read.rejected] == [
        (3, "email_invalid"),
        (4, "min_votes_invalid"),
        (5, "newline"),
        (6, "keyword_too_short"),
        (8, "too_many_fields"),
        (9, "duplicate_email"),
        (10, "duplicate_email"),
    ]
    assert str(read.rejected[0]) == "subs.csv: row 3: not an e-mail address: 'not-an-address'"
    assert str(read.rejected[5]) == "subs.csv: row 9: ANA@example.com is already on row 2"
    assert str(read.rejected[6]) == "subs.csv: row 10: ana@example.com is already on row 2"


def test_unknown_column_lists_the_valid_ones() -> None:
    with pytest.raises(SubscriberError) as info:
        parse_subscribers_csv("email,name,keywords,min_votes,colour\n", source="s.csv")
    assert info.value.code == "unknown_column"
    assert str(info.value) == (
        "s.csv: row 1: unknown column 'colour'; valid columns: " + ", ".join(COLUMNS)
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("email,name,keywords\n", "missing_column"),
        ("email,name,keywords,min_votes,email\n", "duplicate_column"),
        ("", "not_csv"),
    ],
)
def test_bad_headers(text: str, code: str) -> None:
    with pytest.raises(SubscriberError) as info:
        parse_subscribers_csv(text, source="s.csv")
    assert info.value.code == code


def test_header_case_bom_crlf_and_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(
        "\ufeffEmail , NAME,Keywords,Min_Votes\r\nana@example.com,Ana,RAG,3\r\n".encode()
    )
    read = read_subscribers_csv(path)
    assert read.rejected == ()
    assert read.rows[0].filters == Filters(("RAG",), (), 3, None)


def test_a_row_that_is_not_utf8_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(
        HEADER.encode()
        + "ana@example.com,Anä,RAG,0,,\n".encode("latin-1")
        + "bo@example.com,Bö,agents,0,,\n".encode()
    )
    parsed = read_subscribers_csv(path)
    assert [(r.row, r.email, r.name) for r in parsed.rows] == [(3, "bo@example.com", "Bö")]
    (error,) = parsed.rejected
    assert (error.row, error.code, error.field) == (2, "not_utf8", "name")
    assert str(error) == f"{path}: row 2: name is not UTF-8 text"


def test_a_header_that_is_not_utf8_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes("emäil,name\nana@example.com,Ana\n".encode("latin-1"))
    with pytest.raises(SubscriberError) as info:
        read_subscribers_csv(path)
    assert info.value.code == "not_csv"
    assert str(info.value) == f"{path}: row 1: not UTF-8 text"


# --- importing into a real store ----------------------------------------------------------------


def test_import_good_file_then_reimport_changes_nothing(store: Store, tmp_path: Path) -> None:
    first = import_subscribers_csv(store, EXAMPLE)
    assert len(first.added) == 12 and not (first.updated or first.unchanged or first.rejected)
    before = rows_of(store)
    assert [r["status"] for r in before] == ["active"] * 12
    again = import_subscribers_csv(store, EXAMPLE)
    assert again.summary() == "0 added, 0 updated, 12 unchanged, 0 rejected"
    assert rows_of(store) == before  # not even updated_at moves


def test_import_updates_by_normalised_email(store: Store, tmp_path: Path) -> None:
    import_subscribers_csv(store, write(tmp_path, HEADER + "ana@example.com,Ana,RAG,5,,\n"))
    report = import_subscribers_csv(
        store, write(tmp_path, HEADER + " ana@EXAMPLE.com ,Ana,RAG;LLM,5,,2\n")
    )
    assert (report.added, report.updated) == ((), ("ana@example.com",))
    found = store.subscriber_by_email("ana@example.com")
    assert found is not None
    assert (found.filters.keywords, found.filters.max_papers) == (("RAG", "LLM"), 2)
    assert len(rows_of(store)) == 1


def test_an_address_is_one_subscriber_whatever_its_case(store: Store, tmp_path: Path) -> None:
    both = write(tmp_path, HEADER + "Dup@example.com,A,RAG,0,,\ndup@EXAMPLE.com,B,LLM,0,,\n")
    report = import_subscribers_csv(store, both)
    assert report.added == ("Dup@example.com",)
    assert [(e.row, e.code) for e in report.rejected] == [(3, "duplicate_email")]
    again = import_subscribers_csv(store, write(tmp_path, HEADER + "DUP@example.com,A,GAN,0,,\n"))
    assert (again.added, again.updated) == ((), ("Dup@example.com",))
    assert [(r["email"], r["keywords"]) for r in rows_of(store)] == [("Dup@example.com", '["GAN"]')]
    found = store.subscriber_by_email("dUP@example.com")
    assert found is not None and found.email == "Dup@example.com"  # kept as typed, for sending
    with pytest.raises(SubscriberError) as info:
        store.add_subscriber("dup@example.com")
    assert info.value.code == "exists"


def test_mixed_file_imports_good_rows_and_names_bad_ones(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    report = import_subscribers_csv(store, path)
    assert report.added == ("ana@example.com", "Bo@example.org")
    assert [(e.row, e.code) for e in report.rejected] == [(3, "email_invalid")]
    assert str(report.rejected[0]).startswith(f"{path}: row 3: ")
    assert [r["email"] for r in rows_of(store)] == ["ana@example.com", "Bo@example.org"]


def test_all_bad_file_stores_nothing(store: Store, tmp_path: Path) -> None:
    report = import_subscribers_csv(store, write(tmp_path, HEADER + "x,X,RAG,0,,\ny,Y,RAG,0,,\n"))
    assert [e.row for e in report.rejected] == [2, 3]
    assert rows_of(store) == []


def test_dry_run_writes_nothing_but_reports(store: Store, tmp_path: Path) -> None:
    report = import_subscribers_csv(store, EXAMPLE, dry_run=True)
    assert len(report.added) == 12 and report.dry_run
    assert rows_of(store) == []


def test_missing_subscribers_are_kept_and_sync_unsubscribes_them(
    store: Store, tmp_path: Path
) -> None:
    import_subscribers_csv(store, EXAMPLE)
    only_ana = write(tmp_path, HEADER + "ana@example.com,Ana,RAG,0,,\n")
    kept = import_subscribers_csv(store, only_ana)
    assert kept.unsubscribed == ()
    assert len(list(store.active_subscribers())) == 13
    dry = import_subscribers_csv(store, only_ana, sync=True, dry_run=True)
    assert len(dry.unsubscribed) == 12
    assert len(list(store.active_subscribers())) == 13
    synced = import_subscribers_csv(store, only_ana, sync=True)
    assert len(synced.unsubscribed) == 12
    assert [s.email for s in store.active_subscribers()] == ["ana@example.com"]
    assert len(rows_of(store)) == 13  # nothing deleted


def test_import_never_reactivates_an_unsubscribed_or_bounced_subscriber(
    store: Store, tmp_path: Path
) -> None:
    import_subscribers_csv(store, EXAMPLE)
    first, second = store.subscribers()[:2]
    store.set_status(first.id, "unsubscribed")
    store.set_status(second.id, "bounced")
    report = import_subscribers_csv(store, EXAMPLE)
    assert len(report.unchanged) == 12
    active = {s.email for s in store.active_subscribers()}
    assert first.email not in active and second.email not in active
    assert len(active) == 10
