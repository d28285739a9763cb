"""The log's record format: every accepted change, framed with a length and two checksums.

    header (21 bytes, little-endian):
        header_crc  u32   crc32 of the 17 header bytes after it
        length      u32   payload bytes
        lsn         u64   log sequence number: 1, 2, 3, ... across the whole log
        type        u8    CREATE, ADD or DELETE
        payload_crc u32   crc32 of the payload
    payload:
        CREATE  name_len u16, name, window_size u64, window_duration_ns u64, create_time_ns i64
        ADD     name_len u16, name, arrival_ns i64, then the values as float64
        DELETE  name_len u16, name

The header has its own checksum so a corrupt length is never trusted (LevelDB, Kafka and etcd frame
their logs the same way). ``scan`` reads records until the first bad one and says whether what is
wrong looks like a torn tail (a write cut short by a crash) or like corruption.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct("<IIQBI")
_HEADER_TAIL = struct.Struct("<IQBI")  # what header_crc covers
_NAME = struct.Struct("<H")
_CREATE = struct.Struct("<QQq")
_ADD = struct.Struct("<q")
_LITTLE = sys.byteorder == "little"


class RecordType(IntEnum):
    CREATE = 1
    ADD = 2
    DELETE = 3


@dataclass(frozen=True, slots=True)
class CreateRecord:
    lsn: int
    name: str
    window_size: int
    window_duration_ns: int
    create_time_ns: int


@dataclass(frozen=True, slots=True)
class AddRecord:
    lsn: int
    name: str
    arrival_ns: int
    values: array[float]


@dataclass(frozen=True, slots=True)
class DeleteRecord:
    lsn: int
    name: str


Record = CreateRecord | AddRecord | DeleteRecord


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad record of a file: where, what, and whether it looks like a torn tail."""

    offset: int
    reason: str
    tail: bool


def _frame(lsn: int, kind: RecordType, payload: bytes) -> bytes:
    tail = _HEADER_TAIL.pack(len(payload), lsn, kind, zlib.crc32(payload))
    return struct.pack("<I", zlib.crc32(tail)) + tail + payload


def _name(name: str) -> bytes:
    raw = name.encode("ascii")
    return _NAME.pack(len(raw)) + raw


def encode_create(
    lsn: int, name: str, window_size: int, window_duration_ns: int, create_time_ns: int
) -> bytes:
    payload = _name(name) + _CREATE.pack(window_size, window_duration_ns, create_time_ns)
    return _frame(lsn, RecordType.CREATE, payload)


def encode_add(lsn: int, name: str, arrival_ns: int, values: Sequence[float]) -> bytes:
    """One copy of the values in all (the final join); pass an ``array('d')`` to skip converting."""
    if isinstance(values, array) and values.typecode == "d" and _LITTLE:
        packed = values
    else:
        packed = array("d", values)
        if not _LITTLE:
            packed.byteswap()
    head = _name(name) + _ADD.pack(arrival_ns)
    body = memoryview(packed).cast("B")
    tail = _HEADER_TAIL.pack(len(head) + len(body), lsn, RecordType.ADD, zlib.crc32(body, zlib.crc32(head)))
    return b"".join((struct.pack("<I", zlib.crc32(tail)), tail, head, body))


def encode_delete(lsn: int, name: str) -> bytes:
    return _frame(lsn, RecordType.DELETE, _name(name))


def _decode(lsn: int, kind: int, payload: memoryview) -> Record:
    (name_len,) = _NAME.unpack_from(payload)
    name = bytes(payload[2 : 2 + name_len]).decode("ascii")
    rest = payload[2 + name_len :]
    if kind == RecordType.CREATE:
        window_size, window_duration_ns, create_time_ns = _CREATE.unpack(rest)
        return CreateRecord(lsn, name, window_size, window_duration_ns, create_time_ns)
    if kind == RecordType.ADD:
        (arrival_ns,) = _ADD.unpack_from(rest)
        values = array("d")
        values.frombytes(rest[_ADD.size :])
        if not _LITTLE:
            values.byteswap()
        return AddRecord(lsn, name, arrival_ns, values)
    if kind == RecordType.DELETE:
        if len(rest):
            raise ValueError("trailing bytes")
        return DeleteRecord(lsn, name)
    raise ValueError(f"unknown record type {kind}")


def scan(data: bytes) -> tuple[list[Record], int, Problem | None]:
    """Decode records from the start of ``data``.

    Returns the good records, the offset just past the last good one, and the first problem (None
    when the data ends cleanly). A problem is ``tail`` when nothing good could follow it: the header
    or payload is cut short by the end of the data, the rest of the data is zeros (space a crash
    allocated but never wrote), or the bad record is the very last thing in the data.
    """
    records: list[Record] = []
    view = memoryview(data)
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < HEADER.size:
            return records, offset, Problem(offset, "record header cut short", tail=True)
        header_crc, length, lsn, kind, payload_crc = HEADER.unpack_from(view, offset)
        if zlib.crc32(view[offset + 4 : offset + HEADER.size]) != header_crc:
            zeros = not any(view[offset:])
            return records, offset, Problem(offset, "record header checksum mismatch", tail=zeros)
        start, stop = offset + HEADER.size, offset + HEADER.size + length
        if stop > end:
            return records, offset, Problem(offset, "record payload cut short", tail=True)
        payload = view[start:stop]
        if zlib.crc32(payload) != payload_crc:
            return records, offset, Problem(offset, "record payload checksum mismatch", tail=stop == end)
        try:
            records.append(_decode(lsn, kind, payload))
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            return records, offset, Problem(offset, f"undecodable record ({exc})", tail=False)
        offset = stop
    return records, offset, None
