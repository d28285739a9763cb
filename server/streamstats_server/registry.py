"""The named streams: create, get, list, delete, add, query; and the clock every stream shares.

Every change is written to storage and awaited *before* it is applied in memory and answered, while
the stream's lock is held: readers (who take the lock too) never see a change that is not durable,
and a change the log could not take changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from sortedcontainers import SortedDict

from streamstats_server.errors import LimitExceeded, StreamAlreadyExists, StreamNotFound
from streamstats_server.storage import MemoryStorage, RecoveredStream, Storage, StreamSnapshot
from streamstats_server.stream import Stream, StreamView, WindowConfig
from streamstats_server.watch import wait_at_most

log = logging.getLogger("streamstats.registry")

_T = TypeVar("_T")

# Snapshots kept per stream for watchers to share (one per distinct query).
_SHARED_SNAPSHOTS = 16

# A watcher wakes this long after its stream's oldest value is due to leave a time window, so the
# expiry has surely happened by the time it reads (the clock is in ns, asyncio's timers are not).
_EXPIRY_SLACK_NS = 1_000_000

# Batches above this many values are applied in a worker thread (under the stream's lock) so one huge
# AddNums does not stall every other call on the event loop.
OFFLOAD_VALUES = 20_000


class Registry:
    """Streams by name, kept in name order so listing a page is O(log n + page).

    Limits (0 = none): ``max_streams`` streams, and ``max_values`` live values held across all streams
    (the memory budget; values a time window has expired count until their stream is next touched,
    because until then they are in memory). A change that would pass one raises LimitExceeded before
    anything is logged or applied.

    The clock never goes backwards (a stream's window relies on that), even when the system clock
    is stepped back or a restarted server's clock is behind the stored arrival times: the registry
    hands out max(last, now).
    """

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        default_config: WindowConfig | None = None,
        clock: Callable[[], int] = time.time_ns,
        max_streams: int = 0,
        max_values: int = 0,
    ) -> None:
        self._streams: SortedDict = SortedDict()
        self._max_streams = max_streams
        self._max_values = max_values
        self.values_held = 0  # live values across all streams, as of each stream's last call
        self.values_added_total = 0  # values accepted since this process started
        self._storage: Storage = storage if storage is not None else MemoryStorage()
        self._default_config = default_config or WindowConfig()
        self._clock = clock
        self._last_ns = 0
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._checkpoint_again = False
        self._closing: asyncio.Future[None] | None = None  # done once watches must end (made on the loop)

    def now_ns(self) -> int:
        """The current time in ns since the epoch, never less than a previous answer."""
        now = self._clock()
        if now > self._last_ns:
            self._last_ns = now
        return self._last_ns

    def __len__(self) -> int:
        return len(self._streams)

    def load(self, recovered: Sequence[RecoveredStream]) -> None:
        """Install the streams recovery rebuilt (before serving)."""
        for r in recovered:
            config = WindowConfig(r.window_size, r.window_duration_ns)
            stream = Stream(
                r.name,
                config,
                r.create_time_ns,
                window=r.window,
                total_added=r.total_added,
                last_lsn=r.last_lsn,
            )
            self._streams[r.name] = stream
            self._settle(stream)
            self._last_ns = max(self._last_ns, r.create_time_ns, r.window.latest_ns)

    # --- locking -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[Stream]:
        """The named stream, locked; StreamNotFound if absent (or deleted while we waited)."""
        stream: Stream | None = self._streams.get(name)
        if stream is None:
            raise StreamNotFound(name)
        async with stream.lock:
            if stream.deleted:
                raise StreamNotFound(name)
            try:
                yield stream
            finally:
                self._settle(stream)

    def _settle(self, stream: Stream) -> None:
        """Bring values_held in step with the stream's live count (after an add or an expiry)."""
        if not stream.deleted:
            live = len(stream.window)
            self.values_held += live - stream.accounted
            stream.accounted = live

    def _admit_stream(self, name: str) -> None:
        if self._max_streams and len(self._streams) >= self._max_streams:
            raise LimitExceeded("--max-streams", self._max_streams, f"cannot create stream {name!r}")

    def _admit_values(self, name: str, config: WindowConfig, live: int, count: int) -> None:
        """LimitExceeded unless ``count`` more values fit in the budget, given that the stream holds
        ``live`` now and its window drops what they push out."""
        if not self._max_values:
            return
        grown = live + count
        if config.window_size:
            grown = min(grown, config.window_size)
        if self.values_held + grown - live > self._max_values:
            raise LimitExceeded(
                "--max-values",
                self._max_values,
                f"cannot add {count} values to {name!r} ({self.values_held} live values held)",
            )

    @asynccontextmanager
    async def _locked_or_created(self, name: str, config: WindowConfig) -> AsyncIterator[tuple[Stream, bool]]:
        """The named stream, locked, created with ``config`` if absent; and whether it was created.

        A new stream is visible in the registry at once (so a second creator waits for its lock
        instead of creating it twice) and its CREATE record is durable before anyone can use it.
        """
        while True:
            stream: Stream | None = self._streams.get(name)
            if stream is None:
                self._admit_stream(name)
                stream = Stream(name, config, self.now_ns())
                self._streams[name] = stream
                async with stream.lock:  # a fresh lock: never waits
                    try:
                        stream.last_lsn, cancelled = await _unstoppable(
                            self._storage.log_create(
                                name, config.window_size, config.window_duration_ns, stream.create_time_ns
                            )
                        )
                    except BaseException:
                        self._forget(stream)
                        raise
                    if cancelled:  # the CREATE is in the log: the stream stays, the caller goes
                        raise asyncio.CancelledError
                    try:
                        yield stream, True
                    finally:
                        self._settle(stream)
                return
            async with stream.lock:
                if not stream.deleted:
                    try:
                        yield stream, False
                    finally:
                        self._settle(stream)
                    return

    def _forget(self, stream: Stream) -> None:
        self.values_held -= stream.accounted
        stream.accounted = 0
        stream.deleted = True
        if self._streams.get(stream.name) is stream:
            del self._streams[stream.name]
        stream.signal.wake()  # its watchers end with NOT_FOUND

    # --- operations ----------------------------------------------------------------------------------

    async def create(self, name: str, config: WindowConfig) -> StreamView:
        """Create an empty stream; the same name and config again returns the existing one."""
        async with self._locked_or_created(name, config) as (stream, created):
            if not created and stream.config != config:
                raise StreamAlreadyExists(name, stream.config.describe(), config.describe())
            return stream.view(self.now_ns())

    async def get(self, name: str) -> StreamView:
        async with self._locked(name) as stream:
            return stream.view(self.now_ns())

    async def page(
        self, prefixes: Sequence[str], after: str | None, limit: int
    ) -> tuple[list[StreamView], bool]:
        """Up to ``limit`` streams whose names start with one of ``prefixes`` and sort after ``after``.

        ``prefixes`` must be disjoint and in name order (then their ranges of names are too). Returns
        the views and whether more follow. O(p log n + limit) for p prefixes.
        """
        found: list[Stream] = []
        more = False
        for prefix in prefixes:
            more = self._collect(prefix, after, limit - len(found), found)
            if more:
                break
        views = []
        for stream in found:
            async with stream.lock:
                if not stream.deleted:
                    views.append(stream.view(self.now_ns()))
        return views, more

    def _collect(self, prefix: str, after: str | None, room: int, found: list[Stream]) -> bool:
        """Append to ``found`` up to ``room`` streams starting with ``prefix`` after ``after``; return
        whether another one follows."""
        start = prefix if after is None or after < prefix else after
        names = self._streams.irange(minimum=start, inclusive=(after is None or after < prefix, False))
        for name in names:
            if not name.startswith(prefix):
                break
            if room == 0:
                return True
            found.append(self._streams[name])
            room -= 1
        return False

    async def delete(self, name: str) -> None:
        """Remove a stream; its name is free again and its data leaves the disk at the next checkpoint,
        which this schedules."""
        async with self._locked(name) as stream:
            _, cancelled = await _unstoppable(self._storage.log_delete(name))
            self._forget(stream)
        self.schedule_checkpoint(force=True)
        if cancelled:
            raise asyncio.CancelledError

    async def add(self, name: str, values: Sequence[float]) -> tuple[int, int]:
        """Append a validated batch atomically to the named stream (created if absent).

        Returns (live count, total added) after it.
        """
        big = len(values) > OFFLOAD_VALUES
        if big:  # one C-speed copy off the loop; the log encodes and the window reads it from here on
            values = await asyncio.to_thread(array, "d", values)
        elif len(values) > 1:  # the log and the window would each convert it otherwise
            values = array("d", values)
        if name not in self._streams:  # refuse before the stream is created (nothing of the call is applied)
            self._admit_values(name, self._default_config, 0, len(values))
        async with self._locked_or_created(name, self._default_config) as (stream, _):
            now = self.now_ns()
            if self._max_values:
                stream.window.expire(now)  # what has expired is no longer held: count it out first
                self._settle(stream)
                self._admit_values(name, stream.config, len(stream.window), len(values))
            result, cancelled = await _unstoppable(self._log_and_apply(stream, now, values, big))
        self.schedule_checkpoint()
        if cancelled:
            raise asyncio.CancelledError
        return result

    async def _log_and_apply(
        self, stream: Stream, now: int, values: Sequence[float], big: bool
    ) -> tuple[int, int]:
        lsn = await self._storage.log_add(stream.name, now, values)
        if big:
            result = await asyncio.to_thread(stream.add, values, now)
        else:
            result = stream.add(values, now)
        stream.last_lsn = lsn
        self.values_added_total += len(values)
        stream.signal.changed()
        return result

    async def median(self, name: str) -> tuple[float | None, int]:
        async with self._locked(name) as stream:
            return stream.median(self.now_ns())

    async def top_k(self, name: str, k: int) -> tuple[list[float], int]:
        async with self._locked(name) as stream:
            return stream.top_k(k, self.now_ns())

    async def bottom_k(self, name: str, k: int) -> tuple[list[float], int]:
        async with self._locked(name) as stream:
            return stream.bottom_k(k, self.now_ns())

    async def read(self, name: str, reader: Callable[[Stream, int], _T]) -> _T:
        """``reader(stream, now_ns)`` under the stream's lock: one consistent snapshot."""
        async with self._locked(name) as stream:
            return reader(stream, self.now_ns())

    async def watch(
        self, name: str, reader: Callable[[Stream, int], _T], min_interval_s: float, *, share: Hashable = None
    ) -> AsyncIterator[tuple[_T, int]]:
        """``reader``'s snapshot now, then again whenever the stream changed (values added, or values
        left its time window), at most once per ``min_interval_s``: (snapshot, adds folded into it).

        Nothing is queued: a consumer that is slow to take a snapshot only delays the next one,
        which is read when it is due, so it shows the latest state. Ends (returns) when the registry
        closes; StreamNotFound once the stream is deleted. Watchers passing the same ``share`` key
        (the same query) share one snapshot per state of the stream instead of each computing it.
        """
        closing = self._closing_future()
        async with self._locked(name) as stream:
            snapshot, seen = self._snapshot(stream, reader, share), stream.signal.version
            live = len(stream.window)
        yield snapshot, 0
        loop = asyncio.get_running_loop()
        while not closing.done():
            sent_at = loop.time()
            await stream.signal.wait(seen, self._until_expiry(stream))
            if closing.done():
                return
            if stream.deleted:
                raise StreamNotFound(name)
            wait = sent_at + min_interval_s - loop.time()
            # Coalesce whatever else happens meanwhile into one update (unless the server stops).
            if wait > 0 and await wait_at_most(closing, wait):
                return
            async with stream.lock:
                if stream.deleted:
                    raise StreamNotFound(name)
                snapshot = self._snapshot(stream, reader, share)
                changes, seen = stream.signal.version - seen, stream.signal.version
                was, live = live, len(stream.window)
                self._settle(stream)
            if changes or live != was:  # a timer can fire a hair before anything expired
                yield snapshot, changes

    def _snapshot(self, stream: Stream, reader: Callable[[Stream, int], _T], share: Hashable) -> _T:
        """``reader(stream, now)``, or the snapshot another watcher with the same ``share`` key took
        of this same state. Adds bump the change counter and expiry only shrinks the window, so
        (counter, live count) after expiring names the state. Call under the stream's lock."""
        now = self.now_ns()
        if share is None:
            return reader(stream, now)
        stream.window.expire(now)
        state = (stream.signal.version, len(stream.window))
        cached = stream.snapshots.get(share)
        if cached is not None and cached[0] == state:
            return cast(_T, cached[1])  # stored by this method under this query's key: a _T
        snapshot = reader(stream, now)
        if len(stream.snapshots) >= _SHARED_SNAPSHOTS:
            stream.snapshots.clear()  # many different queries: start over rather than grow
        stream.snapshots[share] = (state, snapshot)
        return snapshot

    def _until_expiry(self, stream: Stream) -> float | None:
        """Seconds until the stream's oldest live value leaves its time window; None if never."""
        due = stream.window.next_expiry_ns()
        if due is None:
            return None
        return max(0.0, (due + _EXPIRY_SLACK_NS - self.now_ns()) / 1e9)

    def _closing_future(self) -> asyncio.Future[None]:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        return self._closing

    def end_watches(self) -> None:
        """End every watch (they return normally): the server is stopping."""
        closing = self._closing_future()
        if not closing.done():
            closing.set_result(None)
        for stream in self._streams.values():
            stream.signal.wake()

    # --- checkpoints ---------------------------------------------------------------------------------

    def schedule_checkpoint(self, *, force: bool = False) -> None:
        """Start a checkpoint in the background if one is due (or ``force``); never two at once."""
        if not (force or self._storage.checkpoint_due()):
            return
        if self._checkpoint_task is not None and not self._checkpoint_task.done():
            self._checkpoint_again = True
            return
        self._checkpoint_task = asyncio.get_running_loop().create_task(self._checkpoint_loop())

    async def _checkpoint_loop(self) -> None:
        while True:
            self._checkpoint_again = False
            try:
                await self.checkpoint()
            except Exception:
                log.exception("checkpoint failed; the log keeps every change, the next one retries")
            if not self._checkpoint_again:
                return

    async def checkpoint(self) -> None:
        """Write every stream's state so the log before it can go; one stream at a time, each under its
        lock, in the storage's checkpoint thread."""
        checkpoint = self._storage.begin_checkpoint()
        if checkpoint is None:
            return
        names = list(self._streams.keys())  # the same instant as the log rotation above
        try:
            await checkpoint.open()
            for name in names:
                stream: Stream | None = self._streams.get(name)
                if stream is None:
                    continue
                async with stream.lock:
                    if not stream.deleted:
                        await checkpoint.write(_snapshot_maker(stream))
            await checkpoint.finish()
        except BaseException:
            await checkpoint.abandon()
            raise

    async def close(self) -> None:
        """Wait for a checkpoint in progress, then close storage."""
        if self._checkpoint_task is not None:
            await asyncio.gather(self._checkpoint_task, return_exceptions=True)
        await self._storage.close()


async def _unstoppable(work: Coroutine[Any, Any, _T]) -> tuple[_T, bool]:
    """Run ``work`` to the end even if the caller is cancelled meanwhile; return its result and
    whether a cancellation arrived, which the caller re-raises once its state is consistent.

    Once a change is handed to the log it may be durable, so memory must follow it: a cancelled
    call (a client's deadline, a dropped connection) must not leave the stream without a change that
    a restart would replay, nor release the stream's lock while a worker thread still applies it.
    """
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
            if task.done():
                return task.result(), True


def _snapshot_maker(stream: Stream) -> Callable[[], StreamSnapshot]:
    def make() -> StreamSnapshot:
        return StreamSnapshot(
            name=stream.name,
            window_size=stream.config.window_size,
            window_duration_ns=stream.config.window_duration_ns,
            create_time_ns=stream.create_time_ns,
            total_added=stream.total_added,
            last_lsn=stream.last_lsn,
            window=stream.window.state(),
        )

    return make
