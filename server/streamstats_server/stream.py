"""One named stream: its config, its counters and its window of live values."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from streamstats_server.structures import SlidingWindow


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """How much of a stream is kept; 0 means no limit for either field."""

    window_size: int = 0
    window_duration_ns: int = 0

    def describe(self) -> str:
        duration = f"{self.window_duration_ns / 1e9:g}s" if self.window_duration_ns else "none"
        size = str(self.window_size) if self.window_size else "none"
        return f"(window_size={size}, window_duration={duration})"


class Stream:
    """A named stream. Every method takes the current time so expiry is applied before answering.

    Methods are synchronous and must run under ``lock``: the service holds it for each call so a call
    that runs in a worker thread (a huge batch) is still atomic to everyone else.
    """

    __slots__ = ("config", "create_time_ns", "lock", "name", "total_added", "window")

    def __init__(self, name: str, config: WindowConfig, create_time_ns: int) -> None:
        self.name = name
        self.config = config
        self.create_time_ns = create_time_ns
        self.total_added = 0
        self.window = SlidingWindow(max_count=config.window_size, max_age_ns=config.window_duration_ns)
        self.lock = asyncio.Lock()

    def add(self, values: Sequence[float], now_ns: int) -> tuple[int, int]:
        """Append values (already validated) in order; return (live count, total added). O(b log n)."""
        self.window.add_many(values, now_ns)
        self.total_added += len(values)
        return len(self.window), self.total_added

    def count(self, now_ns: int) -> int:
        """Live values now. O(1) plus amortised expiry."""
        self.window.expire(now_ns)
        return len(self.window)

    def median(self, now_ns: int) -> float | None:
        """Median of the live values, None when there are none. O(1) plus amortised expiry."""
        self.window.expire(now_ns)
        return self.window.median()

    def top_k(self, k: int, now_ns: int) -> list[float]:
        """The k largest live values, largest first. O(k + log n) plus amortised expiry."""
        self.window.expire(now_ns)
        return self.window.top_k(k)

    def bottom_k(self, k: int, now_ns: int) -> list[float]:
        """The k smallest live values, smallest first. O(k + log n) plus amortised expiry."""
        self.window.expire(now_ns)
        return self.window.bottom_k(k)
