"""Durable storage: recovery at start, the log while serving, checkpoints in the background.

Layout of a data dir:
    LOCK                          held (flock) by the one server using the folder
    wal-<first lsn>.log           log segments, numbered by the first LSN they hold
    checkpoint-<start lsn>.snap   every stream's state; covers every record before <start lsn>

Recovery loads the newest checkpoint, then replays the records from its start LSN on, skipping for
each stream the records its checkpoint entry already holds (a stream is written into a checkpoint
after the checkpoint's start, so it may already contain some later records).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from streamstats_server.storage.fs import FileSystem, OsFileSystem
from streamstats_server.storage.records import (
    AddRecord,
    CreateRecord,
    DeleteRecord,
    Record,
    encode_add,
    encode_create,
    encode_delete,
    scan,
)
from streamstats_server.storage.snapshot import (
    SnapshotCorrupt,
    SnapshotWriter,
    StreamSnapshot,
    read_snapshot,
    snapshot_name,
    snapshot_start_lsn,
)
from streamstats_server.storage.wal import FsyncPolicy, LogWriter, segment_first_lsn
from streamstats_server.structures import SlidingWindow

log = logging.getLogger("streamstats.storage")

MIB = 1024 * 1024
_TMP_SUFFIX = ".tmp"
# The log between checkpoints may grow to 1/4 of the last checkpoint: a restart then replays at most
# about half as many values as the checkpoint loads (log records are 8 bytes a value, checkpoints 16),
# while checkpoint writing stays proportional to what is logged (4 bytes of checkpoint per log byte).
CHECKPOINT_LOG_RATIO = 4


class RecoveryError(Exception):
    """The data dir cannot be loaded without losing acknowledged data; names the file and offset."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StorageConfig:
    data_dir: str
    fsync: FsyncPolicy = FsyncPolicy.ALWAYS
    # A checkpoint is due once the log written since the last one exceeds both this and a quarter of
    # the last checkpoint's size (see CHECKPOINT_LOG_RATIO).
    checkpoint_bytes: int = 32 * MIB
    repair: bool = False
    interval_seconds: float = 1.0
    # Called (in the storage thread) with the seconds each log fsync took: the metrics' histogram.
    observe_fsync: Callable[[float], None] | None = field(default=None, compare=False)


@dataclass(slots=True)
class RecoveredStream:
    """A stream as recovery rebuilt it."""

    name: str
    window_size: int
    window_duration_ns: int
    create_time_ns: int
    total_added: int
    last_lsn: int
    window: SlidingWindow = field(repr=False)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    streams: int
    values: int
    records_replayed: int
    deletes_replayed: int
    checkpoint: str | None
    warnings: tuple[str, ...]


