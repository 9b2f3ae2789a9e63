"""The golden-HTML helper: a readable pretty form, and the exact bytes pinned by a hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from .pretty_html import assert_matches_golden, pretty_html

PAGE = (
    '<!doctype html><html lang="ko"><head><meta charset="utf-8"><title>A &amp; B</title>'
    "<style>\n  ol > li {\n    margin: 0;\n  }\n</style></head>"
    '<body><!-- why --><p class="x">one <a href="?a=1&amp;b=&quot;2&quot;">link</a> two'
    "<p>implied end<br>after</body></html>"
)


def test_pretty_form_by_hand() -> None:
    assert pretty_html(PAGE) == (
        "<!doctype html>\n"
        '<html lang="ko">\n'
        "  <head>\n"
        '    <meta charset="utf-8">\n'
        "    <title>A &amp; B</title>\n"
        "    <style>\n"
        "      ol > li {\n"
        "        margin: 0;\n"
        "      }\n"
        "    </style>\n"
        "  </head>\n"
        "  <body>\n"
        "    <!-- why -->\n"
        '    <p class="x">\n'
        "      one\n"
        '      <a href="?a=1&amp;b=&quot;2&quot;">link</a>\n'
        "      two\n"
        "    </p>\n"
        "    <p>\n"
        "      implied end\n"
        "      <br>\n"
        "      after\n"
        "    </p>\n"
        "  </body>\n"
        "</html>\n"
    )


def test_golden_round_trip_and_what_each_check_catches(tmp_path: Path) -> None:
    golden = tmp_path / "page.html"
    page = PAGE.encode()
    assert_matches_golden(page, golden, update=True)
    assert_matches_golden(page, golden, update=False)
    # A changed word fails on the pretty form, where the diff is readable.
    with pytest.raises(AssertionError) as changed:
        assert_matches_golden(page.replace(b"two", b"three"), golden, update=False)
    assert "three" in str(changed.value)
    # Other bytes with the same tags and text (whitespace, quoting) fail on the hash.
    for variant in (page.replace(b"<p>", b"<p>\n"), page.replace(b'lang="ko"', b"lang=ko")):
        assert pretty_html(variant.decode()) == pretty_html(PAGE)
        with pytest.raises(AssertionError, match="other bytes"):
            assert_matches_golden(variant, golden, update=False)
