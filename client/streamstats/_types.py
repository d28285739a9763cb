"""Plain Python values returned by the SDK, so callers never handle protobuf messages."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

__all__ = ["AddResult", "Stats", "Stream", "StreamConfig", "WatchUpdate"]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """How much of a stream the server keeps; a value is live while it satisfies both limits.

    Attributes:
        window_size: Keep only the most recent ``window_size`` values; 0 means no count limit.
        window_duration: Keep only values that arrived less than this long ago (server clock);
            ``None`` means no time limit.
    """

    window_size: int = 0
    window_duration: datetime.timedelta | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """A named stream as the server last described it.

    Attributes:
        name: The stream's name.
        config: The window it keeps.
        count: Live values (inside the window) when the server answered.
        total_added: Values ever accepted, including those that have left the window.
        create_time: When the stream was created, server clock, timezone-aware UTC.
    """

    name: str
    config: StreamConfig
    count: int
    total_added: int
    create_time: datetime.datetime


@dataclass(frozen=True, slots=True)
class AddResult:
    """A stream's counts right after an add.

    Attributes:
        count: Live values in the stream.
        total_added: Values ever accepted into the stream.
    """

    count: int
    total_added: int


@dataclass(frozen=True, slots=True)
class Stats:
    """A stream's statistics read at one instant (:meth:`streamstats.Client.stats`).

    With no live values, ``count`` is 0, the statistics are ``None`` and the collections empty.

    Attributes:
        count: Live values.
        total_added: Values ever accepted into the stream.
        min, max: The smallest and largest live values.
        mean: The mean of the live values.
        stddev: Their population standard deviation (numpy's ``std`` with ddof=0).
        median: The median (the mean of the middle two for an even count).
        quantiles: Each requested q -> its exact quantile, in the order requested.
        top: The k largest live values, largest first (k as requested; fewer if fewer are live).
        bottom: The k smallest live values, smallest first.
        time: The server time of the snapshot, timezone-aware UTC.
    """

    count: int
    total_added: int
    min: float | None
    max: float | None
    mean: float | None
    stddev: float | None
    median: float | None
    quantiles: dict[float, float]
    top: list[float]
    bottom: list[float]
    time: datetime.datetime


@dataclass(frozen=True, slots=True)
class WatchUpdate:
    """One update of :meth:`streamstats.Client.watch`.

    Attributes:
        stats: The stream's statistics now.
        changes: Calls that added values since the previous update, all folded into this one (0 in
            the first update, and when the update was sent because values left a time window).
    """

    stats: Stats
    changes: int
