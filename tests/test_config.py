"""Settings: defaults < file < environment < options; secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError


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
        environ={"NEWSLETTER_SECRET_KEY": "s3cret", "NEWSLETTER_SMTP_PASSWORD": "pw"}
    )
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.secret_key)
    assert "pw" not in str(settings.describe())
    assert settings.require_secret_key() == b"s3cret"
    with pytest.raises(ConfigError, match="secret"):
        load_settings(config_path=write(tmp_path, '[smtp]\npassword = "x"\n'), environ={})


def test_missing_secret_key_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY is not set"):
        load_settings(environ={}).require_secret_key()


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


def test_example_config_documents_every_setting_and_loads() -> None:
    example = Path(__file__).parent.parent / "newsletter.example.toml"
    settings = load_settings(config_path=example, environ={})
    text = example.read_text(encoding="utf-8")
    for name, _value, _help in settings.describe():
        assert name.split("_", 1)[-1] in text or name in text, name


def test_trusted_proxies_from_file_or_environment_and_checked(tmp_path: Path) -> None:
    assert load_settings(environ={}).trusted_proxies == ()
    path = write(tmp_path, '[serve]\ntrusted_proxies = ["10.0.0.0/8", "::1"]\n')
    assert load_settings(config_path=path, environ={}).trusted_proxies == ("10.0.0.0/8", "::1")
    env = {"NEWSLETTER_TRUSTED_PROXIES": "192.0.2.1, 198.51.100.0/24"}
    assert load_settings(environ=env).trusted_proxies == ("192.0.2.1", "198.51.100.0/24")
    with pytest.raises(ConfigError, match=r"trusted_proxies: 'proxy\.local'"):
        load_settings(environ={"NEWSLETTER_TRUSTED_PROXIES": "proxy.local"})
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(config_path=write(tmp_path, "[serve]\ntrusted_proxies = 7\n"), environ={})
