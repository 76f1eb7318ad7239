"""Per-provider limits of a run: jobs in flight and create calls per minute.

Its own module so that the job's life (`_jobs`) and the planner (`runner`) both use it
without importing each other.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["Limiter"]

SECONDS_PER_MINUTE = 60.0


class Limiter:
    """A provider's cap on jobs in flight and on create calls per minute."""

    def __init__(self, cap: int, rate_per_min: float | None = None) -> None:
        self.cap = cap
        self.rate_per_min = rate_per_min
        self.slots = asyncio.Semaphore(cap)
        self._next_create = 0.0
        self._lock = asyncio.Lock()

    async def pace(self) -> None:
        """Wait until the next create call is allowed."""
        if not self.rate_per_min:
            return
        async with self._lock:
            now = time.monotonic()
            if self._next_create > now:
                await asyncio.sleep(self._next_create - now)
            self._next_create = max(now, self._next_create) + SECONDS_PER_MINUTE / self.rate_per_min
