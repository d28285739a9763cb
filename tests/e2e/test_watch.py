"""Watch: a snapshot at once, then coalesced updates; slow readers, deletes and shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import duration_pb2

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.conftest import TEST_CONFIG, ServerFactory, ThreadedServer
from tests.e2e.calls import error_of

T = 20.0


def interval(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


class Watching:
    """A Watch call: ``next()`` update, ``cancel()``, and the call's final ``code()``."""

    def __init__(self, call: grpc.CallIterator[pb.WatchUpdate]) -> None:
        self.call = call
        self._updates = iter(call)

    def __iter__(self) -> Iterator[pb.WatchUpdate]:
        return self._updates

    def __next__(self) -> pb.WatchUpdate:
        return next(self._updates)

    def cancel(self) -> None:
        self.call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped

    def code(self) -> grpc.StatusCode:
        return self.call.code()


def watch(stub: pb_grpc.StreamStatsStub, name: str, every: float = 0.05, **query: Any) -> Watching:
    request = pb.WatchRequest(stream=name, query=pb.StatsQuery(**query), min_interval=interval(every))
    return Watching(stub.Watch(request, timeout=T))


def until_count(updates: Watching, count: int) -> list[pb.WatchUpdate]:
    """Updates up to the first whose count is ``count``."""
    seen = []
    for update in updates:
        seen.append(update)
        if update.stats.count == count:
            return seen
    raise AssertionError(f"the watch ended before count {count}: {[u.stats.count for u in seen]}")


def test_a_snapshot_at_once_then_coalesced_updates(stub: pb_grpc.StreamStatsStub) -> None:
    stub.AddNums(pb.AddNumsRequest(stream="w", values=[1.0, 2.0, 3.0]), timeout=T)
    updates = watch(stub, "w", every=0.3, quantiles=[0.5, 0.9], k=2)
    first = next(updates)
    assert (first.changes, first.stats.count, first.stats.median) == (0, 3, 2.0)
    assert [q.value for q in first.stats.quantiles] == [2.0, 2.8]
    assert list(first.stats.top) == [3.0, 2.0]
    for i in range(50):  # well within one interval: folded into very few updates
        stub.AddNum(pb.AddNumRequest(stream="w", value=float(i)), timeout=T)
    seen = until_count(updates, 53)
    assert sum(u.changes for u in seen) == 50
    assert len(seen) < 50
    assert seen[-1].stats.total_added == 53
    updates.cancel()


def test_values_leaving_a_time_window_are_an_update(stub: pb_grpc.StreamStatsStub) -> None:
    config = pb.StreamConfig(window_duration=interval(0.3))
    stub.CreateStream(pb.CreateStreamRequest(name="t", config=config), timeout=T)
    stub.AddNums(pb.AddNumsRequest(stream="t", values=[1.0, 2.0]), timeout=T)
    updates = watch(stub, "t", every=0.01)
    assert next(updates).stats.count == 2
    expired = next(updates)  # nothing is added: the expiry alone sends it
    assert (expired.stats.count, expired.changes) == (0, 0)
    assert not expired.stats.HasField("median")
    updates.cancel()


def test_deleting_the_stream_ends_the_watch_with_not_found(stub: pb_grpc.StreamStatsStub) -> None:
    stub.AddNum(pb.AddNumRequest(stream="d", value=1.0), timeout=T)
    updates = watch(stub, "d")
    next(updates)
    stub.DeleteStream(pb.DeleteStreamRequest(name="d"), timeout=T)
    stub.AddNum(pb.AddNumRequest(stream="d", value=2.0), timeout=T)  # a new stream of the same name
    err = error_of(lambda: next(updates))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "'d'" in (err.details() or "")


def test_watch_checks_its_request(stub: pb_grpc.StreamStatsStub) -> None:
    stub.AddNum(pb.AddNumRequest(stream="v", value=1.0), timeout=T)
    for request, fragment in [
        (pb.WatchRequest(stream="v", min_interval=interval(0.001)), "min_interval: must be at least 0.01s"),
        (pb.WatchRequest(stream="v", min_interval=duration_pb2.Duration(seconds=-1)), "min_interval"),
        (pb.WatchRequest(stream="v", query=pb.StatsQuery(quantiles=[2.0])), "query.quantiles[0]"),
        (pb.WatchRequest(stream="missing"), "'missing' not found"),
    ]:
        err = error_of(lambda request=request: next(iter(stub.Watch(request, timeout=T))))  # type: ignore[misc]
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        assert fragment in (err.details() or ""), err.details()


