"""Feed budgets: as many of the newest entries as fit a count and a size in bytes (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K")


def fit_entries(
    entries: Sequence[T],
    render: Callable[[Sequence[T]], Mapping[K, bytes]],
    *,
    max_entries: int,
    max_bytes: int,
) -> tuple[int, Mapping[K, bytes]]:
    """How many leading `entries` to publish, and their renderings, so each file fits `max_bytes`.

    Starts from `max_entries` and, while a rendering is too big, retries with fewer entries in
    proportion to the excess (entries are similar in size, so one or two retries suffice);
    the newest entry alone is always tried before none.
    """
    count = min(len(entries), max_entries)
    while True:
        files = render(entries[:count])
        largest = max((len(data) for data in files.values()), default=0)
        if largest <= max_bytes or count == 0:
            return count, files
        count = max(min(count - 1, count * max_bytes // largest), min(count - 1, 1))
