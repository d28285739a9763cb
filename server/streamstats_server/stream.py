"""One named stream: its config, its counters and its window of live values."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from streamstats_server.structures import SlidingWindow
from streamstats_server.watch import ChangeSignal


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """How much of a stream is kept; 0 means no limit for either field."""

    window_size: int = 0
    window_duration_ns: int = 0

    def describe(self) -> str:
        duration = f"{self.window_duration_ns / 1e9:g}s" if self.window_duration_ns else "none"
        size = str(self.window_size) if self.window_size else "none"
        return f"(window_size={size}, window_duration={duration})"


@dataclass(frozen=True, slots=True)
class StreamView:
    """A stream's description at one instant, safe to hand out after the lock is released."""

    name: str
    config: WindowConfig
    count: int
    total_added: int
    create_time_ns: int


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Every statistic GetStats and Watch report, read at one instant. With no live values
    min/max/mean/stddev/median are None and the lists are empty."""

    count: int
    total_added: int
    min: float | None
    max: float | None
    mean: float | None
    stddev: float | None
    median: float | None
    quantiles: list[tuple[float, float]]
    top: list[float]
    bottom: list[float]


class Stream:
    """A named stream. Every query method takes the current time so expiry is applied first.

    Methods are synchronous and must run under ``lock``, which the registry holds for each call
    (including across the wait for the log), so each call is atomic to everyone else. ``deleted`` is
    set, under the lock, once the stream has left the registry: a call that waited for the lock
    checks it before touching the stream.
    """

    __slots__ = (
        "accounted",
        "config",
        "create_time_ns",
        "deleted",
        "last_lsn",
        "lock",
        "name",
        "signal",
        "snapshots",
        "total_added",
        "window",
    )

    def __init__(
        self,
        name: str,
        config: WindowConfig,
        create_time_ns: int,
        *,
        window: SlidingWindow | None = None,
        total_added: int = 0,
        last_lsn: int = 0,
    ) -> None:
        self.name = name
        self.config = config
        self.create_time_ns = create_time_ns
        self.total_added = total_added
        self.last_lsn = last_lsn  # the newest log record applied to this stream
        self.window = window or SlidingWindow(
            max_count=config.window_size, max_age_ns=config.window_duration_ns
        )
        self.lock = asyncio.Lock()
        self.deleted = False
        self.accounted = 0  # live values counted in the registry's values_held (it keeps this in step)
        self.signal = ChangeSignal()  # wakes this stream's watchers
        self.snapshots: dict[Hashable, tuple[tuple[int, int], object]] = {}  # shared by watchers (Registry)

    def add(self, values: Sequence[float], now_ns: int) -> tuple[int, int]:
        """Append values (already validated) in order; return (live count, total added). O(b log n)."""
        self.window.add_many(values, now_ns)
        self.total_added += len(values)
        return len(self.window), self.total_added

    def view(self, now_ns: int) -> StreamView:
        """Describe the stream now. O(1) plus amortised expiry."""
        self.window.expire(now_ns)
        return StreamView(self.name, self.config, len(self.window), self.total_added, self.create_time_ns)

    def median(self, now_ns: int) -> tuple[float | None, int]:
        """(median, live count); the median is None when nothing is live. O(1) plus amortised expiry."""
        self.window.expire(now_ns)
        return self.window.median(), len(self.window)

    def top_k(self, k: int, now_ns: int) -> tuple[list[float], int]:
        """(the k largest live values, largest first; live count). O(k + log n) plus amortised expiry."""
        self.window.expire(now_ns)
        return self.window.top_k(k), len(self.window)

    def bottom_k(self, k: int, now_ns: int) -> tuple[list[float], int]:
        """(the k smallest live values, smallest first; live count). O(k + log n) plus amortised expiry."""
        self.window.expire(now_ns)
        return self.window.bottom_k(k), len(self.window)

    def stats(self, now_ns: int, quantiles: Sequence[float], method: str, k: int) -> StreamStats:
        """Every statistic at one instant, after expiring once: quantiles exactly as
        ``numpy.quantile(values, q, method=method)`` (linear, lower, higher or nearest), top/bottom
        ``k`` (k=0: none). Nothing is computed if nothing is live.

        O(len(quantiles) log n + k) plus amortised expiry; the mean and stddev are O(1) after
        converting the live values added since the previous read (see ``SlidingWindow.mean``). Raises
        ValueError for a q outside [0, 1] or an unknown method (the caller validates them first).
        """
        window = self.window
        window.expire(now_ns)
        count = len(window)
        values = window.quantiles(quantiles, method)
        if values is None:
            return StreamStats(0, self.total_added, None, None, None, None, None, [], [], [])
        return StreamStats(
            count=count,
            total_added=self.total_added,
            min=window.min(),
            max=window.max(),
            mean=window.mean(),
            stddev=window.stddev(),
            median=window.median(),
            quantiles=list(zip(quantiles, values, strict=True)),
            top=window.top_k(k) if k else [],
            bottom=window.bottom_k(k) if k else [],
        )
