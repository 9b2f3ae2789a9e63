"""Settings: defaults < file < environment < options; secrets only from the environment."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError

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
        ({"NEWSLETTER_SMTP_TLS": "maybe"}, "starttls, tls or none"),
        ({"NEWSLETTER_SMTP_PORT": "many"}, "smtp_port: bad value"),
        ({"NEWSLETTER_CONCURRENCY": "0"}, "at least 1"),
        ({"NEWSLETTER_FROM": "A <a@x>\r\nBcc: victim@x"}, "line breaks"),
        ({"NEWSLETTER_UNSUBSCRIBE_MAILTO": "u@x\nBcc: victim@x"}, "line breaks"),
    ],
)
def test_bad_values_are_config_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_settings(environ=env)


def test_unknown_settings_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting \[smtp\] hots"):
        load_settings(config_path=write(tmp_path, '[smtp]\nhots = "x"\n'), environ={})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(config_path=write(tmp_path, "db = \n"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(config_path=tmp_path / "missing.toml", environ={})


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
