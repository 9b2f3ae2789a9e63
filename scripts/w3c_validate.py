"""Validate every RSS/Atom file of a built site with a local W3C feedvalidator checkout (level AA).

The validator is not a dependency and is never vendored: check it out yourself and install its
requirements (lxml, html5lib, rdflib), then run

    python scripts/w3c_validate.py ~/src/feedvalidator site https://papers.example.org/

It prints each file's errors and warnings and exits 1 when there is any.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(checkout: Path, site: Path, base_url: str) -> int:
    sys.path.insert(0, str(checkout / "src"))
    import feedvalidator  # type: ignore[import-not-found]
    from feedvalidator import compatibility
    from feedvalidator.formatter.text_plain import Formatter  # type: ignore[import-not-found]

    found = 0
    for path in sorted([*site.rglob("*.xml"), *site.rglob("*.atom")]):
        name = path.relative_to(site).as_posix()
        if name == "sitemap.xml":  # not a feed
            continue
        try:
            result = feedvalidator.validateString(
                path.read_bytes(), firstOccurrenceOnly=1, base=base_url.rstrip("/") + "/" + name
            )
            events = result["loggedEvents"]
        except feedvalidator.logging.ValidationFailure as failure:
            events = [failure.event]
        lines = Formatter(compatibility.AA(events))
        print(f"{name}: {len(lines)} errors and warnings")
        for line in lines:
            print(f"    {line}")
        found += len(lines)
    return 1 if found else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
