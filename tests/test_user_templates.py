"""User templates that compute with a reader's values, or style cards by place: every email
still reads exactly like the whole render of that reader's own (`compose_naive`).

The packaged templates only print per-reader values; a user's may compare the count with a
number, count keywords, cut the address at its @, or number cards by their place. Each edit
below is one such template; the readers differ in address, count of papers and keywords.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.mail.compose import Composer, compose_naive
from newsletter.model import Digest, Filters, Subscriber
from tests.test_compose_per_paper import (
    ARXIV,
    SETTINGS,
    clock,
    digests,  # noqa: F401  (a fixture)
    reading,
)

PACKAGED = Path(__file__).parent.parent / "templates" / "email"

# (file, text in the packaged template, what the user's copy has instead)
EDITS = {
    "count compared": (
        "digest.mjml",
        "조건에 맞는 논문은 <b>{{ total }}편</b>입니다.",
        "조건에 맞는 논문은 <b>{% if total == 1 %}단 한 편{% else %}{{ total }}편{% endif %}</b>"
        "입니다.{% if total > 10 %} 많네요!{% endif %}",
    ),
    "keywords counted": (
        "digest.mjml",
        '키워드 {{ card.reasons | join(", ") }}',
        '키워드 {{ card.reasons | length }}개: {{ card.reasons | join(", ") }}',
    ),
    "filters counted": (
        "digest.mjml",
        '받는 조건: {{ filters | join(" · ") }}',
        '받는 조건({{ filters | length }}): {{ filters | join(" · ") }}',
    ),
    "address cut": (
        "digest.txt",
        "{{ greeting }}\n",
        "{{ greeting }} ({{ email.split('@')[0] }})\n",
    ),
    "cards by place": ("digest.mjml", "{{ card.number }}.", "{{ loop.index }}."),
    "first card apart": (
        "digest.mjml",
        '<h2 style="margin:0 0 6px;',
        '<h2 style="{% if loop.first %}color:#c00;{% endif %}margin:0 0 6px;',
    ),
}

READERS = [
    Subscriber(id=1, email="solo@example.com", filters=Filters(keywords=("LLM",), max_papers=1)),
    Subscriber(
        id=2, email="a.b@example.org", name="Ann", filters=Filters(keywords=("LLM", "model"))
    ),
    Subscriber(id=3, email="every@example.net", filters=Filters()),
]


def user_templates(root: Path, name: str) -> Path:
    """A copy of the packaged templates with the edit `name`; the folder to point settings at."""
    folder = root / "email"
    folder.mkdir()
    for source in PACKAGED.glob("digest.*"):
        (folder / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    file, old, new = EDITS[name]
    text = (folder / file).read_text(encoding="utf-8")
    assert old in text, f"the packaged {file} changed: update this test's edit"
    (folder / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    return root


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_template_that_computes_with_a_readers_values(
    digests: dict[str, Digest],  # noqa: F811
    tmp_path: Path,
    name: str,
) -> None:
    settings = SETTINGS.replace(template_dir=user_templates(tmp_path, name))
    digest = digests["2024-12-13"]
    composer = Composer(settings=settings, digest=digest, clock=clock)
    for reader in READERS:
        fast = composer.compose(reader)
        slow = compose_naive(settings=settings, digest=digest, subscriber=reader, clock=clock)
        assert fast is not None and slow is not None
        assert reading(fast.data) == reading(slow.data), (name, reader.email)


def test_near_the_size_budget_a_whole_render_counts_the_readers_own_values(
    digests: dict[str, Digest],  # noqa: F811
    tmp_path: Path,
) -> None:
    # Rendered whole per selection (the first card styled apart); "를" selects all 27 papers
    # of the day, whose cards pass the HTML budget near 20: the reader's own links and
    # address, not the shorter markers, decide whether the 20th card fits.
    settings = SETTINGS.replace(template_dir=user_templates(tmp_path, "first card apart"))
    digest = digests["2024-12-13"]
    composer = Composer(settings=settings, digest=digest, clock=clock)
    assert not composer.per_paper
    for reader in (
        Subscriber(id=1, email="a@example.com", filters=Filters(keywords=("를",))),
        Subscriber(id=2, email="x" * 60 + "@example.com", filters=Filters(keywords=("를",))),
    ):
        fast = composer.compose(reader)
        slow = compose_naive(settings=settings, digest=digest, subscriber=reader, clock=clock)
        assert fast is not None and slow is not None
        assert reading(fast.data) == reading(slow.data), reader.email
        shown = len(set(ARXIV.findall(reading(fast.data)["bodies"][1])))
        rendered = composer.rendered_for(reader)
        assert rendered is not None and rendered.shown == shown < 20
