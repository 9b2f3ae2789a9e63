"""One check's verdict, and the doctor's report as lines or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    """What one check found: its status, what it saw, and what to do about it (one line each)."""

    name: str
    status: Status
    detail: str
    advice: str = ""

    @classmethod
    def ok(cls, name: str, detail: str) -> Check:
        return cls(name, "ok", detail)

    @classmethod
    def warn(cls, name: str, detail: str, advice: str) -> Check:
        return cls(name, "warn", detail, advice)

    @classmethod
    def fail(cls, name: str, detail: str, advice: str) -> Check:
        return cls(name, "fail", detail, advice)


def failed(checks: list[Check]) -> bool:
    """Whether any check failed (the command then exits 1)."""
    return any(c.status == "fail" for c in checks)


def as_lines(checks: list[Check]) -> list[str]:
    """`status  name  detail`, and the advice indented below it when there is some."""
    lines = []
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name:<9} {check.detail}")
        if check.advice:
            lines.append(f"{'':16}-> {check.advice}")
    return lines


def as_json(checks: list[Check]) -> str:
    return json.dumps({"ok": not failed(checks), "checks": [asdict(c) for c in checks]}, indent=2)
