"""Recovery from real files: torn tails, corruption, repair, checkpoints and the log after them."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from streamstats_server.registry import Registry
from streamstats_server.storage import (
    DurableStorage,
    RecoveredStream,
    RecoveryError,
    RecoveryReport,
    StorageConfig,
)
from streamstats_server.stream import WindowConfig


def run_registry(
    directory: Path, work: Callable[[Registry], Coroutine[Any, Any, None]], **config: Any
) -> None:
    """Open the data dir, run ``work`` on a registry over it, close cleanly."""

    async def main() -> None:
        storage = DurableStorage(StorageConfig(data_dir=str(directory), **config))
        recovered, _ = storage.recover()
        registry = Registry(storage)
        registry.load(recovered)
        storage.start()
        try:
            await work(registry)
        finally:
            await registry.close()

    asyncio.run(main())


def recover(directory: Path, **config: Any) -> tuple[dict[str, RecoveredStream], RecoveryReport]:
    storage = DurableStorage(StorageConfig(data_dir=str(directory), **config))
    try:
        streams, report = storage.recover()
    finally:
        asyncio.run(storage.close())
    return {s.name: s for s in streams}, report


def contents(stream: RecoveredStream) -> list[tuple[float, int]]:
    return list(stream.window.items())


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


async def three_batches(registry: Registry) -> None:
    await registry.create("s", WindowConfig(window_size=100))
    await registry.add("s", [1.0, 2.0, 3.0])
    await registry.add("s", [4.0, 5.0])
    await registry.add("s", [6.0])


def test_a_clean_log_recovers_exactly(tmp_path: Path) -> None:
    run_registry(tmp_path, three_batches)
    streams, report = recover(tmp_path)
    stream = streams["s"]
    assert [v for v, _ in contents(stream)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert (stream.window_size, stream.total_added) == (100, 6)
    times = [t for _, t in contents(stream)]
    assert times == sorted(times) and len(set(times)) == 3  # one arrival time per batch, kept
    assert report.warnings == () and report.records_replayed == 4


def test_the_last_record_cut_at_every_byte_drops_only_it(tmp_path: Path) -> None:
    original = tmp_path / "original"
    run_registry(original, three_batches)
    (segment,) = segments(original)
    data = segment.read_bytes()
    last_record = len(data) - (21 + 2 + 1 + 8 + 8)  # the ADD of [6.0] to "s"
    for cut in range(last_record + 1, len(data)):
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(original, copy)
        with open(copy / segment.name, "r+b") as file:
            file.truncate(cut)
        streams, report = recover(copy)
        assert [v for v, _ in contents(streams["s"])] == [1.0, 2.0, 3.0, 4.0, 5.0], cut
        assert streams["s"].total_added == 5
        assert len(report.warnings) == 1 and "torn write" in report.warnings[0], report.warnings
        assert (copy / segment.name).stat().st_size == last_record  # cut off for good
        again, report = recover(copy)
        assert report.warnings == () and contents(again["s"]) == contents(streams["s"])
        shutil.rmtree(copy)


def test_a_flipped_byte_in_the_middle_refuses_to_start_naming_file_and_offset(tmp_path: Path) -> None:
    run_registry(tmp_path, three_batches)
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    second = len(data) // 2  # inside the second or third record, never the last byte
    data[second] ^= 0x40
    segment.write_bytes(bytes(data))
    with pytest.raises(RecoveryError) as info:
        recover(tmp_path)
    message = str(info.value)
    assert str(segment) in message and "corrupt at offset" in message and "--repair" in message
    assert segment.read_bytes() == bytes(data)  # refusing changes nothing


def test_repair_drops_the_damaged_part_explicitly(tmp_path: Path) -> None:
    run_registry(tmp_path, three_batches)
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    create_and_first = 21 + 2 + 1 + 24 + 21 + 2 + 1 + 8 + 24
    data[create_and_first + 3] ^= 0x01  # the header of the second ADD
    segment.write_bytes(bytes(data))
    streams, report = recover(tmp_path, repair=True)
    assert [v for v, _ in contents(streams["s"])] == [1.0, 2.0, 3.0]
    assert any("--repair" in w and f"offset {create_and_first}" in w for w in report.warnings)
    assert recover(tmp_path)[1].warnings == ()  # repaired for good


def adding(*values: float) -> Callable[[Registry], Coroutine[Any, Any, None]]:
    async def work(registry: Registry) -> None:
        await registry.add("s", list(values))

    return work


def test_a_missing_segment_in_the_middle_refuses_to_start(tmp_path: Path) -> None:
    run_registry(tmp_path, three_batches)  # every start opens a new segment
    run_registry(tmp_path, adding(7.0))
    run_registry(tmp_path, adding(8.0))
    _, middle, last = segments(tmp_path)
    middle.unlink()
    with pytest.raises(RecoveryError) as info:
        recover(tmp_path)
    assert str(last) in str(info.value) and "gap" in str(info.value)


def test_checkpoint_then_log_then_restart(tmp_path: Path) -> None:
    async def work(registry: Registry) -> None:
        await registry.create("w", WindowConfig(window_size=5))
        await registry.add("w", [float(i) for i in range(20)])
        await registry.add("u", [1.0, 2.0])
        await registry.checkpoint()
        await registry.add("w", [100.0, 101.0])
        await registry.add("u", [3.0])

    run_registry(tmp_path, work)
    names = sorted(os.listdir(tmp_path))
    assert [n for n in names if n.startswith("checkpoint-")], names
    streams, report = recover(tmp_path)
    assert [v for v, _ in contents(streams["w"])] == [17.0, 18.0, 19.0, 100.0, 101.0]
    assert streams["w"].total_added == 22
    assert [v for v, _ in contents(streams["u"])] == [1.0, 2.0, 3.0]
    assert report.checkpoint is not None and report.records_replayed == 2


def test_a_corrupt_checkpoint_refuses_to_start_and_repair_keeps_what_precedes(tmp_path: Path) -> None:
    async def work(registry: Registry) -> None:
        await registry.add("a", [1.0])
        await registry.add("b", [2.0] * 1000)
        await registry.checkpoint()

    run_registry(tmp_path, work)
    (checkpoint,) = tmp_path.glob("checkpoint-*.snap")
    data = bytearray(checkpoint.read_bytes())
    data[-100] ^= 0xFF  # inside stream "b", the last entry before END
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(RecoveryError) as info:
        recover(tmp_path)
    assert str(checkpoint) in str(info.value) and "offset" in str(info.value)
    streams, report = recover(tmp_path, repair=True)
    assert set(streams) == {"a"} and report.warnings


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = DurableStorage(StorageConfig(data_dir=str(tmp_path)))
    first.recover()
    try:
        with pytest.raises(RecoveryError, match="in use"):
            recover(tmp_path)
    finally:
        asyncio.run(first.close())
    recover(tmp_path)  # released


def test_an_unfinished_checkpoint_is_ignored_and_removed(tmp_path: Path) -> None:
    run_registry(tmp_path, three_batches)
    (tmp_path / "checkpoint-00000000000000000099.snap.tmp").write_bytes(b"half written")
    streams, _ = recover(tmp_path)
    assert streams["s"].total_added == 6
    assert not list(tmp_path.glob("*.tmp"))
