"""The named streams: create, get, list, delete, and the clock every stream shares."""

from __future__ import annotations

import time
from collections.abc import Callable

from sortedcontainers import SortedDict

from streamstats_server.errors import StreamAlreadyExists, StreamNotFound
from streamstats_server.stream import Stream, WindowConfig


class Registry:
    """Streams by name, kept in name order so listing a page is O(log n + page).

    The clock never goes backwards (a stream's window relies on that), even when the system clock
    is stepped back: the registry hands out max(last, now).
    """

    def __init__(
        self, *, default_config: WindowConfig | None = None, clock: Callable[[], int] = time.time_ns
    ):
        self._streams: SortedDict = SortedDict()
        self._default_config = default_config or WindowConfig()
        self._clock = clock
        self._last_ns = 0

    def now_ns(self) -> int:
        """The current time in ns since the epoch, never less than a previous answer."""
        now = self._clock()
        if now > self._last_ns:
            self._last_ns = now
        return self._last_ns

    def __len__(self) -> int:
        return len(self._streams)

    def create(self, name: str, config: WindowConfig) -> Stream:
        """Create an empty stream; the same name and config again returns the existing one."""
        existing: Stream | None = self._streams.get(name)
        if existing is not None:
            if existing.config != config:
                raise StreamAlreadyExists(name, existing.config.describe(), config.describe())
            return existing
        stream = Stream(name, config, self.now_ns())
        self._streams[name] = stream
        return stream

    def get(self, name: str) -> Stream:
        stream: Stream | None = self._streams.get(name)
        if stream is None:
            raise StreamNotFound(name)
        return stream

    def get_or_create(self, name: str) -> Stream:
        """The stream to add to: an absent one is created with the default config."""
        stream: Stream | None = self._streams.get(name)
        if stream is None:
            stream = Stream(name, self._default_config, self.now_ns())
            self._streams[name] = stream
        return stream

    def delete(self, name: str) -> Stream:
        """Remove a stream and return it; its name is free again."""
        stream: Stream | None = self._streams.pop(name, None)
        if stream is None:
            raise StreamNotFound(name)
        return stream

    def page(self, prefix: str, after: str | None, limit: int) -> tuple[list[Stream], bool]:
        """Up to ``limit`` streams whose names start with ``prefix`` and sort after ``after``.

        Returns the streams and whether more follow. O(log n + limit).
        """
        start = prefix if after is None or after < prefix else after
        names = self._streams.irange(minimum=start, inclusive=(after is None or after < prefix, False))
        found: list[Stream] = []
        for name in names:
            if not name.startswith(prefix):
                return found, False
            if len(found) == limit:
                return found, True
            found.append(self._streams[name])
        return found, False
