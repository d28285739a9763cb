"""The write-ahead log: numbered segment files of records, appended with group commit.

Callers append framed records in LSN order on the event loop and await the returned future; one
flush at a time runs in the storage thread and takes every record queued since the previous flush
(one write and, under ``always``, one fsync shared by all of them: group commit).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

from streamstats_server.storage.fs import FileSystem

log = logging.getLogger("streamstats.storage")

SEGMENT_PREFIX = "wal-"
SEGMENT_SUFFIX = ".log"


class FsyncPolicy(StrEnum):
    """When an acknowledged write reaches the disk."""

    ALWAYS = "always"  # fsync before the acknowledgement: survives a power cut
    INTERVAL = "interval"  # written to the OS before the ack, fsynced every second
    NEVER = "never"  # written to the OS before the ack; the OS decides when to flush


def segment_name(first_lsn: int) -> str:
    return f"{SEGMENT_PREFIX}{first_lsn:020d}{SEGMENT_SUFFIX}"


def segment_first_lsn(filename: str) -> int | None:
    """The first LSN a segment file name carries, or None for other files."""
    if not (filename.startswith(SEGMENT_PREFIX) and filename.endswith(SEGMENT_SUFFIX)):
        return None
    digits = filename[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
    return int(digits) if digits.isdigit() else None


class StorageError(Exception):
    """The log could not be written; nothing more will be acknowledged."""


@dataclass(slots=True)
class _Rotate:
    first_lsn: int


class LogWriter:
    """Appends to the newest segment. All file work runs on ``executor`` (one thread, so in order)."""

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        policy: FsyncPolicy,
        executor: Executor,
        next_lsn: int,
        *,
        interval_seconds: float = 1.0,
        observe_fsync: Callable[[float], None] | None = None,
    ) -> None:
        self._fs = fs
        self._observe_fsync = observe_fsync
        self._dir = directory
        self._policy = policy
        self._executor = executor
        self._next_lsn = next_lsn
        self._interval = interval_seconds
        self._file: BinaryIO | None = None
        self._pending: list[bytes | _Rotate] = [_Rotate(next_lsn)]
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._syncer: asyncio.Task[None] | None = None
        self._dirty = False  # written but not fsynced (interval policy)
        self._failure: BaseException | None = None
        self.bytes_written = 0

    def take_lsn(self, encode: Callable[[int], bytes]) -> tuple[int, bytes]:
        """The next LSN and ``encode(lsn)``; the LSN is used up only if encoding succeeds, so a
        record that cannot be encoded never leaves a gap in the log."""
        lsn = self._next_lsn
        record = encode(lsn)
        self._next_lsn += 1
        return lsn, record

    def start(self) -> None:
        if self._policy is FsyncPolicy.INTERVAL:
            self._syncer = asyncio.get_running_loop().create_task(self._sync_every_interval())
        self._kick()

    def append(self, record: bytes) -> asyncio.Future[None]:
        """Queue a framed record (its LSN from take_lsn, in order); the future resolves once durable."""
        if self._failure is not None:
            raise StorageError(f"storage failed earlier: {self._failure}") from self._failure
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(record)
        self._waiters.append(future)
        self.bytes_written += len(record)
        self._kick()
        return future

    def rotate(self) -> int:
        """Send every record from now on to a new segment; return that segment's first LSN."""
        self._pending.append(_Rotate(self._next_lsn))
        self._kick()
        return self._next_lsn

    async def flush(self) -> None:
        """Wait until everything queued so far is written (and synced under ``always``)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def close(self) -> None:
        await self.flush()
        if self._syncer is not None:
            self._syncer.cancel()
        if self._file is not None:
            file, self._file = self._file, None
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_file, file)

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            waiters, self._waiters = self._waiters, []
            try:
                await loop.run_in_executor(self._executor, self._write, batch)
            except BaseException as exc:
                self._failure = exc
                log.error("storage failed, refusing further writes: %s", exc)
                error = StorageError(f"storage failed: {exc}")
                for waiter in waiters + self._waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                self._pending, self._waiters = [], []
                return
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _write(self, batch: list[bytes | _Rotate]) -> None:
        """Runs in the storage thread."""
        chunk: list[bytes] = []
        for item in batch:
            if isinstance(item, _Rotate):
                self._write_out(chunk)
                chunk = []
                self._open_segment(item.first_lsn)
            else:
                chunk.append(item)
        self._write_out(chunk)

    def _write_out(self, chunk: list[bytes]) -> None:
        if not chunk:
            return
        assert self._file is not None
        self._file.write(b"".join(chunk) if len(chunk) > 1 else chunk[0])
        self._file.flush()  # in the OS now: a process crash loses nothing from here on
        if self._policy is FsyncPolicy.ALWAYS:
            self._sync(self._file)
        else:
            self._dirty = True

    def _sync(self, file: BinaryIO) -> None:
        """fsync ``file``, timing it for the metrics."""
        began = time.perf_counter()
        self._fs.sync(file)
        if self._observe_fsync is not None:
            self._observe_fsync(time.perf_counter() - began)

    def _open_segment(self, first_lsn: int) -> None:
        if self._file is not None:
            if self._policy is not FsyncPolicy.NEVER:
                self._sync(self._file)
            self._file.close()
        self._file = self._fs.open_append(os.path.join(self._dir, segment_name(first_lsn)))
        if self._policy is not FsyncPolicy.NEVER:
            self._fs.sync_dir(self._dir)  # the new segment's name must survive a power cut too

    def _close_file(self, file: BinaryIO) -> None:
        if self._policy is not FsyncPolicy.NEVER:
            self._sync(file)
        file.close()

    def _sync_now(self) -> None:
        if self._dirty and self._file is not None:
            self._dirty = False
            self._sync(self._file)

    async def _sync_every_interval(self) -> None:
        loop = asyncio.get_running_loop()
        while self._failure is None:
            await asyncio.sleep(self._interval)
            if self._dirty:
                try:
                    await loop.run_in_executor(self._executor, self._sync_now)
                except Exception as exc:
                    self._failure = exc
                    log.error("storage failed (fsync), refusing further writes: %s", exc)
