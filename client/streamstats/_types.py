"""Plain Python values returned by the SDK, so callers never handle protobuf messages."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

__all__ = ["AddResult", "Stream", "StreamConfig"]


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