def test_a_reader_that_stops_reading_never_blocks_writers(stub: pb_grpc.StreamStatsStub) -> None:
    stub.AddNum(pb.AddNumRequest(stream="slow", value=0.0), timeout=T)
    updates = watch(stub, "slow", every=0.01, k=2000)  # ~32 KB per update: flow control fills fast
    assert next(updates).stats.count == 1
    values = [float(i) for i in range(1000)]
    for _ in range(300):  # the reader reads nothing meanwhile
        stub.AddNums(pb.AddNumsRequest(stream="slow", values=values), timeout=T)
    final = until_count(updates, 300_001)[-1]  # it then catches up to the latest state
    assert final.stats.total_added == 300_001
    updates.cancel()


async def test_a_hundred_concurrent_watchers(server_address: str) -> None:
    async with grpc.aio.insecure_channel(server_address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        await stub.CreateStream(pb.CreateStreamRequest(name="many"), timeout=T)
        calls = [
            stub.Watch(
                pb.WatchRequest(
                    stream="many", query=pb.StatsQuery(quantiles=[0.5]), min_interval=interval(0.05)
                ),
                timeout=T,
            )
            for _ in range(100)
        ]

        async def last_count(call: grpc.aio.UnaryStreamCall[pb.WatchRequest, pb.WatchUpdate]) -> int:
            """The changes a watcher was told of, up to the update showing all 1000 values."""
            total = 0
            while True:
                update = await call.read()
                assert isinstance(update, pb.WatchUpdate), "the watch ended early"
                total += update.changes
                if update.stats.count == 1000:
                    call.cancel()
                    return total

        firsts = [await call.read() for call in calls]
        assert all(isinstance(u, pb.WatchUpdate) and u.stats.count == 0 for u in firsts)
        readers = [asyncio.create_task(last_count(call)) for call in calls]
        for i in range(100):
            await stub.AddNums(pb.AddNumsRequest(stream="many", values=[float(i)] * 10), timeout=T)
        assert await asyncio.gather(*readers) == [100] * 100


def test_a_server_shutdown_ends_watches_cleanly() -> None:
    server = ThreadedServer(TEST_CONFIG)
    address = server.start()
    stopped = False
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.StreamStatsStub(channel)
            stub.AddNum(pb.AddNumRequest(stream="s", value=1.0), timeout=T)
            updates = watch(stub, "s")
            assert next(updates).stats.count == 1
            stopper = threading.Thread(target=server.stop)
            stopper.start()
            assert list(updates) == []  # the stream of updates simply ends: status OK
            assert updates.code() == grpc.StatusCode.OK
            stopper.join()
            stopped = True
    finally:
        if not stopped:
            server.stop()


def test_a_watch_counts_as_a_call_in_progress(server_factory: ServerFactory) -> None:
    # A watch is a call in progress: it counts against --max-concurrent-rpcs like any other.
    address = server_factory(max_concurrent_rpcs=2)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        stub.AddNum(pb.AddNumRequest(stream="x", value=1.0), timeout=T)
        first, second = watch(stub, "x"), watch(stub, "x")
        next(first), next(second)
        err = error_of(lambda: stub.GetStream(pb.GetStreamRequest(name="x"), timeout=T))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.cancel()
        second.cancel()


def test_watchers_of_one_query_share_snapshots_but_not_across_queries(server_address: str) -> None:
    # Two watchers of the same query see the same state; a watcher with another query gets its own.
    with grpc.insecure_channel(server_address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        stub.AddNums(pb.AddNumsRequest(stream="q", values=[1.0, 2.0, 3.0, 4.0]), timeout=T)
        same = [watch(stub, "q", quantiles=[0.5]) for _ in range(2)]
        other = watch(stub, "q", quantiles=[0.25], k=1)
        firsts = [next(w) for w in same]
        assert firsts[0].stats == firsts[1].stats
        assert [q.value for q in firsts[0].stats.quantiles] == [2.5]
        mine = next(other)
        assert ([q.value for q in mine.stats.quantiles], list(mine.stats.top)) == ([1.75], [4.0])
        stub.AddNum(pb.AddNumRequest(stream="q", value=100.0), timeout=T)
        assert [next(w).stats.quantiles[0].value for w in same] == [3.0, 3.0]
        assert next(other).stats.top[0] == 100.0
        for w in (*same, other):
            w.cancel()
