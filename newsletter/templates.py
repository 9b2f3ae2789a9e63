"""Jinja environments over the packaged templates, which a user's folder may override."""

from __future__ import annotations

import contextlib
import hashlib
from functools import lru_cache
from pathlib import Path

import jinja2
import jinja2.bccache

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


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja's file cache of compiled templates, never a reason for a render to fail: an
    entry that cannot be read is a miss, one that cannot be written (a full or vanished
    temporary folder) is not kept."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # unreadable or damaged (pickle and marshal raise their own kinds)
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


@lru_cache(maxsize=4)
def _bytecode_cache(syntax: str) -> jinja2.BytecodeCache | None:
    """Compiled templates kept between processes (a send, build or preview otherwise compiles
    them afresh), in Jinja's private per-user folder under the temporary directory. Jinja
    recompiles an entry whose source changed, but keys entries by template file only, so the
    file names carry a hash of the `syntax` they were compiled with. No usable folder: no cache.
    """
    tag = hashlib.sha256(syntax.encode()).hexdigest()[:12]
    try:
        return _BytecodeCache(pattern=f"__newsletter_{tag}_%s.cache")
    except (OSError, RuntimeError):  # no safe folder of our own: compile every time
        return None


def _syntax(env: jinja2.Environment) -> str:
    """What the code compiled from a template depends on besides its source."""
    return repr(
        (
            jinja2.__version__,
            env.block_start_string,
            env.block_end_string,
            env.variable_start_string,
            env.variable_end_string,
            env.comment_start_string,
            env.comment_end_string,
            env.line_statement_prefix,
            env.line_comment_prefix,
            env.trim_blocks,
            env.lstrip_blocks,
            env.newline_sequence,
            env.keep_trailing_newline,
            env.optimized,
            sorted(env.extensions),
        )
    )


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
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(search),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.bytecode_cache = _bytecode_cache(_syntax(env))
    return env


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
