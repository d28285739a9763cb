"""Durability of the real program over real files: kill -9 under concurrent ingest, clean restarts under
every --fsync policy, deleted streams leaving the disk, time windows across a restart, a bounded data
dir, the LOCK, and the in-memory modes writing nothing.

Every server here is a ``streamstats-server`` process on 127.0.0.1, port 0 (tests/e2e/program.py kills
it when its ``with`` block ends). No test asserts how long anything took: waits are bounded polls, and
the time-window test only asserts what the recorded wall-clock times make certain.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import statistics
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.storage.records import encode_add
from tests.e2e.program import LISTENING, SERVER, ServerProcess, program_environment, server_process

CALL_TIMEOUT = 10.0
CHECKPOINT_BYTES = 65_536  # small, so checkpoints (and segment deletion) happen during every test
MAX_K = 1_000_000  # reads every recovered value with one BottomK
DURABLE = ("--fsync", "always", "--checkpoint-bytes", str(CHECKPOINT_BYTES), "--max-k", str(MAX_K))


# --- helpers ------------------------------------------------------------------------------------------


@contextmanager
def connect(address: str) -> Iterator[pb_grpc.StreamStatsStub]:
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.StreamStatsStub(channel)


def config(window_size: int = 0, window_seconds: float = 0.0) -> pb.StreamConfig:
    result = pb.StreamConfig(window_size=window_size)
    if window_seconds:
        duration = duration_pb2.Duration()
        duration.FromNanoseconds(round(window_seconds * 1e9))
        result.window_duration.CopyFrom(duration)
    return result


def create(
    stub: pb_grpc.StreamStatsStub, name: str, window_size: int = 0, window_seconds: float = 0.0
) -> pb.Stream:
    request = pb.CreateStreamRequest(name=name, config=config(window_size, window_seconds))
    return stub.CreateStream(request, timeout=CALL_TIMEOUT)


def add(stub: pb_grpc.StreamStatsStub, name: str, values: Sequence[float]) -> pb.AddNumsResponse:
    return stub.AddNums(pb.AddNumsRequest(stream=name, values=values), timeout=CALL_TIMEOUT)


def get(stub: pb_grpc.StreamStatsStub, name: str) -> pb.Stream:
    return stub.GetStream(pb.GetStreamRequest(name=name), timeout=CALL_TIMEOUT)


def live_values(stub: pb_grpc.StreamStatsStub, name: str) -> list[float]:
    """Every live value, ascending, read with one BottomK(k = count)."""
    count = get(stub, name).count
    if count == 0:
        return []
    response = stub.BottomK(pb.BottomKRequest(stream=name, k=count), timeout=CALL_TIMEOUT)
    assert response.count == count == len(response.values), (name, response.count, count)
    return list(response.values)


def stream_names(stub: pb_grpc.StreamStatsStub) -> list[str]:
    response = stub.ListStreams(pb.ListStreamsRequest(page_size=1000), timeout=CALL_TIMEOUT)
    return [s.name for s in response.streams]


def assert_not_found(stub: pb_grpc.StreamStatsStub, name: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        get(stub, name)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value


def check_statistics(stub: pb_grpc.StreamStatsStub, name: str, live: Sequence[float]) -> None:
    """Count, median, top-k and bottom-k of the stream match a reference computed from ``live``."""
    ordered = sorted(live)
    median = stub.FindMedian(pb.FindMedianRequest(stream=name), timeout=CALL_TIMEOUT)
    assert median.count == len(ordered)
    if ordered:
        assert median.HasField("median") and median.median == statistics.median(ordered), name
    else:
        assert not median.HasField("median"), name
    for k in sorted({1, 7, 100, len(ordered)} - {0}):
        top = stub.TopK(pb.TopKRequest(stream=name, k=k), timeout=CALL_TIMEOUT)
        bottom = stub.BottomK(pb.BottomKRequest(stream=name, k=k), timeout=CALL_TIMEOUT)
        assert list(top.values) == ordered[::-1][:k], (name, k)
        assert list(bottom.values) == ordered[:k], (name, k)
        assert top.count == bottom.count == len(ordered)


@dataclass(frozen=True)
class StreamState:
    """Everything a client can read about a stream."""

    stream: pb.Stream  # name, config, count, total_added, create_time (to the nanosecond)
    live: list[float]
    median: pb.FindMedianResponse
    top: list[float]
    bottom: list[float]


def read_state(stub: pb_grpc.StreamStatsStub) -> dict[str, StreamState]:
    states = {}
    for name in stream_names(stub):
        states[name] = StreamState(
            stream=get(stub, name),
            live=live_values(stub, name),
            median=stub.FindMedian(pb.FindMedianRequest(stream=name), timeout=CALL_TIMEOUT),
            top=list(stub.TopK(pb.TopKRequest(stream=name, k=5), timeout=CALL_TIMEOUT).values),
            bottom=list(stub.BottomK(pb.BottomKRequest(stream=name, k=5), timeout=CALL_TIMEOUT).values),
        )
    return states


def data_files(directory: Path) -> dict[str, int]:
    """Every file in the data dir and its size."""
    return {p.name: p.stat().st_size for p in directory.iterdir() if p.is_file()}


def files_containing(directory: Path, needle: bytes) -> list[str]:
    found = []
    for path in directory.iterdir():
        try:
            if needle in path.read_bytes():
                found.append(path.name)
        except FileNotFoundError:  # removed by a checkpoint while we looked
            continue
    return found


def checkpoints(directory: Path) -> tuple[list[str], bool]:
    """The finished checkpoint files, and whether one is being written (a .tmp file)."""
    names = os.listdir(directory)
    done = sorted(n for n in names if n.startswith("checkpoint-") and n.endswith(".snap"))
    return done, any(n.endswith(".tmp") for n in names)


def wait_until(condition: Callable[[], bool], what: str, *, attempts: int = 200, pause: float = 0.05) -> None:
    """Poll ``condition`` a bounded number of times (about 10 s by default)."""
    for _ in range(attempts):
        if condition():
            return
        time.sleep(pause)
    raise AssertionError(f"gave up waiting until {what}")


# --- 1. kill -9 under concurrent ingest ---------------------------------------------------------------

WRITERS = 4
PLAIN = "ingest-plain"  # no window
TIMED = "ingest-timed"  # a one-hour time window: nothing expires during the test
COUNTED = "ingest-counted"  # the last COUNT_WINDOW values
COUNT_WINDOW = 500
INGEST_STREAMS = (PLAIN, TIMED, COUNTED)
WRITER_SPAN = 1_000_000.0  # writer i sends (i + 1) * WRITER_SPAN + seq: every value is unique


@dataclass
class Call:
    """One add a writer sent: acknowledged when ``end`` is set (monotonic time of the answer)."""

    writer: int
    stream: str
    values: tuple[float, ...]
    start: float
    end: float | None = None
    failed_at: float | None = None
    error: str = ""


def ingest(address: str, writer: int, seed: int, stop: threading.Event, calls: list[Call]) -> None:
    """Send singles (AddNum) and batches (AddNums) until stopped or a call fails (the kill)."""
    rng = random.Random(seed * 100 + writer)
    seq = 0
    with connect(address) as stub:
        while not stop.is_set():
            stream = rng.choice(INGEST_STREAMS)
            size = 1 if rng.random() < 0.4 else rng.randint(2, 60)
            values = tuple((writer + 1) * WRITER_SPAN + seq + i for i in range(size))
            seq += size
            assert seq < WRITER_SPAN
            call = Call(writer, stream, values, time.monotonic())
            calls.append(call)
            try:
                if size == 1:
                    stub.AddNum(pb.AddNumRequest(stream=stream, value=values[0]), timeout=CALL_TIMEOUT)
                else:
                    add(stub, stream, values)
            except grpc.RpcError as exc:
                call.failed_at = time.monotonic()
                call.error = f"{exc.code()}: {exc.details()}"
                return
            call.end = time.monotonic()


def kill_during_ingest(server: ServerProcess, data: Path, moment: str, seed: int) -> tuple[list[Call], float]:
    """Run the writers, kill -9 the server at ``moment``; return every call and the kill time."""
    rng = random.Random(seed)
    stop = threading.Event()
    per_writer: list[list[Call]] = [[] for _ in range(WRITERS)]
    threads = [
        threading.Thread(target=ingest, args=(server.address, w, seed, stop, per_writer[w]), daemon=True)
        for w in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        if moment == "early":  # most likely before the first checkpoint: recovery from the log alone
            time.sleep(rng.uniform(0.1, 0.3))
        elif moment == "late":  # after several checkpoints: a checkpoint plus the log after it
            time.sleep(rng.uniform(1.2, 1.8))
        else:  # "checkpoint": once a checkpoint exists, the moment the next one is seen in progress
            deadline = time.monotonic() + 4.0  # (or after 4 s if none is seen)
            while time.monotonic() < deadline:
                done, writing = checkpoints(data)
                if len(done) > 1 or (done and writing):
                    break
                time.sleep(0.0005)
        killed_at = time.monotonic()
        server.kill()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    calls = [call for calls in per_writer for call in calls]
    early_failures = [c for c in calls if c.failed_at is not None and c.failed_at < killed_at]
    assert not early_failures, f"calls failed before the kill: {early_failures[:3]}"
    assert all(c.end is not None or c.failed_at is not None for c in calls)
    return calls, killed_at


def check_whole_stream(stub: pb_grpc.StreamStatsStub, name: str, calls: Sequence[Call]) -> list[float]:
    """A stream that keeps every value (no window, or a window nothing has left)."""
    mine = [c for c in calls if c.stream == name]
    sent = {v for c in mine for v in c.values}
    acked = {v for c in mine if c.end is not None for v in c.values}
    info = get(stub, name)
    values = live_values(stub, name)
    recovered = set(values)
    assert len(recovered) == len(values), f"{name}: {len(values) - len(recovered)} values came back twice"
    never_sent = recovered - sent
    assert not never_sent, f"{name}: values that were never sent: {sorted(never_sent)[:5]}"
    lost = acked - recovered
    assert not lost, f"{name}: {len(lost)} acknowledged values lost, e.g. {sorted(lost)[:5]}"
    assert info.count == info.total_added == len(values), (name, info.count, info.total_added, len(values))
    for call in mine:  # an unacknowledged batch comes back whole or not at all
        if call.end is None:
            assert len(set(call.values) & recovered) in (0, len(call.values)), (name, call)
    check_statistics(stub, name, values)
    return values


def check_count_window(stub: pb_grpc.StreamStatsStub, name: str, calls: Sequence[Call], window: int) -> None:
    """The live values are the last ``window`` values of one order of the recovered log.

    The order is unknown across writers, but a call acknowledged before another one started was
    logged before it, and the values of one call are logged in order (and atomically).
    """
    mine = [c for c in calls if c.stream == name]
    sent = {v for c in mine for v in c.values}
    info = get(stub, name)
    live = live_values(stub, name)
    live_set = set(live)
    total = info.total_added
    assert len(live_set) == len(live), f"{name}: a value came back twice"
    assert live_set <= sent, f"{name}: values that were never sent: {sorted(live_set - sent)[:5]}"
    acked = [c for c in mine if c.end is not None]
    unacked = [c for c in mine if c.end is None]
    acked_values = sum(len(c.values) for c in acked)
    # total_added: every acknowledged value plus whole unacknowledged batches, nothing else.
    possible = {
        acked_values + sum(len(c.values) for c in combo)
        for r in range(len(unacked) + 1)
        for combo in itertools.combinations(unacked, r)
    }
    assert total in possible, (name, total, acked_values, [len(c.values) for c in unacked])
    assert info.count == len(live) == min(window, total), (name, info.count, len(live), total)
    for call in unacked:
        assert len(set(call.values) & live_set) in (0, len(call.values)), (name, call)

    # Whatever is live, everything logged certainly after it is live too.
    by_start = sorted(mine, key=lambda c: c.start)
    starts = [c.start for c in by_start]
    for call in mine:
        flags = [v in live_set for v in call.values]
        if not any(flags):
            continue
        first = flags.index(True)
        assert all(flags[first:]), f"{name}: a batch's later values left the window before its earlier ones"
        if call.end is None:
            continue
        for later in by_start[bisect.bisect_right(starts, call.end) :]:
            inside = sum(v in live_set for v in later.values)
            if later.end is not None:
                assert inside == len(later.values), (
                    f"{name}: {call.values[first]} is live but {later.values} (acknowledged and sent "
                    "after it was) is not"
                )

    # An acknowledged value with fewer than ``window`` values possibly after it must still be live.
    by_end = sorted(acked, key=lambda c: c.end or 0.0)
    ends = [c.end or 0.0 for c in by_end]
    before = list(itertools.accumulate((len(c.values) for c in by_end), initial=0))
    for call in acked:
        certainly_before = before[bisect.bisect_left(ends, call.start)]
        for index, value in enumerate(call.values):
            if total - 1 - (certainly_before + index) < window:
                assert value in live_set, f"{name}: acknowledged {value} should still be in the window"
    check_statistics(stub, name, live)


def tear_the_newest_segment(data: Path) -> None:
    """Append a record cut short, as a crash in the middle of a write leaves it (kill -9 never does:
    each flush is one write call)."""
    newest = max(data.glob("wal-*.log"))
    record = encode_add(2**40, "torn", time.time_ns(), [1.0, 2.0, 3.0])
    with open(newest, "ab") as file:
        file.write(record[: len(record) - 5])


@pytest.mark.parametrize(
    ("moment", "policy"),
    [
        ("early", "always"),
        ("checkpoint", "always"),
        ("late", "always"),
        # A process crash loses nothing under the other policies either: acknowledged = in the OS.
        ("checkpoint", "interval"),
        ("late", "never"),
    ],
)
def test_kill_9_during_concurrent_ingest_keeps_every_acknowledged_value(
    tmp_path: Path, moment: str, policy: str
) -> None:
    seed = {"early": 1, "checkpoint": 2, "late": 3}[moment] + 10 * len(policy)
    flags = ("--fsync", policy, "--checkpoint-bytes", str(CHECKPOINT_BYTES), "--max-k", str(MAX_K))
    data = tmp_path / "data"
    with server_process(*flags, data_dir=data) as server:
        with connect(server.address) as stub:
            created = {
                PLAIN: create(stub, PLAIN),
                TIMED: create(stub, TIMED, window_seconds=3600.0),
                COUNTED: create(stub, COUNTED, window_size=COUNT_WINDOW),
            }
        calls, _ = kill_during_ingest(server, data, moment, seed)
    files_at_kill = data_files(data)

    with server_process(*flags, data_dir=data) as server, connect(server.address) as stub:
        assert stream_names(stub) == sorted(INGEST_STREAMS), files_at_kill
        for name, stream in created.items():
            info = get(stub, name)
            assert info.config == stream.config and info.create_time == stream.create_time, name
        check_whole_stream(stub, PLAIN, calls)
        check_whole_stream(stub, TIMED, calls)
        check_count_window(stub, COUNTED, calls, COUNT_WINDOW)

        # The recovered state is durable in its turn: a known batch on top, kill -9 again, and this
        # time a write torn by the crash at the end of the log, which restart drops with a warning.
        # The windows keep evicting in arrival order after a recovery, too.
        extra = []
        for name in INGEST_STREAMS:
            extra.append(Call(-1, name, tuple(-1.0 - i for i in range(50)), time.monotonic()))
            add(stub, name, extra[-1].values)
            extra[-1].end = time.monotonic()
        check_whole_stream(stub, PLAIN, [*calls, *extra])
        check_whole_stream(stub, TIMED, [*calls, *extra])
        check_count_window(stub, COUNTED, [*calls, *extra], COUNT_WINDOW)
        before = read_state(stub)
        server.kill()
    tear_the_newest_segment(data)

    with server_process(*flags, data_dir=data) as server, connect(server.address) as stub:
        assert read_state(stub) == before
        assert "torn write" in server.stderr()


# --- 2. a clean stop loses nothing, under every fsync policy ------------------------------------------


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_restart_after_sigterm_brings_everything_back_exactly(tmp_path: Path, policy: str) -> None:
    data = tmp_path / "data"
    rng = random.Random(policy)
    flags = ("--fsync", policy, "--checkpoint-bytes", str(CHECKPOINT_BYTES), "--max-k", str(MAX_K))
    # Duplicates, signs, zeros of both signs, extremes: the live multiset must come back exactly.
    plain = [round(rng.gauss(0.0, 1000.0), 1) for _ in range(12_000)] + [-0.0, 0.0, 5e-324, 1.5e308, -1.5e308]
    counted = [float(rng.randint(-50, 50)) for _ in range(1_000)]
    timed = [rng.uniform(-1.0, 1.0) for _ in range(200)]
    with server_process(*flags, data_dir=data) as server:
        with connect(server.address) as stub:
            create(stub, "counted", window_size=100)
            create(stub, "timed", window_size=50, window_seconds=3600.0)
            create(stub, "empty", window_seconds=0.25)
            for start in range(0, 990, 110):  # the checkpoint below holds most of the windows ...
                add(stub, "counted", counted[start : start + 110])
            for value in timed[:150]:
                stub.AddNum(pb.AddNumRequest(stream="timed", value=value), timeout=CALL_TIMEOUT)
            for start in range(0, 12_000, 1_000):  # 96 KB of log: a checkpoint happens
                add(stub, "plain", plain[start : start + 1_000])
            wait_until(lambda: bool(checkpoints(data)[0]), "a checkpoint was written")
            # ... and the log after it the rest, replayed on top of the checkpoint at restart.
            add(stub, "plain", plain[12_000:])
            add(stub, "counted", counted[990:])
            for value in timed[150:]:
                stub.AddNum(pb.AddNumRequest(stream="timed", value=value), timeout=CALL_TIMEOUT)
            before = read_state(stub)
        assert server.terminate() == 0, server.stderr()

    assert sorted(before) == ["counted", "empty", "plain", "timed"]
    assert before["plain"].live == sorted(plain) and before["plain"].stream.total_added == len(plain)
    assert before["counted"].live == sorted(counted[-100:]) and before["counted"].stream.total_added == 1_000
    assert before["timed"].live == sorted(timed[-50:]) and before["timed"].stream.total_added == 200
    assert before["empty"].live == [] and not before["empty"].median.HasField("median")

    with server_process(*flags, data_dir=data) as server, connect(server.address) as stub:
        after = read_state(stub)
        assert after == before
        assert after["timed"].stream.config == config(50, 3600.0)
        assert after["empty"].stream.config == config(0, 0.25)
        check_statistics(stub, "plain", plain)
        check_statistics(stub, "counted", counted[-100:])
        check_statistics(stub, "timed", timed[-50:])
        # The recovered count window still evicts its oldest values first.
        more = [100.5 + i for i in range(30)]
        add(stub, "counted", more)
        assert live_values(stub, "counted") == sorted(counted[-70:] + more)


# --- 3. a deleted stream stays deleted and leaves the disk --------------------------------------------

DOOMED = 1234567.891  # values only the deleted streams ever held, to look for in the files
PHOENIX_OLD = 7654321.123


def test_a_deleted_stream_stays_deleted_and_its_data_leaves_the_disk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    doomed_bytes, phoenix_bytes = struct.pack("<d", DOOMED), struct.pack("<d", PHOENIX_OLD)
    with server_process(*DURABLE, data_dir=data) as server:
        with connect(server.address) as stub:
            create(stub, "phoenix", window_seconds=3600.0)
            add(stub, "bystander", [float(i) for i in range(1_000)])
            add(stub, "phoenix", [PHOENIX_OLD] * 2_000)
            for _ in range(10):  # 80 KB: a checkpoint holds them too
                add(stub, "doomed", [DOOMED] * 1_000)
            wait_until(
                lambda: any(n.startswith("checkpoint-") for n in files_containing(data, doomed_bytes)),
                "a checkpoint holds the doomed stream",
            )
            add(stub, "doomed", [DOOMED] * 100)  # and the log after it
            add(stub, "phoenix", [PHOENIX_OLD] * 10)
            stub.DeleteStream(pb.DeleteStreamRequest(name="doomed"), timeout=CALL_TIMEOUT)
            stub.DeleteStream(pb.DeleteStreamRequest(name="phoenix"), timeout=CALL_TIMEOUT)
            assert_not_found(stub, "doomed")
            assert_not_found(stub, "phoenix")
            # The delete schedules a checkpoint, which removes the files that held the values.
            wait_until(
                lambda: (
                    not files_containing(data, doomed_bytes) and not files_containing(data, phoenix_bytes)
                ),
                "no file in the data dir holds a deleted stream's values",
            )
            reborn = create(stub, "phoenix", window_size=5)
            add(stub, "phoenix", [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5])
            phoenix = get(stub, "phoenix")
            assert phoenix.create_time == reborn.create_time and phoenix.total_added == 8
        server.kill()

    with server_process(*DURABLE, data_dir=data) as server, connect(server.address) as stub:
        assert stream_names(stub) == ["bystander", "phoenix"]
        assert_not_found(stub, "doomed")
        assert get(stub, "phoenix") == phoenix  # the new config, create_time and counts only
        assert phoenix.config == config(5)
        assert live_values(stub, "phoenix") == [4.5, 5.5, 6.5, 7.5, 8.5]
        check_statistics(stub, "phoenix", [4.5, 5.5, 6.5, 7.5, 8.5])
        assert live_values(stub, "bystander") == [float(i) for i in range(1_000)]
        assert files_containing(data, doomed_bytes) == [] and files_containing(data, phoenix_bytes) == []
        # Adding to the deleted name makes a new stream: nothing of the old one comes back.
        response = stub.AddNum(pb.AddNumRequest(stream="doomed", value=1.0), timeout=CALL_TIMEOUT)
        assert (response.count, response.total_added) == (1, 1)
        assert get(stub, "doomed").config == config()


FLEETING = 4242424.4242


def crash_right_after_a_delete(data: Path) -> bool:
    """Delete a stream and kill -9 the server at once; True if the kill came before the checkpoint
    the delete schedules had removed its values (the usual case: the kill takes a millisecond)."""
    with server_process(*DURABLE, data_dir=data) as server:
        with connect(server.address) as stub:
            for start in range(0, 20_000, 5_000):
                add(stub, "bystander", [float(i) for i in range(start, start + 5_000)])
            create(stub, "fleeting", window_size=3)
            add(stub, "fleeting", [FLEETING] * 100)
            stub.DeleteStream(pb.DeleteStreamRequest(name="fleeting"), timeout=CALL_TIMEOUT)
        server.kill()
    return bool(files_containing(data, struct.pack("<d", FLEETING)))


def test_a_delete_survives_a_crash_before_its_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    crash_right_after_a_delete(data)  # usually the DELETE record itself is replayed
    with server_process(*DURABLE, data_dir=data) as server, connect(server.address) as stub:
        assert stream_names(stub) == ["bystander"]
        assert_not_found(stub, "fleeting")
        assert live_values(stub, "bystander") == [float(i) for i in range(20_000)]
        response = stub.AddNum(pb.AddNumRequest(stream="fleeting", value=1.0), timeout=CALL_TIMEOUT)
        assert (response.count, response.total_added) == (1, 1)
        assert get(stub, "fleeting").config == config()


def test_a_delete_replayed_after_a_crash_still_leaves_the_disk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    if not crash_right_after_a_delete(data):
        pytest.skip("the delete's own checkpoint finished before the kill: nothing to replay")
    with server_process(*DURABLE, data_dir=data) as server, connect(server.address) as stub:
        assert_not_found(stub, "fleeting")
        wait_until(
            lambda: not files_containing(data, struct.pack("<d", FLEETING)),
            "no file holds the deleted stream's values",
            attempts=60,  # "within seconds"
        )


# --- 4. time windows keep expiring after a restart ----------------------------------------------------

WINDOW_SECONDS = 1.5
CLOCK_SLACK = 0.05  # our time.time() and the server's time.time_ns() read the same clock


@dataclass(frozen=True)
class Batch:
    values: tuple[float, ...]
    sent: float  # wall clock just before the call: the server's arrival time is after this
    acked: float  # wall clock just after the answer: the arrival time is before this


def add_timed(stub: pb_grpc.StreamStatsStub, name: str, values: tuple[float, ...]) -> Batch:
    sent = time.time()
    add(stub, name, values)
    return Batch(values, sent, time.time())


def check_time_window(stub: pb_grpc.StreamStatsStub, name: str, batches: Sequence[Batch]) -> tuple[int, int]:
    """Read the live values once and check each batch against what the clock makes certain.

    Returns how many batches were certainly live and certainly expired at the read.
    """
    read_from = time.time()
    response = stub.BottomK(pb.BottomKRequest(stream=name, k=1000), timeout=CALL_TIMEOUT)
    read_to = time.time()
    live = set(response.values)
    assert len(response.values) == response.count
    certain_live = certain_expired = 0
    for batch in batches:
        inside = len(live & set(batch.values))
        assert inside in (0, len(batch.values)), "a batch has one arrival time: all live or all expired"
        if read_to - batch.sent < WINDOW_SECONDS - CLOCK_SLACK:
            certain_live += 1
            assert inside, f"{batch} must still be live at {read_from}..{read_to}"
        elif read_from - batch.acked >= WINDOW_SECONDS + CLOCK_SLACK:
            certain_expired += 1
            assert not inside, f"{batch} must have expired at {read_from}..{read_to}"
    assert live <= {v for b in batches for v in b.values}
    return certain_live, certain_expired


def sleep_until(wall_time: float) -> None:
    time.sleep(max(0.0, wall_time - time.time()))


def test_time_window_expiry_continues_after_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with server_process(*DURABLE, data_dir=data) as server:
        with connect(server.address) as stub:
            created = create(stub, "fading", window_seconds=WINDOW_SECONDS)
            first = add_timed(stub, "fading", (1.0, 2.0, 3.0))
            time.sleep(0.5)
            second = add_timed(stub, "fading", (10.0, 20.0))
        assert server.terminate() == 0, server.stderr()

    with server_process(*DURABLE, data_dir=data) as server, connect(server.address) as stub:
        info = get(stub, "fading")
        assert info.config == created.config and info.create_time == created.create_time
        assert info.total_added == 5
        # Right after the restart: whatever is certainly still young is live (not asserted when the
        # restart took longer than that on a slow machine).
        check_time_window(stub, "fading", [first, second])
        # Past the first batch's window: it has expired on the stored arrival time, not the restart's.
        sleep_until(first.acked + WINDOW_SECONDS + 2 * CLOCK_SLACK)
        _, expired = check_time_window(stub, "fading", [first, second])
        assert expired >= 1
        # Past both: nothing is live, the median is unset, total_added is kept.
        sleep_until(second.acked + WINDOW_SECONDS + 2 * CLOCK_SLACK)
        assert check_time_window(stub, "fading", [first, second]) == (0, 2)
        median = stub.FindMedian(pb.FindMedianRequest(stream="fading"), timeout=CALL_TIMEOUT)
        assert median.count == 0 and not median.HasField("median")
        info = get(stub, "fading")
        assert (info.count, info.total_added) == (0, 5)


# --- 5. compaction keeps the data dir bounded ---------------------------------------------------------


def test_checkpoints_keep_a_windowed_streams_data_dir_bounded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    window, batches = 1_000, 100
    raw_log = batches * window * 8  # 800 KB: the values alone, as the log holds them
    bound = 2 * (16 * window + CHECKPOINT_BYTES) + 64 * 1024  # live data twice + log allowance + slack

    def batch(b: int) -> list[float]:  # each batch in a scrambled order: arrival order != sorted order
        return [float(b * window + (i * 7919) % window) for i in range(window)]

    def settled() -> bool:
        done, writing = checkpoints(data)
        return len(done) == 1 and not writing

    with server_process(*DURABLE, data_dir=data) as server:
        with connect(server.address) as stub:
            create(stub, "bounded", window_size=window)
            for b in range(batches):
                add(stub, "bounded", batch(b))
            wait_until(settled, "a checkpoint was written and the files it covers removed")
            sizes = data_files(data)
            assert sum(sizes.values()) < bound < raw_log // 3, sizes
            assert sum(n.startswith("wal-") for n in sizes) <= 2, sizes
        assert server.terminate() == 0, server.stderr()

    with server_process(*DURABLE, data_dir=data) as server, connect(server.address) as stub:
        last = batch(batches - 1)
        info = get(stub, "bounded")
        assert (info.count, info.total_added) == (window, batches * window)
        assert live_values(stub, "bounded") == sorted(last)
        check_statistics(stub, "bounded", last)
        # The recovered window still evicts in arrival order.
        more = batch(batches)[: window // 2]
        add(stub, "bounded", more)
        assert live_values(stub, "bounded") == sorted(last[window // 2 :] + more)
        assert sum(data_files(data).values()) < bound, data_files(data)


# --- 6. one server per data dir -----------------------------------------------------------------------


def test_a_second_server_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with server_process(*DURABLE, data_dir=data) as first:
        with connect(first.address) as stub:
            add(stub, "held", [1.0, 2.0])
            second = subprocess.run(
                [*SERVER, "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data)],
                capture_output=True,
                text=True,
                env=program_environment(),
                timeout=20,
                check=False,
            )
            assert second.returncode != 0
            assert LISTENING not in second.stdout
            assert "LOCK" in second.stderr and "in use" in second.stderr and str(data) in second.stderr
            assert "Traceback" not in second.stderr, second.stderr
            # The first server is unharmed.
            add(stub, "held", [3.0])
            assert live_values(stub, "held") == [1.0, 2.0, 3.0]
        assert first.terminate() == 0, first.stderr()
    # Its stop released the folder.
    with server_process(*DURABLE, data_dir=data) as server, connect(server.address) as stub:
        assert live_values(stub, "held") == [1.0, 2.0, 3.0]


# --- 7. in memory: nothing on disk --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_dir", "args", "env"),
    [
        pytest.param(None, ["--in-memory"], {}, id="in-memory-flag"),
        pytest.param("sub", ["--in-memory"], {}, id="in-memory-beats-data-dir"),
        pytest.param("", [], {}, id="empty-data-dir"),
        pytest.param(None, [], {"STREAMSTATS_IN_MEMORY": "1"}, id="in-memory-env"),
        pytest.param(None, [], {"STREAMSTATS_DATA_DIR": ""}, id="empty-data-dir-env"),
    ],
)
def test_in_memory_writes_nothing(
    tmp_path: Path, data_dir: str | None, args: list[str], env: dict[str, str]
) -> None:
    cwd = tmp_path / "cwd"  # the default --data-dir is ./data: a mistake would create it here
    cwd.mkdir()
    with server_process(*args, data_dir=data_dir, env=env, cwd=cwd) as server:
        with connect(server.address) as stub:
            add(stub, "volatile", [float(i) for i in range(10_000)])
            assert (
                stub.FindMedian(pb.FindMedianRequest(stream="volatile"), timeout=CALL_TIMEOUT).median
                == 4999.5
            )
            stub.DeleteStream(pb.DeleteStreamRequest(name="volatile"), timeout=CALL_TIMEOUT)
            add(stub, "volatile", [1.0])
        assert server.terminate() == 0, server.stderr()
    assert list(cwd.iterdir()) == []
    # And nothing survives.
    with (
        server_process(*args, data_dir=data_dir, env=env, cwd=cwd) as server,
        connect(server.address) as stub,
    ):
        assert stream_names(stub) == []
    assert list(cwd.iterdir()) == []
