"""ISO weeks of digests: a week's name and days, and its papers once each (pure).

A week is named as ISO 8601 does (`2025-W09`, Monday to Sunday). A paper listed on several days
of a week is one paper there, with the data of the newest day that lists it (its latest votes),
and a week's papers are in the one `paper_order`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..config import WEEKDAYS
from ..model import Digest, Paper
from .match import by_votes

_WEEK = re.compile(r"(\d{4})-W(\d{2})")


def week_name(date: dt.date) -> str:
    """The ISO week holding `date`, e.g. `2025-W09`."""
    year, week, _ = date.isocalendar()
    return f"{year}-W{week:02d}"


def week_monday(name: str) -> dt.date:
    """The Monday of an ISO week named like `2025-W09`; ValueError saying why it is not one."""
    found = _WEEK.fullmatch(name.strip())
    if found is None:
        raise ValueError(f"{name!r} is not an ISO week such as 2025-W09")
    try:
        monday = dt.date.fromisocalendar(int(found[1]), int(found[2]), 1)
    except ValueError:
        raise ValueError(f"{name!r}: year {found[1]} has no week {int(found[2])}") from None
    if monday > dt.date.max - dt.timedelta(days=6):  # its Sunday is past the last date
        raise ValueError(f"{name!r}: the week ends after the year 9999")
    return monday


def week_days(monday: dt.date) -> tuple[dt.date, ...]:
    """Monday to Sunday of the week starting `monday`."""
    return tuple(monday + dt.timedelta(days=n) for n in range(7))


def last_full_week(today: dt.date) -> str:
    """The newest week that has ended by `today`: the one before today's week."""
    return week_name(today - dt.timedelta(days=today.weekday() + 1))


@dataclass(frozen=True, slots=True)
class Listed:
    """A paper with the newest day of the week that lists it (where its data comes from)."""

    paper: Paper
    date: dt.date


@dataclass(frozen=True, slots=True)
class Week:
    """One ISO week of digests: its name, the days that have a digest, its papers once each."""

    name: str
    monday: dt.date
    dates: tuple[dt.date, ...]  # days with a digest, oldest first
    listed: tuple[Listed, ...]  # in paper_order

    def digest(self) -> Digest:
        """The week as one digest dated its Monday: what a weekly email selects from."""
        return Digest(
            date=self.monday,
            papers=tuple(item.paper for item in self.listed),
            source=f"<week {self.name}>",
        )

    def top(self, count: int) -> tuple[Listed, ...]:
        """The week's `count` papers with most votes."""
        return self.listed[: max(count, 0)]


def weeks_of(digests: Iterable[Digest]) -> list[Week]:
    """The weeks `digests` fall in (newest first), each from the digests given for it."""
    by_week: dict[str, list[Digest]] = {}
    for digest in digests:
        by_week.setdefault(week_name(digest.date), []).append(digest)
    weeks = []
    for name, days in by_week.items():
        newest: dict[str, Listed] = {}
        for digest in sorted(days, key=lambda d: d.date):
            for paper in digest.papers:
                newest[paper.arxiv_id] = Listed(paper, digest.date)
        order = {p.arxiv_id: n for n, p in enumerate(by_votes(i.paper for i in newest.values()))}
        listed = sorted(newest.values(), key=lambda item: order[item.paper.arxiv_id])
        weeks.append(
            Week(
                name=name,
                monday=week_monday(name),
                dates=tuple(sorted({d.date for d in days})),
                listed=tuple(listed),
            )
        )
    return sorted(weeks, key=lambda w: w.monday, reverse=True)


def weekly_due(today: dt.date, *, weekly_day: str) -> str | None:
    """The week whose edition is due `today`: the last full one, from `weekly_day` to the end
    of the week, so a run that failed or was missed on the day catches up on a later one."""
    return last_full_week(today) if today.weekday() >= WEEKDAYS.index(weekly_day) else None
