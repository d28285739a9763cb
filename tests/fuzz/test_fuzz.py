"""Malformed and extreme requests at every RPC: the server never crashes, never answers INTERNAL or
UNKNOWN, and what it holds afterwards is exactly what the calls it accepted put there."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.conftest import TEST_CONFIG, ThreadedServer

T = 10.0
MAX_MESSAGE = 64 * 1024
SERVICE = pb.DESCRIPTOR.services_by_name["StreamStats"]
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    threaded = ThreadedServer(
        replace(TEST_CONFIG, max_message_bytes=MAX_MESSAGE, max_k=1000, max_streams=500)
    )
    threaded.start()
    yield threaded
    threaded.stop()


@pytest.fixture(scope="module")
def channel(server: ThreadedServer) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 4 * MAX_MESSAGE)]  # so oversized requests reach the server
    with grpc.insecure_channel(server.server.address, options=options) as chan:
        yield chan


def outcome(call: Callable[[], object]) -> grpc.StatusCode:
    """The call's status; fails the test on INTERNAL or UNKNOWN."""
    code, details = grpc.StatusCode.OK, ""
    try:
        call()
    except grpc.RpcError as error:
        call_error: grpc.Call = error  # type: ignore[assignment]  # what a call raises is also a grpc.Call
        code, details = call_error.code(), call_error.details() or ""
    assert code not in FORBIDDEN, f"{code}: {details}"
    return code


def status_of(method: Callable[..., object], request: object) -> grpc.StatusCode:
    return outcome(functools.partial(method, request, timeout=T))


def raw_call(channel: grpc.Channel, method: Any, payloads: list[bytes]) -> Callable[[], object]:
    """The method called with raw bytes (no serializer): what a broken client would send."""
    path = f"/{SERVICE.full_name}/{method.name}"
    if method.client_streaming and method.server_streaming:
        return lambda: list(channel.stream_stream(path, None, None)(iter(payloads), timeout=T))
    if method.client_streaming:
        return lambda: channel.stream_unary(path, None, None)(iter(payloads), timeout=T)
    if method.server_streaming:

        def first_update() -> object:
            call = channel.unary_stream(path, None, None)(payloads[0], timeout=T)
            try:
                return next(iter(call))  # a Watch never ends by itself: its first update (or error) will do
            finally:
                call.cancel()  # type: ignore[no-untyped-call]

        return first_update
    return lambda: channel.unary_unary(path, None, None)(payloads[0], timeout=T)


@FUZZ
@given(
    method=st.sampled_from(list(SERVICE.methods)),
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
)
def test_random_bytes_never_fail_inside_the_server(
    channel: grpc.Channel, method: Any, payloads: list[bytes]
) -> None:
    outcome(raw_call(channel, method, payloads))


def test_bytes_that_are_not_the_message_are_invalid_argument(channel: grpc.Channel) -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # a length-delimited field far longer than the message
    for method in SERVICE.methods:
        call = raw_call(channel, method, [garbage])
        with pytest.raises(grpc.RpcError) as info:
            call()
        error = info.value
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, method.name
        assert f"not a valid streamstats.v1.{method.input_type.name} message" in (error.details() or "")


names = st.one_of(
    st.sampled_from(["a", "b", "c.d", "x/y", "z-1"]),
    st.text(max_size=40),
    st.text(alphabet="ab\x00\n ", max_size=5),
    st.integers(129, 70_000).map(lambda n: "n" * n),  # too long, up to beyond the message limit
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, math.nan, math.inf]),
)
durations = st.one_of(
    st.none(),
    st.builds(
        duration_pb2.Duration,
        seconds=st.integers(-(2**63), 2**63 - 1),
        nanos=st.integers(-(2**31), 2**31 - 1),
    ),
    st.just(duration_pb2.Duration(seconds=10**6)),
)


class Model:
    """What the server should hold: the live values of every stream, from the calls it accepted.
    (Windows here are count windows; the only time windows are too long to expire during the test.)"""

    def __init__(self) -> None:
        self.streams: dict[str, list[float]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, name: str, batch: list[float]) -> None:
        live = self.streams.setdefault(name, [])
        live.extend(v + 0.0 for v in batch)
        size = self.sizes.get(name, 0)
        if size:
            del live[: max(0, len(live) - size)]


