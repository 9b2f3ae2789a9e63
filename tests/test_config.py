"""Settings: defaults < file < environment < options; secrets only from the environment."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import Settings, load_settings, unknown_environment
from newsletter.errors import ConfigError
from newsletter.store import Store

from .conftest import TEST_KEY


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_file_env_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'db = "file.db"\n[smtp]\nhost = "relay.file"\nport = 2525\n[site]\nfeed_days = 7\n',
    )
    env = {"NEWSLETTER_SMTP_HOST": "relay.env"}
    settings = load_settings(
        config_path=path, environ=env, overrides={"db": "option.db", "smtp_port": None}
    )
    assert settings.db == Path("option.db")
    assert settings.smtp_host == "relay.env"
    assert settings.smtp_port == 2525
    assert settings.feed_days == 7


def test_config_from_environment_variable_and_topics(tmp_path: Path) -> None:
    path = write(tmp_path, '[topics]\nrag = "RAG; retrieval"\n"강화학습" = ["강화학습", "RL"]\n')
    settings = load_settings(environ={"NEWSLETTER_CONFIG": str(path)})
    assert settings.topics == {"rag": "RAG; retrieval", "강화학습": "강화학습; RL"}


def test_secret_hidden_and_refused_in_file(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"NEWSLETTER_SECRET_KEY": TEST_KEY, "NEWSLETTER_SMTP_PASSWORD": "pw"}
    )
    assert TEST_KEY not in repr(settings) and TEST_KEY not in str(settings.secret_key)
    assert "pw" not in str(settings.describe())
    assert settings.require_secret_key() == TEST_KEY.encode()
    with pytest.raises(ConfigError, match="secret"):
        load_settings(config_path=write(tmp_path, '[smtp]\npassword = "x"\n'), environ={})


def test_missing_secret_key_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY is not set") as caught:
        load_settings(environ={}).require_secret_key()
    assert HOWTO in str(caught.value)


HOWTO = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("k3y!", "length 4, under 43 characters"),
        ("demo-secret-key-not-for-production", "length 34, under 43 characters"),
        ("H-OMfV2st76EgfyGGtuclBRL3dVmFiummXI3sPiTb", "length 41, under 43 characters"),
        ("ab" * 30, "only 2 different characters, fewer than 10"),
        ("012345678" * 5, "only 9 different characters, fewer than 10"),
        ("0123456789" * 5, "a 10-character pattern repeated"),
        ("secret-key-0123-" * 3, "a 16-character pattern repeated"),
        ("H-OMfV2st76EgfyGGtuc" * 2 + "H-OMf", "a 20-character pattern repeated"),
    ],
)
def test_a_weak_secret_key_is_refused_with_how_to_make_one(key: str, why: str) -> None:
    settings = load_settings(environ={"NEWSLETTER_SECRET_KEY": key})
    with pytest.raises(ConfigError) as caught:
        settings.require_secret_key()
    message = str(caught.value)
    assert message == f"NEWSLETTER_SECRET_KEY is too weak: {why}; generate one with: {HOWTO}"
    assert key not in message


@pytest.mark.parametrize(
    "key",
    [
        "H-OMfV2st76EgfyGGtuclBRL3dVmFiummXI3sPiTbPk",  # secrets.token_urlsafe(32)
        "cCr8CpZ2PAPKd6XrNzAbBzwQlPw5RoBleXwUGb97uiw=",  # openssl rand -base64 32
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # token_hex(32)
    ],
)
def test_a_random_32_byte_key_is_accepted(key: str) -> None:
    settings = load_settings(environ={"NEWSLETTER_SECRET_KEY": key})
    assert settings.require_secret_key() == key.encode()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"NEWSLETTER_BASE_URL": "example.com/feeds"}, "absolute http(s) URL"),
        ({"NEWSLETTER_BASE_URL": "ftp://example.com"}, "absolute http(s) URL"),
        ({"NEWSLETTER_BASE_URL": "https://news.example.com/daily papers"}, "URL without spaces"),
        ({"NEWSLETTER_BASE_URL": "https://news .example.com"}, "URL without spaces"),
        ({"NEWSLETTER_BASE_URL": 'https://news.example.com/"x'}, "URL without '\"'"),
        ({"NEWSLETTER_BASE_URL": "https://news.example.com:99999"}, "port is a number from 1"),
        ({"NEWSLETTER_BASE_URL": "https://news.example.com:0/"}, "port is a number from 1"),
        ({"NEWSLETTER_BASE_URL": "https://news.example.com/?a=b"}, "without .query or #fragment"),
        ({"NEWSLETTER_BASE_URL": "https://news.example.com/#top"}, "without .query or #fragment"),
        ({"NEWSLETTER_BASE_URL": "https://me:pw@news.example.com/"}, "without user@"),
        ({"NEWSLETTER_BASE_URL": "https://news!.example.com"}, "host name or an IP address"),
        ({"NEWSLETTER_WEBSUB_HUB": "https://hub.example.com/ x"}, "URL without spaces"),
        ({"NEWSLETTER_SMTP_TLS": "maybe"}, "starttls, tls or none"),
        ({"NEWSLETTER_SMTP_PORT": "many"}, "smtp_port: bad value"),
        ({"NEWSLETTER_CONCURRENCY": "0"}, "from 1 to 512"),
        ({"NEWSLETTER_CONCURRENCY": "100000"}, "from 1 to 512"),  # as --concurrency
        ({"NEWSLETTER_FEED_DAYS": "9" * 20}, "from 1 to 3650"),  # an SQL LIMIT overflowed
        ({"NEWSLETTER_RETRIES": "1000"}, "from 1 to 100"),
        ({"NEWSLETTER_SITE_TITLE": "T" * 201}, "at most 200 characters, not 201"),
        ({"NEWSLETTER_FROM": "A <a@x>\r\nBcc: victim@x"}, "line breaks"),
        ({"NEWSLETTER_UNSUBSCRIBE_MAILTO": "u@x\nBcc: victim@x"}, "line breaks"),
    ],
)
def test_bad_values_are_config_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_settings(environ=env)


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example.com",
        "http://[::1]:8000/",
        "https://例え.jp/daily/",
        "http://127.0.0.1:8000",
    ],
)
def test_good_base_urls_are_kept_as_given(url: str) -> None:
    assert load_settings(environ={"NEWSLETTER_BASE_URL": url}).base_url == url


def test_unknown_settings_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting \[smtp\] hots"):
        load_settings(config_path=write(tmp_path, '[smtp]\nhots = "x"\n'), environ={})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(config_path=write(tmp_path, "db = \n"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(config_path=tmp_path / "missing.toml", environ={})


def test_a_config_path_that_is_no_small_file_is_one_line_never_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # reading it would wait for a writer for ever
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"# " + b"x" * (1024 * 1024) + b"\n")
    cases = {
        fifo: f"{fifo}: cannot read config file: not a regular file",
        Path("/dev/zero"): "/dev/zero: cannot read config file: not a regular file",
        tmp_path: f"{tmp_path}: cannot read config file: not a regular file",
        huge: f"{huge}: cannot read config file: over 1,048,576 bytes (it is a few lines)",
    }
    for path, said in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_settings(config_path=path, environ={})
        assert str(caught.value) == said


EXAMPLE = Path(__file__).parent.parent / "newsletter.example.toml"


def undocumented(text: str) -> list[str]:
    """Settings of the dataclass the example file does not show under their [section] key.

    A key counts when it is set or shown commented out (`# template_dir = ...`) inside its
    own section; a secret counts when its environment variable is named; a table setting
    (topics) counts when its section header is there.
    """
    shown: set[tuple[str, str]] = set()
    section = ""
    for line in text.splitlines():
        if header := re.match(r"\s*\[([\w.]+)\]", line):
            section = header[1]
            shown.add((section, ""))
        elif key := re.match(r"\s*#?\s*([A-Za-z_]\w*)\s*=", line):
            shown.add((section, key[1]))
    missing = []
    for f in dataclasses.fields(Settings):
        section = f.metadata["section"]
        if f.metadata["secret"]:
            found = f"NEWSLETTER_{f.name.upper()}" in text
        elif str(f.type).startswith("dict"):
            found = (section, "") in shown
        else:
            name = f.name.removeprefix(f"{section}_") if section else f.name
            found = (section, name) in shown
        if not found:
            missing.append(f"[{section}] {f.name}" if section else f.name)
    return missing


def test_example_config_documents_every_setting_and_loads() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert undocumented(text) == []
    # Every value shown is the default, and the file loads as it is.
    assert load_settings(config_path=EXAMPLE, environ={}) == Settings()


@pytest.mark.parametrize("section", ["site", "topics", "email", "smtp", "serve"])
def test_a_missing_section_of_the_example_is_noticed(tmp_path: Path, section: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index(f"\n[{section}]")
    end = text.find("\n[", start + 1)
    copy = write(tmp_path, text[:start] + (text[end:] if end != -1 else "\n"))
    load_settings(config_path=copy, environ={})  # still a valid file: only the check notices
    missing = undocumented(copy.read_text(encoding="utf-8"))
    expected = [
        f.name
        for f in dataclasses.fields(Settings)
        if f.metadata["section"] == section and not f.metadata["secret"]  # secrets: env only
    ]
    assert missing == [f"[{section}] {name}" for name in expected]


def test_a_missing_top_level_key_or_secret_is_noticed() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert undocumented(text.replace('db = "newsletter.db"', "")) == ["db"]
    assert undocumented(text.replace("NEWSLETTER_SECRET_KEY", "the key")) == ["secret_key"]
    # A key under the wrong section does not count for its own.
    moved = text.replace("feed_days = 30", "").replace("[serve]", "[serve]\nfeed_days = 30")
    assert undocumented(moved) == ["[site] feed_days"]


# --- every bad value: one line naming the setting and where the value came from ---------------

BAD_IN_FILE = [
    ("[smtp]\nport = inf\n", "smtp_port", "[smtp] port"),
    ("[smtp]\nport = 1e30\n", "smtp_port", "[smtp] port"),
    ("[smtp]\nport = 70000\n", "smtp_port", "[smtp] port"),
    ("[smtp]\nport = -1\n", "smtp_port", "[smtp] port"),
    ("[serve]\nport = 70000\n", "serve_port", "[serve] port"),
    ('[smtp]\nhost = "relay\\u2028example.com"\n', "smtp_host", "[smtp] host"),
    ('[smtp]\nhost = "relay example.com"\n', "smtp_host", "[smtp] host"),
    ('[site]\ntitle = ["Daily", "Papers"]\n', "site_title", "[site] title"),
    ('[smtp]\ntls = ["starttls"]\n', "smtp_tls", "[smtp] tls"),
    ("[site]\nfeed_days = 7.5\n", "feed_days", "[site] feed_days"),
    ("[site]\nfeed_days = 7.0\n", "feed_days", "[site] feed_days"),
    ("[smtp]\ntimeout = -1\n", "smtp_timeout", "[smtp] timeout"),
    ("[smtp]\ntimeout = 0\n", "smtp_timeout", "[smtp] timeout"),
    ("[smtp]\ntimeout = nan\n", "smtp_timeout", "[smtp] timeout"),
    ("[smtp]\nrate = -0.5\n", "rate", "[smtp] rate"),
    ("[smtp]\nrate = inf\n", "rate", "[smtp] rate"),
    ('[email]\nfrom_address = "<<<>>>"\n', "from_address", "[email] from_address"),
    ('[email]\nfrom_address = "a@x.example, b@x.example"\n', "from_address", "from_address"),
    ('[email]\nenvelope_from = "Bounces <b@x.example>"\n', "envelope_from", "envelope_from"),
    ('[email]\nlist_id = "a>b<c"\n', "list_id", "[email] list_id"),
    ('[email]\nsend_empty = "sometimes"\n', "send_empty", "[email] send_empty"),
    ('db = ""\n', "db", "newsletter.toml db"),
]


@pytest.mark.parametrize(("toml", "name", "where"), BAD_IN_FILE)
def test_bad_values_in_the_file_name_the_setting_and_the_file(
    tmp_path: Path, toml: str, name: str, where: str
) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=path, environ={})
    message = str(caught.value)
    assert message.startswith(f"setting {name}: bad value ")
    assert f"from {path} " in message and where in message
    assert len(message.splitlines()) == 1 and "\u2028" not in message


@pytest.mark.parametrize(
    ("variable", "value", "name"),
    [
        ("NEWSLETTER_SMTP_PORT", "70000", "smtp_port"),
        ("NEWSLETTER_SMTP_PORT", "-1", "smtp_port"),
        ("NEWSLETTER_SMTP_PORT", "25.0", "smtp_port"),
        ("NEWSLETTER_SERVE_PORT", "0", "serve_port"),
        ("NEWSLETTER_SMTP_HOST", "relay\u2028example.com", "smtp_host"),
        ("NEWSLETTER_SERVE_HOST", "", "serve_host"),
        ("NEWSLETTER_FEED_DAYS", "7.5", "feed_days"),
        ("NEWSLETTER_SMTP_TIMEOUT", "-3", "smtp_timeout"),
        ("NEWSLETTER_SMTP_TIMEOUT", "inf", "smtp_timeout"),
        ("NEWSLETTER_RATE", "-1", "rate"),
        ("NEWSLETTER_FROM", "<<<>>>", "from_address"),
        ("NEWSLETTER_REPLY_TO", "nobody", "reply_to"),
        ("NEWSLETTER_LIST_ID", "a>b<c", "list_id"),
        ("NEWSLETTER_SITE_TITLE", "Papers\u2028Bcc: x@example.com", "site_title"),
    ],
)
def test_bad_values_in_the_environment_name_the_setting_and_the_variable(
    variable: str, value: str, name: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: value})
    message = str(caught.value)
    assert message.startswith(f"setting {name}: bad value ")
    assert f"from {variable}: " in message
    assert len(message.splitlines()) == 1 and "\u2028" not in message


def test_bad_options_name_the_option_as_the_command_line_spells_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            environ={}, overrides={"serve_port": 70000}, option_names={"serve_port": "--port"}
        )
    assert str(caught.value) == (
        "setting serve_port: bad value 70000 from option --port: "
        "must be a port number from 1 to 65535"
    )
    with pytest.raises(ConfigError, match="smtp_port: bad value -1 from option --smtp-port"):
        load_settings(environ={}, overrides={"smtp_port": -1})


def test_good_values_of_every_kind_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[site]\nfeed_days = 7\n[smtp]\n"
        'host = "smtp.例え.jp"\nport = 587\ntimeout = 5\nrate = 0.5\n'
        '[serve]\nhost = "::"\n'
        '[email]\nfrom_address = "\\"Papers, Daily\\" <d@x.example>"\nreply_to = ""\n'
        'list_id = "daily.x.example"\nsend_empty = "yes"\n',
    )
    settings = load_settings(
        config_path=path, environ={"NEWSLETTER_CONCURRENCY": " 4 ", "NEWSLETTER_SMTP_PORT": "2525"}
    )
    assert (settings.feed_days, settings.smtp_port, settings.concurrency) == (7, 2525, 4)
    assert (settings.smtp_timeout, settings.rate, settings.send_empty) == (5.0, 0.5, True)
    assert (settings.smtp_host, settings.serve_host) == ("smtp.例え.jp", "::")
    assert settings.from_address == '"Papers, Daily" <d@x.example>'


def test_trusted_proxies_from_file_or_environment_and_checked(tmp_path: Path) -> None:
    assert load_settings(environ={}).trusted_proxies == ()
    path = write(tmp_path, '[serve]\ntrusted_proxies = ["10.0.0.0/8", "::1"]\n')
    assert load_settings(config_path=path, environ={}).trusted_proxies == ("10.0.0.0/8", "::1")
    env = {"NEWSLETTER_TRUSTED_PROXIES": "192.0.2.1, 198.51.100.0/24"}
    assert load_settings(environ=env).trusted_proxies == ("192.0.2.1", "198.51.100.0/24")
    with pytest.raises(ConfigError, match=r"trusted_proxies.*'proxy\.local'"):
        load_settings(environ={"NEWSLETTER_TRUSTED_PROXIES": "proxy.local"})
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(config_path=write(tmp_path, "[serve]\ntrusted_proxies = 7\n"), environ={})


def test_a_card_cap_over_a_thousand_is_refused_in_one_line() -> None:
    # Card numbers are prepared up to 1000 (mail/day.py): more would fail mid-send.
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"NEWSLETTER_MAX_PAPERS_PER_EMAIL": "2000"})
    assert str(caught.value).startswith("setting max_papers_per_email: bad value '2000'")
    assert "from 1 to 1000" in str(caught.value)
    assert (
        load_settings(environ={"NEWSLETTER_MAX_PAPERS_PER_EMAIL": "1000"}).max_papers_per_email
        == 1000
    )


@pytest.mark.parametrize("name", ["NEWSLETTER_SECRET_KEY", "NEWSLETTER_SMTP_USER"])
def test_a_setting_whose_bytes_are_not_utf8_is_one_line(tmp_path: Path, name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_SECRET_KEY"] = TEST_KEY
    env["NEWSLETTER_DB"] = str(tmp_path / "n.db")
    raw = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    raw[name.encode()] = b"user\xffname"  # as a shell passes bytes that are not UTF-8
    command = [str(Path(sys.executable).parent / "newsletter"), "send", "--dry-run"]
    done = subprocess.run(
        command,
        env=raw,
        cwd=tmp_path,
        capture_output=True,
    )
    assert done.returncode == 1
    assert done.stderr.decode() == f"error: {name}: holds bytes that are not UTF-8 text\n"


def test_a_newsletter_variable_no_setting_reads_is_named_with_the_likely_one() -> None:
    env = {
        "NEWSLETTER_SMTP_CONCURRENCY": "4",  # the setting is NEWSLETTER_CONCURRENCY
        "NEWSLETTER_EMAIL_LIST_ID": "x",  # [email] list_id is NEWSLETTER_LIST_ID
        "NEWSLETTER_ENVELOP_FROM": "x",  # a typo: not NEWSLETTER_FROM, the From header
        "NEWSLETTER_ENVELOPE_FROM_ADDRESS": "x",
        "NEWSLETTER_EMAIL_REPLYTO": "x",  # a section and a typo
        "NEWSLETTER_smtp_port": "587",  # lower case
        "NEWSLETTER_TOPICS_LLM": "x",
        "NEWSLETTER_SECERT_KEY": "x",
        "NEWSLETTER_TOPICS": "agents",
        "NEWSLETTER_ZZZZZZZZZ": "1",
        "NEWSLETTER_SMTP_HOST": "relay.example.com",  # known ones say nothing
        "NEWSLETTER_IMAP_PASSWORD": "x",
        "NEWSLETTER_CONFIG": "x.toml",
        "OTHER_SMTP_RATE": "1",
    }
    assert unknown_environment(env) == [
        "warning: NEWSLETTER_EMAIL_LIST_ID is not a setting and is ignored; did you mean "
        "NEWSLETTER_LIST_ID?",
        "warning: NEWSLETTER_EMAIL_REPLYTO is not a setting and is ignored; did you mean "
        "NEWSLETTER_REPLY_TO?",
        "warning: NEWSLETTER_ENVELOPE_FROM_ADDRESS is not a setting and is ignored; did you mean "
        "NEWSLETTER_ENVELOPE_FROM?",
        "warning: NEWSLETTER_ENVELOP_FROM is not a setting and is ignored; did you mean "
        "NEWSLETTER_ENVELOPE_FROM?",
        "warning: NEWSLETTER_SECERT_KEY is not a setting and is ignored; did you mean "
        "NEWSLETTER_SECRET_KEY?",
        "warning: NEWSLETTER_SMTP_CONCURRENCY is not a setting and is ignored; did you mean "
        "NEWSLETTER_CONCURRENCY?",
        "warning: NEWSLETTER_TOPICS is not a setting and is ignored; topics are set in the "
        "config file's [topics] table",
        "warning: NEWSLETTER_TOPICS_LLM is not a setting and is ignored; topics are set in the "
        "config file's [topics] table",
        "warning: NEWSLETTER_ZZZZZZZZZ is not a setting and is ignored",
        "warning: NEWSLETTER_smtp_port is not a setting and is ignored; did you mean "
        "NEWSLETTER_SMTP_PORT?",
    ]


def test_the_cli_warns_of_an_unknown_variable_and_goes_on(
    runner: CliRunner, cli_env: dict[str, str]
) -> None:
    Store(Path(cli_env["NEWSLETTER_DB"])).close()
    result = runner.invoke(main, ["digests"], env={**cli_env, "NEWSLETTER_SMTP_RATE": "5"})
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: NEWSLETTER_SMTP_RATE is not a setting and is ignored; did you mean "
        "NEWSLETTER_RATE?\n"
    )
    assert "no digests stored yet" in result.stdout


def test_a_topic_name_longer_than_a_file_name_allows_is_one_line(tmp_path: Path) -> None:
    # The name becomes topics/NAME.xml: 500 characters was "File name too long" mid-build.
    path = write(tmp_path, f'[topics]\n"{"t" * 101}" = "RAG"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=path, environ={})
    assert "topic name 'tttttttttttttttttttt'... is longer than 100 characters" in str(caught.value)
    fits = load_settings(
        config_path=write(tmp_path, f'[topics]\n"{"t" * 100}" = "RAG"\n'), environ={}
    )
    assert fits.topics == {"t" * 100: "RAG"}
