"""The log record format: round trips, and how damage is classified (torn tail vs corruption)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from streamstats_server.storage.records import (
    HEADER,
    AddRecord,
    CreateRecord,
    DeleteRecord,
    encode_add,
    encode_create,
    encode_delete,
    scan,
)

names = st.text(alphabet="abcXYZ019_.:/-", min_size=1, max_size=128)
finite = st.floats(allow_nan=False, allow_infinity=False)


@given(names, st.integers(0, 2**64 - 1), st.integers(0, 2**63 - 1), st.integers(-(2**63), 2**63 - 1))
def test_create_round_trips(name: str, size: int, duration: int, created: int) -> None:
    records, _, problem = scan(encode_create(7, name, size, duration, created))
    assert problem is None
    assert records == [CreateRecord(7, name, size, duration, created)]


@given(names, st.integers(-(2**63), 2**63 - 1), st.lists(finite, max_size=50))
def test_add_round_trips_bit_for_bit(name: str, arrival: int, values: list[float]) -> None:
    records, _, problem = scan(encode_add(3, name, arrival, values))
    assert problem is None
    (record,) = records
    assert isinstance(record, AddRecord)
    assert (record.lsn, record.name, record.arrival_ns) == (3, name, arrival)
    assert struct.pack(f"<{len(values)}d", *record.values) == struct.pack(f"<{len(values)}d", *values)


def test_delete_round_trips_and_records_concatenate() -> None:
    data = encode_create(1, "a", 0, 0, 5) + encode_add(2, "a", 6, [1.5]) + encode_delete(3, "a")
    records, end, problem = scan(data)
    assert problem is None and end == len(data)
    assert [r.lsn for r in records] == [1, 2, 3]
    assert records[2] == DeleteRecord(3, "a")


def log_of_three() -> tuple[bytes, int]:
    """Three records; returns the bytes and where the last one starts."""
    head = encode_create(1, "s", 10, 0, 100) + encode_add(2, "s", 101, [1.0, 2.0, 3.0])
    return head + encode_add(3, "s", 102, [4.0, 5.0]), len(head)


def test_a_record_cut_at_any_byte_is_a_torn_tail_and_the_earlier_records_survive() -> None:
    data, last_start = log_of_three()
    for cut in range(last_start, len(data)):
        records, end, problem = scan(data[:cut])
        assert [r.lsn for r in records] == [1, 2], cut
        assert end == last_start
        if cut == last_start:
            assert problem is None
        else:
            assert problem is not None and problem.tail and problem.offset == last_start, (cut, problem)


def test_a_garbled_last_record_is_a_torn_tail() -> None:
    data, last_start = log_of_three()
    garbled = bytearray(data)
    garbled[-1] ^= 0xFF
    records, _, problem = scan(bytes(garbled))
    assert [r.lsn for r in records] == [1, 2]
    assert problem is not None and problem.tail and problem.offset == last_start


def test_zeros_after_the_last_record_are_a_torn_tail() -> None:
    data, _ = log_of_three()
    records, end, problem = scan(data + bytes(100))
    assert len(records) == 3 and end == len(data)
    assert problem is not None and problem.tail


def test_a_flipped_byte_in_the_middle_is_corruption_at_its_record() -> None:
    data, last_start = log_of_three()
    second_start = len(encode_create(1, "s", 10, 0, 100))
    for position in range(second_start, last_start):  # every byte of the middle record
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        records, _, problem = scan(bytes(damaged))
        assert [r.lsn for r in records] == [1], position
        assert problem is not None and not problem.tail, (position, problem)
        assert problem.offset == second_start


def test_a_corrupt_length_is_not_trusted() -> None:
    data, _ = log_of_three()
    second_start = len(encode_create(1, "s", 10, 0, 100))
    damaged = bytearray(data)
    struct.pack_into("<I", damaged, second_start + 4, 10**9)  # length: far past the end of the file
    _, _, problem = scan(bytes(damaged))
    assert problem is not None and not problem.tail  # the header checksum catches it
    assert problem.reason == "record header checksum mismatch"
    assert HEADER.size == 21
