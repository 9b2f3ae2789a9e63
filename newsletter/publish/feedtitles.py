"""Titles with markup-like text (`<think>`, `<script>`) in RSS and Atom, as every reader sees them.

Paper titles often hold text that looks like markup (`<think>` tokens in AI paper titles). Readers
disagree on whether a feed title is text or HTML: some render it, some strip it, some show it,
and the W3C Feed Validation Service warns (ContainsHTML, ContainsUndeclaredHTML). So:

- Atom: a title with `<`, `>` or `&` is declared `type="html"` and holds the escaped text, which
  every conforming reader displays literally.
- RSS 2.0 has no way to declare a title's type: a tag-like `<name>`/`</name>` becomes
  `‹name›`/`‹/name›` (single angle quotation marks) and an entity-like `&name;` becomes
  `＆name;`, so no reader can take the title for markup and nothing is lost from view.

Applied as feedgen extensions, so feedgen's own serialisation stays untouched.
"""

from __future__ import annotations

import html
import re
from typing import Any

_MARKUP = re.compile(r"[<>&]")
_TAG = re.compile(r"<(/?[A-Za-z!?][^<>]*)>")
_ENTITY = re.compile(r"&(?=#?\w+;)")


def rss_title(text: str) -> str:
    """`text` with tag-like and entity-like sequences made unmistakably plain for RSS readers."""
    return _ENTITY.sub("＆", _TAG.sub(r"‹\1›", text))


def _atom_titles(element: Any, *names: str) -> None:
    for name in names:
        # feedgen writes Atom's namespace as a plain xmlns attribute: the elements have no prefix.
        for node in element.findall(name):
            if node.get("type") is None and node.text and _MARKUP.search(node.text):
                node.set("type", "html")
                node.text = html.escape(node.text, quote=False)


def _rss_titles(element: Any) -> None:
    for node in element.findall("title"):
        if node.text:
            node.text = rss_title(node.text)


class TitleFeed:
    """feedgen feed extension: the feed's own title and subtitle (`fg.register_extension`)."""

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, feed: Any) -> Any:
        _atom_titles(feed, "title", "subtitle")
        return feed

    def extend_rss(self, rss: Any) -> Any:
        for channel in rss.findall("channel"):
            _rss_titles(channel)
        return rss


class TitleEntry:
    """feedgen entry extension: each entry's title."""

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, entry: Any) -> Any:
        _atom_titles(entry, "title")
        return entry

    def extend_rss(self, item: Any) -> Any:
        _rss_titles(item)
        return item
