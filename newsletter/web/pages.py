"""Rendering the service's HTML pages, and the Korean and English words for every problem."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..audience.subscribers import (
    MAX_KEYWORD_CHARS,
    MAX_KEYWORDS,
    MAX_PAPERS,
    MAX_VOTES,
    MIN_KEYWORD_CHARS,
)
from ..errors import TemplateError
from ..templates import get_template, template_environment
from .security import PAGE_HEADERS, CsrfGuard


@dataclass(frozen=True, slots=True)
class Message:
    """One sentence in both languages the pages speak."""

    ko: str
    en: str


# One entry per `SubscriberError.code` that a form can produce (see subscribers.ERROR_CODES).
PROBLEMS: Mapping[str, Message] = {
    "email_invalid": Message(
        "올바른 이메일 주소를 입력해 주세요.", "Please enter a valid e-mail address."
    ),
    "email_encoded": Message(
        "이메일 주소에는 인코딩된 단어(=?...?=)를 쓸 수 없습니다.",
        "An e-mail address cannot hold an encoded word (=?...?=).",
    ),
    "name_too_long": Message("이름이 너무 깁니다.", "The name is too long."),
    "newline": Message("줄바꿈은 넣을 수 없습니다.", "Line breaks are not allowed here."),
    "control_character": Message(
        "제어 문자는 넣을 수 없습니다.", "Control characters are not allowed here."
    ),
    "invisible_character": Message(
        "보이지 않는 문자(폭 없는 공백 등)는 키워드에 넣을 수 없습니다.",
        "Keywords cannot hold invisible characters (zero-width spaces and the like).",
    ),
    "keyword_encoded": Message(
        "키워드에는 인코딩된 단어(=?...?=)를 쓸 수 없습니다.",
        "A keyword cannot hold an encoded word (=?...?=).",
    ),
    "keyword_too_short": Message(
        f"키워드는 {MIN_KEYWORD_CHARS}자 이상이어야 합니다.",
        f"Each keyword needs at least {MIN_KEYWORD_CHARS} characters.",
    ),
    "keyword_too_long": Message(
        f"키워드는 {MAX_KEYWORD_CHARS}자 이하여야 합니다.",
        f"Each keyword may have at most {MAX_KEYWORD_CHARS} characters.",
    ),
    "too_many_keywords": Message(
        f"키워드는 최대 {MAX_KEYWORDS}개까지 입력할 수 있습니다.",
        f"At most {MAX_KEYWORDS} keywords.",
    ),
    "min_votes_invalid": Message(
        f"최소 추천 수는 0에서 {MAX_VOTES:,} 사이의 정수여야 합니다.",
        f"Minimum votes must be a whole number from 0 to {MAX_VOTES:,}.",
    ),
    "max_papers_invalid": Message(
        f"최대 논문 수는 1에서 {MAX_PAPERS:,} 사이의 정수이거나 비워 두어야 합니다.",
        f"Maximum papers must be a whole number from 1 to {MAX_PAPERS:,}, or empty.",
    ),
    "cadence_invalid": Message(
        "받는 주기는 매일 또는 매주 중에서 골라 주세요.", "Choose daily or weekly emails."
    ),
    "erase_unconfirmed": Message(
        "지우려면 “이해했습니다”에 표시해 주세요.", "Tick “I understand” to erase."
    ),
    "invalid": Message("입력을 확인해 주세요.", "Please check this field."),
}


def problem(code: str) -> Message:
    """The message for an error code (a generic one for codes a form never shows)."""
    return PROBLEMS.get(code, PROBLEMS["invalid"])


class Pages:
    """Renders `templates/web/*.html` (a user template folder may override them) as responses."""

    def __init__(
        self,
        *,
        csrf: CsrfGuard,
        site_title: str,
        template_dir: Path | None = None,
        root: str = "",
    ) -> None:
        self.csrf = csrf
        self.site_title = site_title
        self.template_dir = template_dir
        self.root = root  # base_url's path: every link on a page starts with it (BasePath)
        self.assets = {name: _asset(name, template_dir) for name in ("web.css", "preferences.js")}

    def text(self, name: str, **context: Any) -> str:
        """A template rendered to a string (fragments and e-mail bodies)."""
        try:
            return get_template(name, user_dir=self.template_dir).render(
                site_title=self.site_title, root=self.root, **context
            )
        except jinja2.TemplateError as exc:
            if isinstance(exc, jinja2.TemplateNotFound | jinja2.TemplateSyntaxError):
                raise TemplateError(f"template {name}: {exc}") from None
            raise TemplateError(f"template {name} does not render: {exc}") from None

    def render(self, request: Request, name: str, *, status: int = 200, **context: Any) -> Response:
        """A full page with a fresh cross-site token for any form on it."""
        field, cookie = self.csrf.issue(request)
        body = self.text(
            name,
            csrf_field=field,
            css=self.root + self.assets["web.css"].url,
            js=self.root + self.assets["preferences.js"].url,
            **context,
        )
        response = HTMLResponse(body, status_code=status, headers=dict(PAGE_HEADERS))
        self.csrf.set_cookie(response, cookie)
        return response


@dataclass(frozen=True, slots=True)
class Asset:
    """A stylesheet or script the pages load from this site, versioned by its hash."""

    name: str
    body: bytes
    digest: str
    content_type: str

    @property
    def url(self) -> str:
        # The hash in the path lets browsers keep the file forever and still see a new version.
        return f"/-/{self.digest}/{self.name}"


def _asset(name: str, template_dir: Path | None) -> Asset:
    env = template_environment(template_dir)
    assert env.loader is not None
    try:
        source, _, _ = env.loader.get_source(env, f"web/{name}")
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template web/{name} not found") from None
    body = source.encode()
    kind = "text/css; charset=utf-8" if name.endswith(".css") else "text/javascript; charset=utf-8"
    return Asset(
        name=name, body=body, digest=hashlib.sha256(body).hexdigest()[:16], content_type=kind
    )
