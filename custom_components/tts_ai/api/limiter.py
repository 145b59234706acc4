"""A concurrency limit that can change while requests are in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ConcurrencyLimiter:
    """Like ``asyncio.Semaphore``, but :meth:`resize` changes the limit.

    The client starts with the Pro plan's limit and raises it once responses
    show an Enterprise account; a plain semaphore cannot be resized. Release
    is synchronous so a cancelled request can never leak its slot.
    """

    def __init__(self, limit: int) -> None:
        """Allow ``limit`` holders at a time."""
        self._limit = max(1, limit)
        self._active = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def limit(self) -> int:
        """How many holders are allowed at once."""
        return self._limit

    @property
    def active(self) -> int:
        """How many holders there are now."""
        return self._active

    def resize(self, limit: int) -> None:
        """Change the limit; waiters re-check if it grew."""
        self._limit = max(1, limit)
        self._wake_waiters()

    @asynccontextmanager
    async def slot(self, deadline_at: float | None = None) -> AsyncIterator[None]:
        """Hold one slot for the duration of the ``async with`` block.

        ``deadline_at`` (a loop time) bounds the wait: TimeoutError when no
        slot is free by then, so a queued request keeps its own deadline.
        """
        while self._active >= self._limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline_at):
                    await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        """Let every waiter re-check for a free slot."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