@FUZZ
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(
                st.just("create"), names, st.integers(0, 2**64 - 1) | st.sampled_from([0, 1, 3]), durations
            ),
            st.tuples(st.just("add"), names, st.lists(values, max_size=20)),
            st.tuples(st.just("big"), names, st.integers(7_000, 9_000)),  # around the 64 KiB limit
            st.tuples(
                st.just("stream"), st.lists(st.tuples(names, st.lists(values, max_size=5)), max_size=4)
            ),
            st.tuples(st.just("query"), names, st.integers(0, 2**32 - 1) | st.integers(0, 1001)),
            st.tuples(st.just("stats"), names, st.lists(values, max_size=4), st.integers(-1, 6)),
            st.tuples(
                st.just("list"), st.text(max_size=5), st.integers(-(2**31), 2**31 - 1), st.text(max_size=10)
            ),
            st.tuples(st.just("delete"), names),
        ),
        max_size=12,
    )
)
def test_extreme_requests_leave_a_consistent_state(
    server: ThreadedServer, channel: grpc.Channel, steps: list[tuple[Any, ...]]
) -> None:
    stub = pb_grpc.StreamStatsStub(channel)
    model = Model()
    for name in [v.name for v in _all_streams(stub)]:  # start from a clean server for each example
        stub.DeleteStream(pb.DeleteStreamRequest(name=name), timeout=T)
    for step in steps:
        kind, *args = step
        if kind == "create":
            name, size, duration = args
            config = pb.StreamConfig(window_size=size, window_duration=duration)
            request = pb.CreateStreamRequest(name=name, config=config)
            if status_of(stub.CreateStream, request) is grpc.StatusCode.OK and name not in model.streams:
                model.streams[name] = []
                model.sizes[name] = size
        elif kind == "add":
            name, batch = args
            if status_of(stub.AddNums, pb.AddNumsRequest(stream=name, values=batch)) is grpc.StatusCode.OK:
                model.add(name, batch)
        elif kind == "big":
            name, n = args
            batch = [float(i) for i in range(n)]
            if status_of(stub.AddNums, pb.AddNumsRequest(stream=name, values=batch)) is grpc.StatusCode.OK:
                model.add(name, batch)
        elif kind == "stream":
            (messages,) = args
            requests = [pb.AddNumsRequest(stream=n, values=b) for n, b in messages]
            status_of(stub.StreamNums, iter(requests))
            # Applied: every message up to the first the server refused; mirror that by replaying
            # each message's own validity (the server applies them one by one, in order).
            for n, b in messages:
                if not _valid_add(n, b):
                    break
                model.add(n, b)
        elif kind == "query":
            name, k = args
            status_of(stub.FindMedian, pb.FindMedianRequest(stream=name))
            status_of(stub.TopK, pb.TopKRequest(stream=name, k=k))
            status_of(stub.BottomK, pb.BottomKRequest(stream=name, k=k))
        elif kind == "stats":
            name, quantiles, method = args
            query = pb.StatsQuery(quantiles=quantiles, quantile_method=method % 5, k=abs(method))
            status_of(stub.GetStats, pb.GetStatsRequest(stream=name, query=query))
        elif kind == "list":
            prefix, size, token = args
            status_of(
                stub.ListStreams, pb.ListStreamsRequest(prefix=prefix, page_size=size, page_token=token)
            )
        else:
            (name,) = args
            if status_of(stub.DeleteStream, pb.DeleteStreamRequest(name=name)) is grpc.StatusCode.OK:
                del model.streams[name]
    _assert_server_matches(server, model)
    health = health_pb2_grpc.HealthStub(channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest(), timeout=T).status
        == health_pb2.HealthCheckResponse.SERVING
    )


def _valid_add(name: str, batch: list[float]) -> bool:
    from streamstats_server.validation import _NAME

    return _NAME.fullmatch(name) is not None and all(map(math.isfinite, batch)) and len(name) <= 128


def _all_streams(stub: pb_grpc.StreamStatsStub) -> list[pb.Stream]:
    streams: list[pb.Stream] = []
    token = ""
    while True:
        page = stub.ListStreams(pb.ListStreamsRequest(page_size=1000, page_token=token), timeout=T)
        streams += page.streams
        token = page.next_page_token
        if not token:
            return streams


def _assert_server_matches(server: ThreadedServer, model: Model) -> None:
    registry = server.server.registry
    held = {name: registry._streams[name] for name in registry._streams}
    assert set(held) == set(model.streams)
    total = 0
    for name, stream in held.items():
        stream.window._check()
        live = [v for v, _ in stream.window.items()]
        assert live == model.streams[name], name
        total += len(live)
    assert registry.values_held == total