class Checkpoint:
    """One checkpoint being written: open, write streams one at a time, finish."""

    def __init__(self, storage: DurableStorage, start_lsn: int) -> None:
        self._storage = storage
        self.start_lsn = start_lsn
        self._path = os.path.join(storage.directory, snapshot_name(start_lsn))
        self._tmp = self._path + _TMP_SUFFIX
        self._file: BinaryIO | None = None
        self._writer: SnapshotWriter | None = None

    async def _run(self, fn: Callable[..., None], *args: object) -> None:
        await asyncio.get_running_loop().run_in_executor(self._storage.checkpoint_executor, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self._file = self._storage.fs.open_new(self._tmp)
        self._writer = SnapshotWriter(self._file)

    async def write(self, make: Callable[[], StreamSnapshot]) -> None:
        """Write one stream, built by ``make`` in the checkpoint thread; the caller holds that stream's
        lock so its arrays stay still meanwhile."""
        await self._run(self._write, make)

    def _write(self, make: Callable[[], StreamSnapshot]) -> None:
        assert self._writer is not None
        self._writer.write_stream(make())

    async def finish(self) -> None:
        await self._run(self._finish)

    def _finish(self) -> None:
        assert self._writer is not None and self._file is not None
        fs, directory = self._storage.fs, self._storage.directory
        self._writer.finish(self.start_lsn)
        fs.sync(self._file)
        self._file.close()
        fs.rename(self._tmp, self._path)
        fs.sync_dir(directory)  # the rename is atomic but only durable once the folder is synced
        size = fs.size(self._path)
        removed = self._storage.remove_covered(self.start_lsn)
        self._storage.last_checkpoint_bytes = size
        log.info("checkpoint %s written (%d bytes), %d old files removed", self._path, size, removed)

    async def abandon(self) -> None:
        await self._run(self._abandon)

    def _abandon(self) -> None:
        if self._file is not None:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._storage.fs.remove(self._tmp)


class DurableStorage:
    """Everything accepted is in the log before it is acknowledged (per the fsync policy)."""

    def __init__(self, config: StorageConfig, fs: FileSystem | None = None) -> None:
        self.config = config
        self.fs: FileSystem = fs or OsFileSystem()
        self.directory = os.path.abspath(config.data_dir)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamstats-log")
        self.checkpoint_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="streamstats-checkpoint"
        )
        self._writer: LogWriter | None = None
        self._next_lsn = 1
        self._lock_fd: int | None = None
        self._bytes_at_checkpoint = 0
        self.last_checkpoint_bytes = 0

    # --- start-up --------------------------------------------------------------------------------

    def recover(self) -> tuple[list[RecoveredStream], RecoveryReport]:
        """Load the data dir (blocking; before serving). Raises RecoveryError on corruption."""
        self.fs.makedirs(self.directory)
        self._take_lock()
        warnings: list[str] = []
        names = sorted(self.fs.listdir(self.directory))
        for name in names:
            if name.endswith(_TMP_SUFFIX):  # a checkpoint that never finished
                self.fs.remove(os.path.join(self.directory, name))
        snapshots = sorted((lsn, n) for n in names if (lsn := snapshot_start_lsn(n)) is not None)
        segments = sorted((lsn, n) for n in names if (lsn := segment_first_lsn(n)) is not None)

        streams: dict[str, RecoveredStream] = {}
        start_lsn = 1
        checkpoint_name: str | None = None
        if snapshots:
            # Only the newest counts: a crash between writing it and deleting what it covers can leave
            # older ones behind, and everything they hold is in it.
            start_lsn, checkpoint_name = snapshots[-1]
            streams = {s.name: s for s in self._load_checkpoint(start_lsn, checkpoint_name, warnings)}
        last_lsn = start_lsn - 1
        replayed = deletes = 0
        for index, (first_lsn, segment) in enumerate(segments):
            records, repaired = self._read_segment(segment, index == len(segments) - 1, warnings)
            for record in records:
                if record.lsn < start_lsn:
                    continue  # covered by the checkpoint (a segment whose removal a crash interrupted)
                if record.lsn != last_lsn + 1:
                    raise self._corrupt(
                        segment, 0, f"log sequence gap: expected record {last_lsn + 1}, found {record.lsn}"
                    )
                last_lsn = record.lsn
                replayed += _apply(streams, record)
                deletes += isinstance(record, DeleteRecord)
            if records and records[0].lsn != first_lsn and records[0].lsn >= start_lsn:
                raise self._corrupt(
                    segment, 0, f"first record is {records[0].lsn}, file name says {first_lsn}"
                )
            if repaired:
                for _, later in segments[index + 1 :]:
                    message = f"--repair: removed {later}, which follows the damaged part of {segment}"
                    log.warning(message)
                    warnings.append(message)
                    self.fs.remove(os.path.join(self.directory, later))
                break
        self._next_lsn = max([last_lsn, start_lsn - 1, *(s.last_lsn for s in streams.values())]) + 1
        values = sum(len(s.window) for s in streams.values())
        report = RecoveryReport(len(streams), values, replayed, deletes, checkpoint_name, tuple(warnings))
        return sorted(streams.values(), key=lambda s: s.name), report

    def _take_lock(self) -> None:
        fd = os.open(os.path.join(self.directory, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RecoveryError(
                f"{self.directory} is in use by another streamstats-server (LOCK is held)"
            ) from None
        self._lock_fd = fd

    def _corrupt(self, filename: str, offset: int, reason: str) -> RecoveryError:
        path = os.path.join(self.directory, filename)
        return RecoveryError(
            f"{path}: corrupt at offset {offset}: {reason}. Refusing to start so no acknowledged data is "
            "dropped silently; --repair drops the damaged part and everything after it in that file"
        )

    def _load_checkpoint(self, lsn: int, name: str, warnings: list[str]) -> list[RecoveredStream]:
        data = self.fs.read(os.path.join(self.directory, name))
        try:
            start_lsn, entries = read_snapshot(data)
        except SnapshotCorrupt as exc:
            if not self.config.repair:
                raise self._corrupt(name, exc.offset, exc.reason) from exc
            start_lsn, entries = read_snapshot(data, salvage=True)
            message = (
                f"{os.path.join(self.directory, name)}: corrupt at offset {exc.offset} ({exc.reason}); "
                f"--repair: kept the {len(entries)} streams before the damage, dropped the rest"
            )
            log.warning(message)
            warnings.append(message)
        if start_lsn is not None and start_lsn != lsn:
            raise self._corrupt(name, 0, f"holds start LSN {start_lsn}, file name says {lsn}")
        self.last_checkpoint_bytes = len(data)
        return [
            RecoveredStream(
                name=e.name,
                window_size=e.window_size,
                window_duration_ns=e.window_duration_ns,
                create_time_ns=e.create_time_ns,
                total_added=e.total_added,
                last_lsn=e.last_lsn,
                window=SlidingWindow.from_state(
                    e.window, max_count=e.window_size, max_age_ns=e.window_duration_ns
                ),
            )
            for e in entries
        ]

    def _read_segment(self, segment: str, last: bool, warnings: list[str]) -> tuple[list[Record], bool]:
        """The segment's good records, and whether --repair cut off a damaged part."""
        path = os.path.join(self.directory, segment)
        data = self.fs.read(path)
        records, good_end, problem = scan(data)
        if problem is None:
            return records, False
        repaired = False
        if last and problem.tail:
            message = (
                f"{path}: torn write at offset {problem.offset} ({problem.reason}, "
                f"{len(data) - good_end} bytes): a write cut short by a crash, never acknowledged; dropped"
            )
        elif self.config.repair:
            repaired = True
            message = (
                f"{path}: corrupt at offset {problem.offset} ({problem.reason}); --repair: dropped "
                f"{len(data) - good_end} bytes from there to the end of the file"
            )
        else:
            raise self._corrupt(segment, problem.offset, problem.reason)
        log.warning(message)
        warnings.append(message)
        self.fs.truncate(path, good_end)
        return records, repaired

    # --- serving ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Open a fresh log segment; call on the running loop after recover()."""
        self._writer = LogWriter(
            self.fs,
            self.directory,
            self.config.fsync,
            self.executor,
            self._next_lsn,
            interval_seconds=self.config.interval_seconds,
            observe_fsync=self.config.observe_fsync,
        )
        self._writer.start()

    @property
    def _log(self) -> LogWriter:
        if self._writer is None:
            raise RuntimeError("storage not started")
        return self._writer

    async def log_create(
        self, name: str, window_size: int, window_duration_ns: int, create_time_ns: int
    ) -> int:
        lsn, record = self._log.take_lsn(
            lambda lsn: encode_create(lsn, name, window_size, window_duration_ns, create_time_ns)
        )
        await self._log.append(record)
        return lsn

    async def log_add(self, name: str, arrival_ns: int, values: Sequence[float]) -> int:
        lsn, record = self._log.take_lsn(lambda lsn: encode_add(lsn, name, arrival_ns, values))
        await self._log.append(record)
        return lsn

    async def log_delete(self, name: str) -> int:
        lsn, record = self._log.take_lsn(lambda lsn: encode_delete(lsn, name))
        await self._log.append(record)
        return lsn

    def checkpoint_due(self) -> bool:
        written = self._log.bytes_written - self._bytes_at_checkpoint
        return written > max(self.config.checkpoint_bytes, self.last_checkpoint_bytes // CHECKPOINT_LOG_RATIO)

    def begin_checkpoint(self) -> Checkpoint | None:
        """Start a checkpoint at the current end of the log (records from now on go to a new segment)."""
        self._bytes_at_checkpoint = self._log.bytes_written
        return Checkpoint(self, self._log.rotate())

    def remove_covered(self, start_lsn: int) -> int:
        """Delete the checkpoints and segments a checkpoint at ``start_lsn`` makes redundant, oldest first."""
        removed = 0
        names = self.fs.listdir(self.directory)
        old = sorted(
            [(lsn, n) for n in names if (lsn := snapshot_start_lsn(n)) is not None and lsn < start_lsn]
            + [(lsn, n) for n in names if (lsn := segment_first_lsn(n)) is not None and lsn < start_lsn]
        )
        for _, name in old:
            self.fs.remove(os.path.join(self.directory, name))
            removed += 1
        if removed:
            self.fs.sync_dir(self.directory)
        return removed

    async def close(self) -> None:
        """Flush and close the log, then release the data dir, even if the flush fails."""
        try:
            if self._writer is not None:
                await self._writer.close()
        finally:
            self.executor.shutdown(wait=True)
            self.checkpoint_executor.shutdown(wait=True)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def _apply(streams: dict[str, RecoveredStream], record: Record) -> int:
    """Replay one record onto the recovered streams; returns 1 if it changed anything."""
    stream = streams.get(record.name)
    if stream is not None and record.lsn <= stream.last_lsn:
        return 0  # the checkpoint entry of this stream already holds it
    if isinstance(record, CreateRecord):
        streams[record.name] = RecoveredStream(
            name=record.name,
            window_size=record.window_size,
            window_duration_ns=record.window_duration_ns,
            create_time_ns=record.create_time_ns,
            total_added=0,
            last_lsn=record.lsn,
            window=SlidingWindow(max_count=record.window_size, max_age_ns=record.window_duration_ns),
        )
    elif isinstance(record, AddRecord):
        if stream is None:
            # Its CREATE is covered by the checkpoint but the stream was deleted before the checkpoint
            # reached it; the DELETE record follows. Rebuild it just enough for that.
            stream = RecoveredStream(record.name, 0, 0, record.arrival_ns, 0, 0, SlidingWindow())
            streams[record.name] = stream
        stream.window.add_many(record.values, record.arrival_ns)
        stream.total_added += len(record.values)
        stream.last_lsn = record.lsn
    elif isinstance(record, DeleteRecord):
        streams.pop(record.name, None)
    return 1
