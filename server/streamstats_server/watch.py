"""Change signals: how a Watch learns that its stream changed, without polling and without writers
ever waiting for watchers."""

from __future__ import annotations

import asyncio
import contextlib


class ChangeSignal:
    """A stream's change counter and the one future every waiter shares.

    ``changed()`` is O(1) however many watchers wait: it resolves the shared future (if anyone is
    waiting) and forgets it; the next waiter makes a new one. Writers never block on it.
    """

    __slots__ = ("_future", "version")

    def __init__(self) -> None:
        self.version = 0  # calls that changed the stream (adds) since it was loaded or created
        self._future: asyncio.Future[None] | None = None

    def changed(self) -> None:
        self.version += 1
        self.wake()

    def wake(self) -> None:
        """Wake every waiter without counting a change (the stream was deleted, the server stops)."""
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, seen: int, within_s: float | None) -> None:
        """Return once ``version`` differs from ``seen``, the signal is woken, or ``within_s`` seconds
        pass (None: no limit)."""
        if self.version != seen:
            return
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        await wait_at_most(self._future, within_s)


async def wait_at_most(future: asyncio.Future[None], within_s: float | None) -> bool:
    """Wait until ``future`` is done (True) or ``within_s`` seconds pass (False; None: no limit).

    ``shield``: a waiter timing out or being cancelled must not cancel a future others share. And
    ``asyncio.timeout`` rather than ``wait_for``, which would start a task per wait: with 1,000
    watchers waiting several times a second that task churn was most of their cost.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            await asyncio.shield(future)
            return True
    return False
