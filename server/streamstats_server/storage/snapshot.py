"""Checkpoint files: every stream's full state at once, so the log before them can be deleted.

    file   = magic "SSSNAP01", then entries, the last one an END entry
    entry  = body_crc u32, body_len u64, body
    STREAM body: kind u8 = 1, name_len u16, name, window_size u64, window_duration_ns u64,
                 create_time_ns i64, total_added u64, last_lsn u64, count u64, runs u64,
                 values (count float64, oldest first), sorted values (count float64, ascending),
                 run arrival times (runs int64), run lengths (runs int64)
    END body:    kind u8 = 2, start_lsn u64, streams u64

A checkpoint is written to a temporary name, fsynced, renamed into place, and the folder fsynced;
only then are the log segments it covers deleted. Values are written straight from the stream's
arrays (no per-value Python work), so writing and loading run at disk speed.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from streamstats_server.structures import WindowState

MAGIC = b"SSSNAP01"
SNAPSHOT_PREFIX = "checkpoint-"
SNAPSHOT_SUFFIX = ".snap"
_ENTRY = struct.Struct("<IQ")
_STREAM = struct.Struct("<QQqQQQQ")
_END = struct.Struct("<QQ")
_KIND_STREAM = 1
_KIND_END = 2
_LITTLE = sys.byteorder == "little"


def snapshot_name(start_lsn: int) -> str:
    return f"{SNAPSHOT_PREFIX}{start_lsn:020d}{SNAPSHOT_SUFFIX}"


def snapshot_start_lsn(filename: str) -> int | None:
    if not (filename.startswith(SNAPSHOT_PREFIX) and filename.endswith(SNAPSHOT_SUFFIX)):
        return None
    digits = filename[len(SNAPSHOT_PREFIX) : -len(SNAPSHOT_SUFFIX)]
    return int(digits) if digits.isdigit() else None


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """One stream as a checkpoint keeps it."""

    name: str
    window_size: int
    window_duration_ns: int
    create_time_ns: int
    total_added: int
    last_lsn: int
    window: WindowState


class SnapshotCorrupt(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def _raw(values: array[float] | array[int]) -> memoryview | bytes:
    if _LITTLE:
        return memoryview(values).cast("B")
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


class SnapshotWriter:
    """Writes entries to an open file (in the storage thread)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._streams = 0
        file.write(MAGIC)

    def _entry(self, parts: list[bytes | memoryview]) -> None:
        crc = 0
        length = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
            length += len(part)
        self._file.write(_ENTRY.pack(crc, length))
        for part in parts:
            self._file.write(part)

    def write_stream(self, stream: StreamSnapshot) -> None:
        window = stream.window
        count = sum(len(chunk) for chunk in window.values)
        name = stream.name.encode("ascii")
        head = bytes([_KIND_STREAM]) + struct.pack("<H", len(name)) + name
        head += _STREAM.pack(
            stream.window_size,
            stream.window_duration_ns,
            stream.create_time_ns,
            stream.total_added,
            stream.last_lsn,
            count,
            len(window.run_times),
        )
        parts: list[bytes | memoryview] = [head]
        parts += [_raw(chunk) for chunk in window.values]
        parts += [_raw(chunk) for chunk in window.sorted_values]
        parts += [_raw(window.run_times), _raw(window.run_lengths)]
        self._entry(parts)
        self._streams += 1

    def finish(self, start_lsn: int) -> None:
        self._entry([bytes([_KIND_END]) + _END.pack(start_lsn, self._streams)])


def _floats(view: memoryview) -> array[float]:
    values = array("d")
    values.frombytes(view)
    if not _LITTLE:
        values.byteswap()
    return values


def _ints(view: memoryview) -> array[int]:
    values = array("q")
    values.frombytes(view)
    if not _LITTLE:
        values.byteswap()
    return values


def read_snapshot(data: bytes, *, salvage: bool = False) -> tuple[int | None, list[StreamSnapshot]]:
    """Parse a whole checkpoint; returns (start_lsn, streams). Raises SnapshotCorrupt.

    With ``salvage``, damage is not an error: the streams before it are returned (start_lsn is None
    when the END entry was not reached).
    """
    streams: list[StreamSnapshot] = []
    try:
        if not data.startswith(MAGIC):
            raise SnapshotCorrupt(0, "not a streamstats checkpoint (bad magic)")
        for offset, body in _entries(memoryview(data), len(MAGIC)):
            try:
                kind = body[0]
                if kind == _KIND_END:
                    start_lsn, count = _END.unpack(body[1:])
                    if count != len(streams):
                        raise SnapshotCorrupt(offset, f"END says {count} streams, found {len(streams)}")
                    if offset + _ENTRY.size + len(body) != len(data):
                        raise SnapshotCorrupt(offset, "data after the END entry")
                    return start_lsn, streams
                if kind != _KIND_STREAM:
                    raise SnapshotCorrupt(offset, f"unknown entry kind {kind}")
                streams.append(_stream(body))
            except (struct.error, ValueError, UnicodeDecodeError, IndexError) as exc:
                raise SnapshotCorrupt(offset, f"undecodable entry ({exc})") from exc
        raise SnapshotCorrupt(len(data), "no END entry (incomplete checkpoint)")
    except SnapshotCorrupt:
        if salvage:
            return None, streams
        raise


def _entries(view: memoryview, offset: int) -> Iterator[tuple[int, memoryview]]:
    while offset < len(view):
        if len(view) - offset < _ENTRY.size:
            raise SnapshotCorrupt(offset, "entry header cut short")
        crc, length = _ENTRY.unpack_from(view, offset)
        start = offset + _ENTRY.size
        if start + length > len(view):
            raise SnapshotCorrupt(offset, "entry cut short")
        body = view[start : start + length]
        if zlib.crc32(body) != crc:
            raise SnapshotCorrupt(offset, "entry checksum mismatch")
        yield offset, body
        offset = start + length


def _stream(body: memoryview) -> StreamSnapshot:
    (name_len,) = struct.unpack_from("<H", body, 1)
    name = bytes(body[3 : 3 + name_len]).decode("ascii")
    at = 3 + name_len
    window_size, duration, create_time, total_added, last_lsn, count, runs = _STREAM.unpack_from(body, at)
    at += _STREAM.size
    expected = at + 16 * count + 16 * runs
    if expected != len(body):
        raise ValueError(f"entry is {len(body)} bytes, its counts say {expected}")
    values = _floats(body[at : at + 8 * count])
    at += 8 * count
    sorted_values = _floats(body[at : at + 8 * count])
    at += 8 * count
    run_times = _ints(body[at : at + 8 * runs])
    at += 8 * runs
    run_lengths = _ints(body[at : at + 8 * runs])
    window = WindowState(
        values=[values], sorted_values=[sorted_values], run_times=run_times, run_lengths=run_lengths
    )
    return StreamSnapshot(name, window_size, duration, create_time, total_added, last_lsn, window)
