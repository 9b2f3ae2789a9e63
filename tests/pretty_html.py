"""Golden HTML pages stored pretty-printed, so a failing comparison shows a readable diff.

The golden file is the page's SHA-256 on its first line, then one tag or text run per line,
indented by depth. The pretty form is compared first (what changed, readably); the hash then
pins the exact bytes (whitespace, attribute quoting, character references).
"""

from __future__ import annotations

import hashlib
import html
import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import html5lib

VOID = frozenset(  # elements without an end tag
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    | {"track", "wbr"}
)
RAW_TEXT = frozenset({"style", "script", "pre", "textarea"})  # whitespace is content here
INDENT = "  "


def pretty_html(page: str) -> str:
    """One line per tag and per run of text (a leaf element and its text share one), indented."""
    lines: list[str] = []
    doctype = re.match(r"\s*(<!doctype[^>]*>)", page, re.IGNORECASE)
    if doctype:  # html5lib's ElementTree drops it
        lines.append(doctype[1])
    root = html5lib.parse(page, treebuilder="etree", namespaceHTMLElements=False)
    _element(root, 0, lines)
    return "\n".join(lines) + "\n"


def _text(text: str | None, depth: int, lines: list[str], *, raw: bool = False) -> None:
    if not text:
        return
    if raw:  # kept as written (no escaping in <style>), only re-indented
        runs = textwrap.dedent(text).strip("\n").splitlines()
    else:
        runs = [html.escape(" ".join(text.split()), quote=False)]
    lines.extend((INDENT * depth + run).rstrip() for run in runs if run.strip())


def _element(element: ET.Element, depth: int, lines: list[str]) -> None:
    pad = INDENT * depth
    if not isinstance(element.tag, str):  # a comment
        lines.append(f"{pad}<!-- {' '.join((element.text or '').split())} -->")
        return
    attributes = "".join(
        f' {name}="{html.escape(value, quote=False).replace(chr(34), "&quot;")}"'
        for name, value in element.attrib.items()
    )
    start = f"{pad}<{element.tag}{attributes}>"
    if element.tag not in VOID | RAW_TEXT and len(element) == 0:  # a leaf fits on one line
        lines.append(
            f"{start}{html.escape(' '.join((element.text or '').split()), quote=False)}"
            f"</{element.tag}>"
        )
        return
    lines.append(start)
    _text(element.text, depth + 1, lines, raw=element.tag in RAW_TEXT)
    for child in element:
        _element(child, depth + 1, lines)
        _text(child.tail, depth + 1, lines)
    if element.tag not in VOID:
        lines.append(f"{pad}</{element.tag}>")


def golden_html(page: bytes) -> str:
    """What a golden file holds for `page`: its hash line, then its pretty form."""
    digest = hashlib.sha256(page).hexdigest()
    return f"<!-- sha256 of the page as built: {digest} -->\n" + pretty_html(page.decode("utf-8"))


def assert_matches_golden(page: bytes, golden: Path, *, update: bool) -> None:
    """Compare `page` with its golden file (rewriting the file first when `update`)."""
    expected = golden_html(page)
    if update:
        golden.write_text(expected, encoding="utf-8")
    stored_hash, _, stored_pretty = golden.read_text(encoding="utf-8").partition("\n")
    got_hash, _, got_pretty = expected.partition("\n")
    assert got_pretty == stored_pretty  # a readable diff of what changed
    assert got_hash == stored_hash, (
        f"{golden.name}: the same tags and text but other bytes (whitespace, quoting or "
        "character references); run pytest --update-golden if that is intended"
    )
