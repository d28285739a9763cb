"""The server's limits: a call that would pass one is RESOURCE_EXHAUSTED naming the limit and its value,
and changes nothing. Keepalive tolerates polite clients and drops abusive ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.conftest import TEST_CONFIG, ServerFactory, ThreadedServer
from tests.e2e.calls import error_of

T = 10.0


def assert_exhausted(call: Callable[[], object], *fragments: str) -> None:
    err = error_of(call)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    for fragment in fragments:
        assert fragment in (err.details() or ""), (fragment, err.details())


@contextmanager
def connect(address: str) -> Iterator[pb_grpc.StreamStatsStub]:
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.StreamStatsStub(channel)


def stream_names(stub: pb_grpc.StreamStatsStub) -> list[str]:
    return [s.name for s in stub.ListStreams(pb.ListStreamsRequest(), timeout=T).streams]


def test_max_streams(server_factory: ServerFactory) -> None:
    with connect(server_factory(max_streams=2)) as stub:
        stub.CreateStream(pb.CreateStreamRequest(name="a"), timeout=T)
        stub.AddNum(pb.AddNumRequest(stream="b", value=1), timeout=T)
        assert_exhausted(
            lambda: stub.CreateStream(pb.CreateStreamRequest(name="c"), timeout=T), "--max-streams=2", "'c'"
        )
        assert_exhausted(
            lambda: stub.AddNum(pb.AddNumRequest(stream="c", value=1), timeout=T), "--max-streams=2"
        )
        assert_exhausted(
            lambda: stub.StreamNums(iter([pb.AddNumsRequest(stream="c", values=[1])]), timeout=T),
            "--max-streams=2",
        )
        assert stream_names(stub) == ["a", "b"]
        # Existing streams still take values and the same CreateStream still answers OK.
        stub.AddNum(pb.AddNumRequest(stream="a", value=1), timeout=T)
        stub.CreateStream(pb.CreateStreamRequest(name="a"), timeout=T)
        stub.DeleteStream(pb.DeleteStreamRequest(name="a"), timeout=T)
        stub.CreateStream(pb.CreateStreamRequest(name="c"), timeout=T)
        assert stream_names(stub) == ["b", "c"]


def test_max_values_is_a_budget_across_streams(server_factory: ServerFactory) -> None:
    with connect(server_factory(max_values=10)) as stub:
        stub.AddNums(pb.AddNumsRequest(stream="a", values=[1.0] * 6), timeout=T)
        stub.AddNums(pb.AddNumsRequest(stream="b", values=[2.0] * 3), timeout=T)
        assert_exhausted(
            lambda: stub.AddNums(pb.AddNumsRequest(stream="b", values=[3.0, 3.0]), timeout=T),
            "--max-values=10",
            "cannot add 2 values to 'b'",
        )
        # Nothing of the rejected batch was applied.
        got = stub.GetStream(pb.GetStreamRequest(name="b"), timeout=T)
        assert (got.count, got.total_added) == (3, 3)
        stub.AddNum(pb.AddNumRequest(stream="b", value=3.0), timeout=T)  # exactly at the limit
        assert_exhausted(
            lambda: stub.AddNum(pb.AddNumRequest(stream="c", value=1), timeout=T), "--max-values=10"
        )
        assert stream_names(stub) == ["a", "b"]  # the refused add did not create "c" either
        # A count window that is full holds no more values however much is added to it.
        stub.DeleteStream(pb.DeleteStreamRequest(name="a"), timeout=T)
        config = pb.StreamConfig(window_size=4)
        stub.CreateStream(pb.CreateStreamRequest(name="w", config=config), timeout=T)
        for _ in range(5):
            stub.AddNums(pb.AddNumsRequest(stream="w", values=[float(i) for i in range(100)]), timeout=T)
        assert stub.GetStream(pb.GetStreamRequest(name="w"), timeout=T).count == 4
        assert_exhausted(
            lambda: stub.AddNums(pb.AddNumsRequest(stream="b", values=[1.0, 1.0, 1.0]), timeout=T),
            "--max-values=10",
        )
        stub.AddNums(pb.AddNumsRequest(stream="b", values=[1.0, 1.0]), timeout=T)  # 4 + 6 = 10


def test_max_values_counts_what_recovery_loaded(tmp_path: Path) -> None:
    config = replace(TEST_CONFIG, data_dir=str(tmp_path), max_values=5)
    first = ThreadedServer(config)
    try:
        with connect(first.start()) as stub:
            stub.AddNums(pb.AddNumsRequest(stream="a", values=[1.0] * 4), timeout=T)
    finally:
        first.stop()
    second = ThreadedServer(config)
    try:
        with connect(second.start()) as stub:
            assert_exhausted(
                lambda: stub.AddNums(pb.AddNumsRequest(stream="b", values=[1.0, 1.0]), timeout=T),
                "--max-values=5",
                "(4 live values held)",
            )
            stub.AddNum(pb.AddNumRequest(stream="b", value=1.0), timeout=T)
    finally:
        second.stop()


def test_max_concurrent_rpcs(server_factory: ServerFactory) -> None:
    address = server_factory(max_concurrent_rpcs=2)
    release = threading.Event()
    started = threading.Semaphore(0)

    def held_open() -> Iterator[pb.AddNumsRequest]:
        yield pb.AddNumsRequest(stream="held", values=[1.0])
        started.release()
        release.wait(T)

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        futures = [stub.StreamNums.future(held_open(), timeout=T) for _ in range(2)]
        for _ in futures:
            assert started.acquire(timeout=T)
        # The client has sent both first messages; the server counts a call from when its handler
        # starts, a moment later. Until then a third call may still get through (NOT_FOUND or OK).
        deadline = time.monotonic() + T
        while True:
            err = error_of(lambda: stub.FindMedian(pb.FindMedianRequest(stream="nope"), timeout=T))
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                break
            assert err.code() == grpc.StatusCode.NOT_FOUND
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-concurrent-rpcs=2" in (err.details() or "")
        assert "too many calls in progress" in (err.details() or "")
        # Health probes are not StreamStats calls: they still answer.
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=T).status == 1
        release.set()
        assert [f.result().values_added for f in futures] == [1, 1]
        assert stub.FindMedian(pb.FindMedianRequest(stream="held"), timeout=T).count == 2


def test_an_oversized_message_is_refused_naming_the_limit(server_factory: ServerFactory) -> None:
    with connect(server_factory(max_message_bytes=4096)) as stub:
        err = error_of(lambda: stub.AddNums(pb.AddNumsRequest(stream="a", values=[1.0] * 1000), timeout=T))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "4096" in (err.details() or "")
        assert error_of(lambda: stub.GetStream(pb.GetStreamRequest(name="a"), timeout=T)).code() == (
            grpc.StatusCode.NOT_FOUND
        )


def test_keepalive_drops_a_client_that_pings_too_often(server_factory: ServerFactory) -> None:
    address = server_factory()
    abusive = [
        ("grpc.keepalive_time_ms", 10),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    release = threading.Event()

    def held_open() -> Iterator[pb.AddNumsRequest]:
        yield pb.AddNumsRequest(stream="k", values=[1.0])
        release.wait(T)

    with grpc.insecure_channel(address, options=abusive) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        err = error_of(lambda: stub.StreamNums(held_open(), timeout=T))
        release.set()
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "Too many pings"
