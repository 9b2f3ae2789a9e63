"""Spacing sends: at most `rate` messages a second across all of a run's workers."""

from __future__ import annotations

import asyncio
import contextlib


class Pacer:
    """Spaces sends `1/rate` seconds apart across all workers (rate 0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0

    async def wait(self, stopping: asyncio.Event) -> None:
        """Until this send's slot comes, or `stopping` is set (an interrupt must not wait out
        a slow rate)."""
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), slot - now)
