"""Jinja environments over the packaged templates, which a user's folder may override."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from .errors import TemplateError

_HERE = Path(__file__).resolve().parent


def packaged_template_dir() -> Path:
    """The default templates: inside the installed wheel, or the checkout's top-level folder."""
    for candidate in (_HERE / "templates", _HERE.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise TemplateError("the packaged templates are missing; reinstall newsletter")


def _autoescape(name: str | None) -> bool:
    # Everything but plain-text templates is markup: .html, .mjml, .xml.
    return name is not None and not name.endswith((".txt", ".text"))


@lru_cache(maxsize=16)
def template_environment(user_dir: Path | None = None) -> jinja2.Environment:
    """An environment looking in `user_dir` first, then the packaged templates.

    Autoescape is on for every template except `.txt`; undefined names raise.
    """
    search: list[jinja2.BaseLoader] = []
    if user_dir is not None:
        if not user_dir.is_dir():
            raise TemplateError(f"{user_dir}: template folder not found")
        search.append(jinja2.FileSystemLoader(str(user_dir)))
    search.append(jinja2.FileSystemLoader(str(packaged_template_dir())))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(search),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def get_template(name: str, *, user_dir: Path | None = None) -> jinja2.Template:
    """A template by name (e.g. "email/digest.mjml"), as a TemplateError if missing or broken."""
    try:
        return template_environment(user_dir).get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name} not found") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{exc.filename or name}:{exc.lineno}: template syntax error: {exc.message}"
        ) from None
