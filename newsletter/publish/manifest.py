"""Reading one section of the build manifest, for the steps that keep their own records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StepOutput:
    """What an incremental build step produced: files to write, files still current, records."""

    files: dict[str, bytes] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)
    records: dict[str, Any] = field(default_factory=dict)

    def section(self, fingerprint: str) -> dict[str, Any]:
        """The step's manifest section, records sorted so a rebuild writes a fresh build's bytes."""
        return {"fingerprint": fingerprint, "records": dict(sorted(self.records.items()))}


def read_section(path: Path, section: str, *, fingerprint: str) -> dict[str, Any]:
    """`section` of the manifest at `path` when written under `fingerprint`, else {}.

    A section is `{"fingerprint": ..., "records": {...}}`; a missing, unreadable or stale one
    is empty, so everything it covered is rendered again.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    part = data.get(section) if isinstance(data, dict) else None
    if not isinstance(part, dict) or part.get("fingerprint") != fingerprint:
        return {}
    records = part.get("records")
    return records if isinstance(records, dict) else {}


def file_size(path: Path) -> int | None:
    """The size of a file, or None when it is missing."""
    try:
        return path.stat().st_size
    except OSError:
        return None
