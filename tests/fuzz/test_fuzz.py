"""Malformed and extreme requests at every RPC of streamstats.v1.StreamStats.

Every request goes out as raw bytes (a method called with no serializer): random bytes, or the
serialization of a message with extreme fields (empty, NUL, non-ASCII and megabyte names, NaN and
infinities, zero and huge k, negative page sizes, garbage page tokens, negative and enormous windows
and intervals, batches around the message limit, StreamNums mixing good, bad and unparsable
messages), some of them cancelled midway or given a deadline too short to finish.

A model of the server (the streams, the values the accepted calls put there, the limits) predicts
each call's status code and checks each answer. Every failure must be a code the API documents
(never INTERNAL or UNKNOWN). After each example every stream's structures pass their ``_check()`` and
hold exactly the model's values (a refused call changed nothing), the server still answers health
checks and a listing, and on a durable data dir a restart brings back exactly what it held.

One server per module and storage mode (in memory, durable; a durable one is restarted after each
example to check recovery), with a small message limit so batches around it are cheap. Instead of
sleeping, the test learns from an interceptor when the server has finished with a call.
"""

from __future__ import annotations

import base64
import functools
import math
import re
import string
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streamstats.v1 import streamstats_pb2 as pb
from streamstats_server.config import ServerConfig
from streamstats_server.registry import Registry
from streamstats_server.storage.fs import OsFileSystem
from streamstats_server.stream import WindowConfig
from tests.conftest import TEST_CONFIG, ThreadedServer

T = 10.0  # every call's deadline, and the longest wait for the server
MAX_MESSAGE = 256 * 1024  # the server's --max-message-bytes here
MAX_K = 1000
MAX_STREAMS = 6  # small, so examples reach it
NS = 1_000_000_000
LONG_NS = 3600 * NS  # a time window at least this long cannot drop values during a test
SURELY_ACCEPTED_NS = 100 * 365 * 86400 * NS  # a longer window may be accepted or refused as too long
MIN_WATCH_NS = 10_000_000
MAX_QUANTILES = 100
MAX_FLOAT = 1.7976931348623157e308
SIGNALING_NAN: float = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf0\x7f")[0]

SERVICE = pb.DESCRIPTOR.services_by_name["StreamStats"]
METHODS = {method.name: method for method in SERVICE.methods}
UNARY = sorted(name for name, m in METHODS.items() if not m.client_streaming and not m.server_streaming)
Code = grpc.StatusCode
OK, INVALID, NOT_FOUND = Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND
EXISTS, EXHAUSTED, CANCELLED, LATE = (
    Code.ALREADY_EXISTS,
    Code.RESOURCE_EXHAUSTED,
    Code.CANCELLED,
    Code.DEADLINE_EXCEEDED,
)
# What the API documents for a server without tokens: anything else (INTERNAL, UNKNOWN, ...) is a bug.
DOCUMENTED = frozenset({OK, INVALID, NOT_FOUND, EXISTS, EXHAUSTED, CANCELLED, LATE})
NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_.:/-")
QUANTILE_METHODS = {0: "linear", 1: "linear", 2: "lower", 3: "higher", 4: "nearest"}


def valid_name(name: str) -> bool:
    return 1 <= len(name) <= 128 and NAME_CHARS.issuperset(name)


# --- the server, and what the test learns from it ---------------------------------------------------

if TYPE_CHECKING:  # grpc-stubs makes it generic; at run time it is not subscriptable
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class Tracker(_ServerInterceptor):
    """Counts the StreamStats calls whose handler is running, and the messages the current StreamNums
    handler has asked for (it asks for the next only once it has applied the previous one), so the
    test can wait for the server instead of sleeping. Watch is not counted: it changes nothing."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.running = 0
        self.streams_started = 0
        self.streams_finished = 0
        self.pulls = 0

    def wait(self, reached: Callable[[], bool]) -> None:
        with self._changed:
            assert self._changed.wait_for(reached, timeout=T), "the server did not get there in time"

    def wait_idle(self) -> None:
        self.wait(lambda: self.running == 0)

    def _note(self, running: int = 0, started: int = 0, finished: int = 0, pulls: int = 0) -> None:
        with self._changed:
            self.running += running
            self.streams_started += started
            self.streams_finished += finished
            self.pulls = 0 if started else self.pulls + pulls
            self._changed.notify_all()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None or not str(details.method).startswith(f"/{SERVICE.full_name}/"):
            return handler
        codecs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary), **codecs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._streaming(handler.stream_unary), **codecs)
        return handler

    def _unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(request: Any, context: Any) -> Any:
            self._note(running=1)
            try:
                return await behavior(request, context)
            finally:
                self._note(running=-1)

        return run

    def _streaming(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(requests: AsyncIterator[Any], context: Any) -> Any:
            self._note(running=1, started=1)
            try:
                return await behavior(self._counted(requests), context)
            finally:
                self._note(running=-1, finished=1)

        return run

    async def _counted(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        iterator = aiter(requests)
        while True:
            self._note(pulls=1)
            try:
                request = await anext(iterator)
            except StopAsyncIteration:
                return
            yield request


class GatedFileSystem(OsFileSystem):
    """The real file layer, except that the next fsync can be held until the test releases it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gate: threading.Event | None = None
        self.holding = threading.Event()

    def hold_next_sync(self) -> threading.Event:
        """Hold the next fsync (``holding`` is set once it waits) until the returned event is set."""
        gate = threading.Event()
        with self._lock:
            self._gate = gate
            self.holding.clear()
        return gate

    def sync(self, file: BinaryIO) -> None:
        with self._lock:
            gate, self._gate = self._gate, None
        if gate is not None:
            self.holding.set()
            gate.wait(T)
        super().sync(file)


@dataclass(frozen=True)
class Held:
    """One stream as the server holds it."""

    config: WindowConfig
    create_time_ns: int
    total_added: int
    items: list[tuple[float, int]]  # (value, arrival ns), oldest first

    @property
    def values(self) -> list[float]:
        return [value for value, _ in self.items]


async def _held(registry: Registry) -> dict[str, Held]:
    """Every stream, each read and checked under its lock on the server's loop."""
    held: dict[str, Held] = {}
    for name, stream in list(registry._streams.items()):
        async with stream.lock:
            if stream.deleted:
                continue
            stream.window._check()
            items = list(stream.window.items())
            held[name] = Held(stream.config, stream.create_time_ns, stream.total_added, items)
    assert registry.values_held == sum(len(h.items) for h in held.values())
    return held


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str = ""
    response: bytes = b""
    error: grpc.Call | None = None


class Harness:
    """A server (restartable on its data dir) and a channel to it that sends any size of message."""

    def __init__(self, config: ServerConfig, fs: OsFileSystem | None = None) -> None:
        self.config = config
        self.fs = fs
        self.tracker = Tracker()
        self._threaded: ThreadedServer | None = None
        self._channel: grpc.Channel | None = None

    @property
    def durable(self) -> bool:
        return not self.config.in_memory

    @property
    def channel(self) -> grpc.Channel:
        assert self._channel is not None
        return self._channel

    def start(self) -> None:
        self._threaded = ThreadedServer(self.config, [self.tracker], fs=self.fs)
        address = self._threaded.start()
        # The client sends up to 8 MiB, so oversized requests reach the server (which refuses them).
        options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
        self._channel = grpc.insecure_channel(address, options=options)

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._threaded is not None:
            self._threaded.stop()
            self._threaded = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def held(self) -> dict[str, Held]:
        assert self._threaded is not None
        result: dict[str, Held] = self._threaded._run(_held(self._threaded.server.registry))
        return result

    def path(self, method: str) -> str:
        return f"/{SERVICE.full_name}/{method}"

    def unary_unary(self, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
        return self.channel.unary_unary(self.path(method), None, None)

    def stream_unary(self, method: str) -> grpc.StreamUnaryMultiCallable[bytes, bytes]:
        return self.channel.stream_unary(self.path(method), None, None)

    def unary_stream(self, method: str) -> grpc.UnaryStreamMultiCallable[bytes, bytes]:
        return self.channel.unary_stream(self.path(method), None, None)

    def call(self, method: str, payload: bytes, timeout: float = T) -> Outcome:
        try:
            response = self.unary_unary(method)(payload, timeout=timeout)
        except grpc.RpcError as error:
            return outcome_of_error(error)
        return Outcome(OK, response=response)

    def assert_serving(self) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        for service in ("", SERVICE.full_name):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=T)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def outcome_of_error(error: grpc.RpcError) -> Outcome:
    assert isinstance(error, grpc.Call)
    return Outcome(error.code(), error.details() or "", error=error)


@pytest.fixture(scope="module", params=["memory", "durable"])
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    data_dir = str(tmp_path_factory.mktemp("fuzz-data")) if request.param == "durable" else ""
    config = replace(
        TEST_CONFIG,
        data_dir=data_dir,
        max_message_bytes=MAX_MESSAGE,
        max_k=MAX_K,
        max_streams=MAX_STREAMS,
    )
    server = Harness(config)
    server.start()
    yield server
    server.stop()


# --- the model: what the server should hold, and what each call should answer ------------------------


@dataclass
class Live:
    """One stream as the model sees it: its config and the values it must hold."""

    config: WindowConfig
    values: list[float] = field(default_factory=list)
    total: int = 0

    @property
    def exact(self) -> bool:
        """Whether the model knows the live values exactly: no time window short enough to drop
        values while the test runs (with one, the server holds a suffix of ``values``)."""
        return not 0 < self.config.window_duration_ns < LONG_NS

    def add(self, batch: Sequence[float]) -> None:
        self.values.extend(value + 0.0 for value in batch)  # -0.0 is kept as 0.0
        self.total += len(batch)
        size = self.config.window_size
        if size and len(self.values) > size:
            del self.values[: len(self.values) - size]


@dataclass
class Expect:
    """A call's predicted codes (more than one where the API leaves a choice), what an OK changes in
    the model, and a check of an OK answer against the model (after the change)."""

    codes: frozenset[grpc.StatusCode]
    apply: Callable[[], object] | None = None
    check: Callable[[bytes], None] | None = None
    malformed: str = ""  # the request type, when the request does not parse


def expect(*codes: grpc.StatusCode, **kwargs: Any) -> Expect:
    return Expect(frozenset(codes), **kwargs)


class Model:
    def __init__(self) -> None:
        self.streams: dict[str, Live] = {}
        self.tokens: dict[str, str] = {}  # the page tokens the server issued -> the name they follow

    def predict(self, method: str, payload: bytes) -> Expect:
        if len(payload) > MAX_MESSAGE:
            return expect(EXHAUSTED)
        request_class = getattr(pb, METHODS[method].input_type.name)
        try:
            request = request_class.FromString(payload)
        except DecodeError:
            return expect(INVALID, malformed=request_class.DESCRIPTOR.full_name)
        oracle: Callable[[Any], Expect] = getattr(self, f"_{method}")
        return oracle(request)

    def _CreateStream(self, r: pb.CreateStreamRequest) -> Expect:
        duration = r.config.window_duration
        if not valid_name(r.name) or duration.seconds < 0 or not 0 <= duration.nanos < NS:
            return expect(INVALID)
        config = WindowConfig(r.config.window_size, duration.seconds * NS + duration.nanos)
        apply = None
        if r.name in self.streams:
            code = OK if self.streams[r.name].config == config else EXISTS
        elif len(self.streams) >= MAX_STREAMS:
            code = EXHAUSTED
        else:
            code = OK
            apply = functools.partial(self.streams.__setitem__, r.name, Live(config))
        codes = {code} if config.window_duration_ns <= SURELY_ACCEPTED_NS else {code, INVALID}
        return Expect(frozenset(codes), apply, lambda answer: self.check_stream(pb.Stream.FromString(answer)))

    def _GetStream(self, r: pb.GetStreamRequest) -> Expect:
        return self._read(r.name, True, lambda answer: self.check_stream(pb.Stream.FromString(answer)))

    def _DeleteStream(self, r: pb.DeleteStreamRequest) -> Expect:
        return self._read(r.name, True, apply=functools.partial(self.streams.pop, r.name))

    def _ListStreams(self, r: pb.ListStreamsRequest) -> Expect:
        if r.page_size < 0:
            return expect(INVALID)
        limit = 100 if r.page_size == 0 else min(r.page_size, 1000)
        known = r.page_token == "" or r.page_token in self.tokens
        after = self.tokens.get(r.page_token)

        def check(answer: bytes) -> None:
            page = pb.ListStreamsResponse.FromString(answer)
            names = sorted(name for name in self.streams if name.startswith(r.prefix))
            got = [stream.name for stream in page.streams]
            for stream in page.streams:
                self.check_stream(stream)
            if known:
                rest = [name for name in names if after is None or name > after]
                assert got == rest[:limit]
                assert bool(page.next_page_token) == (len(rest) > limit)
            elif got:  # a token the server did not issue but took: a run of names from somewhere on
                start = names.index(got[0])
                assert got == names[start : start + len(got)] and len(got) <= limit
            if page.next_page_token:
                self.tokens[page.next_page_token] = got[-1]

        # The contract refuses tokens the server did not issue; today a well-formed one is taken.
        return expect(OK, check=check) if known else expect(OK, INVALID, check=check)

    def _AddNum(self, r: pb.AddNumRequest) -> Expect:
        return self.add(r.stream, [r.value], pb.AddNumResponse)

    def _AddNums(self, r: pb.AddNumsRequest) -> Expect:
        return self.add(r.stream, list(r.values), pb.AddNumsResponse)

    def add(self, name: str, values: list[float], response: type[Message] = pb.AddNumsResponse) -> Expect:
        if not valid_name(name) or not all(map(math.isfinite, values)):
            return expect(INVALID)
        if name not in self.streams and len(self.streams) >= MAX_STREAMS:
            return expect(EXHAUSTED)

        def apply() -> None:
            self.streams.setdefault(name, Live(WindowConfig())).add(values)

        def check(answer: bytes) -> None:
            message: Any = response.FromString(answer)
            self.check_count(name, message.count, message.total_added)

        return expect(OK, apply=apply, check=check)

    def _FindMedian(self, r: pb.FindMedianRequest) -> Expect:
        def check(answer: bytes) -> None:
            message = pb.FindMedianResponse.FromString(answer)
            live = self.check_count(r.stream, message.count, None)
            if live.exact:
                assert message.HasField("median") == bool(live.values)
                if live.values:
                    assert message.median == median(sorted(live.values))

        return self._read(r.stream, True, check)

    def _TopK(self, r: pb.TopKRequest) -> Expect:
        return self._top_or_bottom(r.stream, r.k, pb.TopKResponse, top=True)

    def _BottomK(self, r: pb.BottomKRequest) -> Expect:
        return self._top_or_bottom(r.stream, r.k, pb.BottomKResponse, top=False)

    def _top_or_bottom(self, name: str, k: int, response: type[Message], *, top: bool) -> Expect:
        def check(answer: bytes) -> None:
            message: Any = response.FromString(answer)
            live = self.check_count(name, message.count, None)
            if live.exact:
                ordered = sorted(live.values, reverse=top)
                assert list(message.values) == ordered[:k]

        return self._read(name, 1 <= k <= MAX_K, check)

    def _GetStats(self, r: pb.GetStatsRequest) -> Expect:
        def check(answer: bytes) -> None:
            self.check_stats(r.stream, pb.GetStatsResponse.FromString(answer).stats, r.query)

        return self._read(r.stream, query_ok(r.query), check)

    def _Watch(self, r: pb.WatchRequest) -> Expect:
        interval = r.min_interval
        interval_ns = interval.seconds * NS + interval.nanos
        interval_ok = (
            interval.seconds >= 0 and 0 <= interval.nanos < NS and not 0 < interval_ns < MIN_WATCH_NS
        )

        def check(answer: bytes) -> None:
            update = pb.WatchUpdate.FromString(answer)
            assert update.changes == 0
            self.check_stats(r.stream, update.stats, r.query)

        return self._read(r.stream, query_ok(r.query) and interval_ok, check)

    def _read(
        self,
        name: str,
        valid: bool,
        check: Callable[[bytes], None] | None = None,
        apply: Callable[[], object] | None = None,
    ) -> Expect:
        """A call on an existing stream: INVALID_ARGUMENT for a bad name or field, then NOT_FOUND."""
        if not valid_name(name) or not valid:
            return expect(INVALID)
        if name not in self.streams:
            return expect(NOT_FOUND)
        return expect(OK, apply=apply, check=check)

    def check_stream(self, stream: pb.Stream) -> None:
        assert stream.name in self.streams, stream.name
        live = self.streams[stream.name]
        assert stream.config.window_size == live.config.window_size
        assert stream.config.window_duration.ToNanoseconds() == live.config.window_duration_ns
        assert stream.create_time.ToNanoseconds() > 0
        self.check_count(stream.name, stream.count, stream.total_added)

    def check_count(self, name: str, count: int, total: int | None) -> Live:
        live = self.streams[name]
        assert count == len(live.values) if live.exact else count <= len(live.values)
        assert total is None or total == live.total
        return live

    def check_stats(self, name: str, stats: pb.Stats, query: pb.StatsQuery) -> None:
        live = self.check_count(name, stats.count, stats.total_added)
        if not live.exact:
            return
        values = sorted(live.values)
        fields: tuple[Literal["min", "max", "mean", "stddev", "median"], ...] = (
            "min",
            "max",
            "mean",
            "stddev",
            "median",
        )
        if not values:
            assert not any(stats.HasField(f) for f in fields)
            assert not (stats.quantiles or stats.top or stats.bottom)
            return
        assert all(stats.HasField(f) for f in fields)
        assert (stats.min, stats.max, stats.median) == (values[0], values[-1], median(values))
        assert stats.mean == exact_mean(values)
        assert math.isclose(stats.stddev, exact_stddev(values), rel_tol=1e-12, abs_tol=1e-320)
        assert list(stats.top) == values[::-1][: query.k]
        assert list(stats.bottom) == values[: query.k]
        assert [q.q for q in stats.quantiles] == list(query.quantiles)
        method = QUANTILE_METHODS[query.quantile_method]
        for quantile in stats.quantiles:
            check_quantile(values, quantile.q, method, quantile.value)


def query_ok(query: pb.StatsQuery) -> bool:
    return (
        len(query.quantiles) <= MAX_QUANTILES
        and all(0.0 <= q <= 1.0 for q in query.quantiles)
        and query.quantile_method in QUANTILE_METHODS
        and query.k <= MAX_K
    )


def _scaled(value: float) -> int:
    """``value * 2**1074``, exactly (every finite double is a multiple of 2**-1074)."""
    numerator, denominator = value.as_integer_ratio()
    return numerator * ((1 << 1074) // denominator)


def median(ordered: list[float]) -> float:
    n = len(ordered)
    if n % 2:
        return ordered[n // 2]
    return float((Fraction(ordered[n // 2 - 1]) + Fraction(ordered[n // 2])) / 2)  # correctly rounded


def exact_mean(values: list[float]) -> float:
    return float(Fraction(sum(map(_scaled, values)), len(values) << 1074))


def exact_stddev(values: list[float]) -> float:
    n = len(values)
    total = sum(map(_scaled, values))
    squares = sum(s * s for s in map(_scaled, values))
    variance = Fraction(n * squares - total * total, (n * n) << 2148)
    try:
        return math.sqrt(float(variance))
    except OverflowError:
        return math.sqrt(float(variance / (1 << 1024))) * 2.0**512


def check_quantile(values: list[float], q: float, method: str, got: float) -> None:
    h = (len(values) - 1) * q
    low, high = values[math.floor(h)], values[math.ceil(h)]
    with np.errstate(all="ignore"):
        reference = float(np.quantile(np.array(values), q, method=method))  # type: ignore[call-overload]
    if math.isfinite(reference):  # numpy overflows between huge values of opposite signs
        assert got == reference, (q, method)
    else:
        assert low <= got <= high, (q, method)


# --- requests -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BigName:
    """A name of ``length`` characters (built when sent; a 3 MB repr would drown a failure report)."""

    length: int

    def __str__(self) -> str:
        return "x" * self.length


@dataclass(frozen=True)
class Issued:
    """The page token the server issued last (or none yet)."""


Name = str | BigName
Part = bytes | tuple[Name, list[float]]  # a StreamNums message: raw bytes, or a stream and its values


def duration(seconds: int, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def batch_of(n: int) -> list[float]:
    """``n`` values with duplicates, both signs and a spread, cheap to make."""
    return [float((i * 7919) % 1009) - 504.5 for i in range(n)]


def values_at_limit(name: str) -> int:
    """The most values an AddNums to ``name`` can carry within the message limit."""
    n = MAX_MESSAGE // 8
    while pb.AddNumsRequest(stream=name, values=[0.0] * n).ByteSize() > MAX_MESSAGE:
        n -= 1
    return n


AT_LIMIT = values_at_limit("a")


class Fuzzer:
    """Runs steps against the harness's server, each predicted and checked by the model."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.model = Model()

    def run(self, steps: Sequence[tuple[Any, ...]]) -> None:
        self._reset()
        for kind, *args in steps:
            getattr(self, f"step_{kind}")(*args)
        self._settle()

    # The steps.

    def step_create(self, name: Name, window_size: int, window: duration_pb2.Duration | None) -> None:
        config = pb.StreamConfig(window_size=window_size, window_duration=window)
        self.unary("CreateStream", pb.CreateStreamRequest(name=str(name), config=config))

    def step_get(self, name: Name) -> None:
        self.unary("GetStream", pb.GetStreamRequest(name=str(name)))

    def step_delete(self, name: Name) -> None:
        self.unary("DeleteStream", pb.DeleteStreamRequest(name=str(name)))

    def step_list(self, prefix: Name, page_size: int, token: str | Issued) -> None:
        if isinstance(token, Issued):
            token = next(reversed(self.model.tokens), "")
        self.unary(
            "ListStreams", pb.ListStreamsRequest(prefix=str(prefix), page_size=page_size, page_token=token)
        )

    def step_add1(self, name: Name, value: float) -> None:
        self.unary("AddNum", pb.AddNumRequest(stream=str(name), value=value))

    def step_add(self, name: Name, values: list[float]) -> None:
        self.unary("AddNums", pb.AddNumsRequest(stream=str(name), values=values))

    def step_big(self, name: Name, n: int) -> None:
        self.unary("AddNums", pb.AddNumsRequest(stream=str(name), values=batch_of(n)))

    def step_median(self, name: Name) -> None:
        self.unary("FindMedian", pb.FindMedianRequest(stream=str(name)))

    def step_top(self, name: Name, k: int) -> None:
        self.unary("TopK", pb.TopKRequest(stream=str(name), k=k))

    def step_bottom(self, name: Name, k: int) -> None:
        self.unary("BottomK", pb.BottomKRequest(stream=str(name), k=k))

    def step_stats(self, name: Name, quantiles: list[float], method: int, k: int) -> None:
        query = pb.StatsQuery(quantiles=quantiles, quantile_method=method, k=k)  # type: ignore[arg-type]
        self.unary("GetStats", pb.GetStatsRequest(stream=str(name), query=query))

    def step_raw(self, method: str, payload: bytes) -> None:
        """Bytes that may not be the method's request message at all."""
        if method == "StreamNums":
            self.step_stream([payload], None)
        elif method == "Watch":
            self.watch(payload, None)
        else:
            self.call(method, payload)

    def step_watch(
        self,
        name: Name,
        quantiles: list[float],
        method: int,
        k: int,
        interval: duration_pb2.Duration | None,
        poke: list[float] | None,
    ) -> None:
        query = pb.StatsQuery(quantiles=quantiles, quantile_method=method, k=k)  # type: ignore[arg-type]
        request = pb.WatchRequest(stream=str(name), query=query, min_interval=interval)
        self.watch(request.SerializeToString(), poke)

    def step_stream(self, parts: list[Part], cancel_after: int | None) -> None:
        """StreamNums with these messages; with ``cancel_after``, the client sends that many, waits
        until the server has applied them and asks for the next, and cancels the call."""
        payloads = [
            part
            if isinstance(part, bytes)
            else pb.AddNumsRequest(stream=str(part[0]), values=part[1]).SerializeToString()
            for part in parts
        ]
        stop = cancel_after if cancel_after is not None and cancel_after < len(payloads) else None
        applied, failure = 0, None
        for payload in payloads[:stop]:
            predicted = self.model.predict("AddNums", payload)
            if predicted.codes != {OK}:
                failure = predicted
                break
            assert predicted.apply is not None
            predicted.apply()
            applied += len(pb.AddNumsRequest.FromString(payload).values)
        gate = threading.Event()

        def feed() -> Iterator[bytes]:
            for index, payload in enumerate(payloads):
                if index == stop:
                    gate.wait(T)
                    return
                yield payload

        tracker = self.harness.tracker
        started, finished = tracker.streams_started, tracker.streams_finished
        future = self.harness.stream_unary("StreamNums").future(feed(), timeout=T)
        if stop is not None:
            tracker.wait(
                lambda: (
                    tracker.streams_started > started
                    and (tracker.pulls > stop or tracker.streams_finished > finished)
                )
            )
            if tracker.streams_finished == finished:  # it waits for the next message: cancel it
                future.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped
        gate.set()
        try:
            outcome = Outcome(OK, response=future.result())
        except grpc.FutureCancelledError:
            outcome = Outcome(CANCELLED)
        except grpc.RpcError as error:
            outcome = outcome_of_error(error)
        tracker.wait_idle()
        if failure is not None:
            self.judge("StreamNums", failure, outcome)
        elif stop is not None:
            assert outcome.code == CANCELLED, (outcome.code, outcome.details)
        else:
            assert outcome.code == OK, (outcome.code, outcome.details)
            assert pb.StreamNumsResponse.FromString(outcome.response).values_added == applied
        if outcome.code == INVALID:  # the contract: the error says how much of the call was applied
            assert re.search(rf"\b{applied} values\b", outcome.details), outcome.details

    def step_rushed(self, name: Name, values: list[float], timeout: float) -> None:
        """AddNums with a deadline so short that it may pass before, during or after the call."""
        request = pb.AddNumsRequest(stream=str(name), values=values)
        predicted = self.model.predict("AddNums", request.SerializeToString())
        outcome = self.harness.call("AddNums", request.SerializeToString(), timeout=timeout)
        if outcome.code != LATE:
            self.judge("AddNums", predicted, outcome)
            return
        self.harness.assert_serving()  # after the call on the connection: the server has seen its end
        self.harness.tracker.wait_idle()
        if predicted.codes != {OK}:
            return
        assert predicted.apply is not None
        before = self.model.streams.get(request.stream)
        now = self.harness.call("GetStream", pb.GetStreamRequest(name=request.stream).SerializeToString())
        if now.code == OK:  # it was applied (all of it) or not at all
            total = pb.Stream.FromString(now.response).total_added
            possible = {before.total, before.total + len(values)} if before else {len(values)}
            assert total in possible, f"an AddNums past its deadline was half applied: total {total}"
            if before is None or total != before.total:
                predicted.apply()
        else:
            assert (now.code, before) == (NOT_FOUND, None), now

    # Calls.

    def unary(self, method: str, request: Message) -> None:
        self.call(method, request.SerializeToString())

    def call(self, method: str, payload: bytes) -> None:
        predicted = self.model.predict(method, payload)
        self.judge(method, predicted, self.harness.call(method, payload))

    def watch(self, payload: bytes, poke: list[float] | None) -> None:
        """Watch's first update (or its error), then maybe an add to the stream, then cancel it."""
        predicted = self.model.predict("Watch", payload)
        call = self.harness.unary_stream("Watch")(payload, timeout=T)
        try:
            outcome = Outcome(OK, response=next(iter(call)))
        except grpc.RpcError as error:
            outcome = outcome_of_error(error)
        except StopIteration:
            raise AssertionError("Watch ended without its first update") from None
        try:
            self.judge("Watch", predicted, outcome)
            if outcome.code == OK and poke is not None:
                self.step_add(pb.WatchRequest.FromString(payload).stream, poke)
        finally:
            call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped

    def judge(self, method: str, predicted: Expect, outcome: Outcome) -> None:
        said = f"{method}: {outcome.code.name}: {outcome.details[:300]}"
        assert outcome.code in DOCUMENTED, said
        assert outcome.code in predicted.codes, f"expected {sorted(c.name for c in predicted.codes)}; {said}"
        assert len(outcome.details) <= 1000, said  # a huge name must not be echoed back
        if outcome.code == OK:
            if predicted.apply is not None:
                predicted.apply()
            if predicted.check is not None:
                predicted.check(outcome.response)
        elif outcome.code == INVALID:
            assert predicted.malformed in outcome.details, said
            assert outcome.error is not None
            status = rpc_status.from_call(outcome.error)
            assert status is not None and len(status.details) == 1, said
            assert status.details[0].Is(error_details_pb2.BadRequest.DESCRIPTOR), said

    # Before and after each example.

    def _reset(self) -> None:
        for name in self.harness.held():
            assert (
                self.harness.call("DeleteStream", pb.DeleteStreamRequest(name=name).SerializeToString()).code
                == OK
            )

    def _settle(self) -> None:
        """No call left running; the server holds exactly the model, serves, and (durable) recovers it."""
        self.harness.tracker.wait_idle()
        held = self.harness.held()
        assert sorted(held) == sorted(self.model.streams)
        for name, live in self.model.streams.items():
            stream = held[name]
            assert (stream.config, stream.total_added) == (live.config, live.total), name
            values = stream.values
            if live.exact:
                assert values == live.values, name
            else:  # what a short time window has not dropped yet
                assert values == live.values[len(live.values) - len(values) :], name
        self.harness.assert_serving()
        self.call("ListStreams", pb.ListStreamsRequest().SerializeToString())
        if self.harness.durable:
            self.harness.restart()
            recovered = self.harness.held()
            assert sorted(recovered) == sorted(held)
            for name, stream in held.items():
                again = recovered[name]
                assert (again.config, again.create_time_ns, again.total_added) == (
                    stream.config,
                    stream.create_time_ns,
                    stream.total_added,
                ), name
                if self.model.streams[name].exact:
                    assert again.items == stream.items, name
                else:
                    shorter, longer = sorted((again.items, stream.items), key=len)
                    assert shorter == longer[len(longer) - len(shorter) :], name
            self.harness.assert_serving()


# --- strategies ----------------------------------------------------------------------------------------

POOL = ["a", "b", "c.d", "x/y:z", "Z_9-"]
ODD_NAMES = [
    "",
    "\x00",
    "a\x00",
    "a b",
    "a\n",
    "é",
    "ß" * 3,
    "a" * 128,
    "a" * 129,
    "*",
    "a\u202eb",
    "\U0001f600",
]
OVERSIZED = [BigName(MAX_MESSAGE + 1), BigName(3 * 1024 * 1024)]
names: st.SearchStrategy[Name] = st.one_of(
    st.sampled_from(POOL),  # most names: streams that calls share
    st.sampled_from(POOL),
    st.one_of(
        st.sampled_from(ODD_NAMES),
        st.text(max_size=12),
        # Not oversized: grpc takes ~0.1 s to refuse each; the edge cases send one to every RPC.
        st.builds(BigName, st.integers(129, MAX_MESSAGE - 64)),
    ),
)
EXTREMES = [MAX_FLOAT, -MAX_FLOAT, 5e-324, -5e-324, 2.2250738585072014e-308, 1e308, 0.0, -0.0]
finite = st.one_of(
    st.integers(-3, 3).map(float),
    st.sampled_from(EXTREMES),
    st.floats(allow_nan=False, allow_infinity=False),
)
anything = st.one_of(
    finite, finite, st.sampled_from([math.nan, SIGNALING_NAN, math.inf, -math.inf]), st.floats()
)
batches = st.one_of(st.lists(finite, max_size=20), st.lists(anything, max_size=20))
DURATIONS = [
    (0, 0),
    (0, 1),
    (0, 5_000_000),
    (10, 0),
    (3600, 0),
    (10**9, 0),
    (18446744073, 709551615),  # 2**64 - 1 ns
    (18446744073, 709551616),  # 2**64 ns
    (315576000000, 0),  # the largest protobuf Duration
    (2**63 - 1, 999_999_999),
    (-1, 0),
    (0, -1),
    (1, -1),
    (-1, 1),
    (0, NS),
    (0, 2**31 - 1),
    (-(2**63), -(2**31)),
]
durations = st.one_of(
    st.none(),
    st.sampled_from(DURATIONS).map(lambda sn: duration(*sn)),
    st.builds(duration, st.integers(-(2**63), 2**63 - 1), st.integers(-(2**31), 2**31 - 1)),
)
window_sizes = st.one_of(st.sampled_from([0, 1, 2, 3, 5, 2**64 - 1]), st.integers(0, 2**64 - 1))
ks = st.one_of(
    st.integers(0, 5),
    st.integers(0, 5),
    st.sampled_from([MAX_K, MAX_K + 1, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)
quantile_lists = st.one_of(
    st.lists(st.floats(0, 1), max_size=5),
    st.lists(
        st.one_of(
            st.floats(0, 1),
            st.sampled_from([0.0, -0.0, 0.5, 1.0, math.nan, -5e-324, 1.0000000000000002, math.inf]),
        ),
        max_size=5,
    ),
    st.sampled_from([[0.5] * MAX_QUANTILES, [0.5] * (MAX_QUANTILES + 1)]),
)
methods = st.one_of(
    st.integers(0, 4), st.integers(0, 4), st.integers(-1, 5), st.integers(-(2**31), 2**31 - 1)
)


def base64_token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


tokens: st.SearchStrategy[str | Issued] = st.one_of(
    st.just(""),
    st.just(Issued()),
    st.text(max_size=20),
    st.sampled_from(POOL).map(lambda n: base64_token(b"after:" + n.encode())),
    st.binary(max_size=20).map(base64_token),
)
RAW = [
    b"",
    b"\x0a\xff\xff\xff\xff\x0f",  # a field longer than the message
    b"\x0a\x01\xff",  # a string that is not UTF-8
    b"\x0b" * 200,  # groups nested 200 deep
    b"\x10" + b"\xff" * 9 + b"\x01",  # a 64-bit varint into a 32-bit field (-1 as int32)
    b"\x08" + b"\xff" * 11,  # a varint that never ends
    b"\x00",  # field number 0
    b"\x0a\x01a\x12\x08" + struct.pack("<d", math.nan),  # stream "a", NaN where it fits
    b"\x0a\x01a\x11" + struct.pack("<d", 1.5),  # stream "a", 1.5 in field 2 as a fixed64
]
payload_bytes = st.one_of(st.binary(max_size=64), st.sampled_from(RAW))
parts: st.SearchStrategy[Part] = st.one_of(
    st.tuples(names, batches), st.tuples(names, batches), payload_bytes
)


steps = st.one_of(
    st.tuples(st.just("create"), names, window_sizes, durations),
    st.tuples(st.just("get"), names),
    st.tuples(st.just("delete"), names),
    st.tuples(
        st.just("list"),
        st.one_of(st.sampled_from(["", "a", "x/", "\x00"]), names),
        st.integers(-(2**31), 2**31 - 1) | st.integers(-1, 3),
        tokens,
    ),
    st.tuples(st.just("add1"), names, anything),
    st.tuples(st.just("add"), names, batches),
    st.tuples(st.just("add"), st.sampled_from(POOL), st.lists(finite, max_size=30)),
    st.tuples(
        st.just("big"), st.sampled_from(POOL), st.integers(AT_LIMIT - 2, AT_LIMIT) | st.integers(1, AT_LIMIT)
    ),
    st.tuples(st.just("median"), names),
    st.tuples(st.just("top"), names, ks),
    st.tuples(st.just("bottom"), names, ks),
    st.tuples(st.just("stats"), names, quantile_lists, methods, ks),
    st.tuples(
        st.just("watch"),
        names,
        quantile_lists,
        methods,
        ks,
        durations,
        st.none() | st.lists(finite, max_size=3),
    ),
    st.tuples(st.just("stream"), st.lists(parts, max_size=5), st.none() | st.integers(0, 4)),
    st.tuples(st.just("raw"), st.sampled_from(sorted(METHODS)), payload_bytes),
    st.tuples(
        st.just("rushed"),
        st.sampled_from(POOL),
        st.lists(finite, max_size=50),
        st.sampled_from([1e-6, 1e-4, 1e-3, 5e-3]),
    ),
)
# No shrinking: a failure that depends on timing (a deadline) would take minutes to shrink; a failing
# script is at most 16 steps, and the edge cases below are the small reproductions.
FUZZ = settings(
    max_examples=75,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


# --- the tests -----------------------------------------------------------------------------------------


# Each random script starts from streams with values, so that reads have something to read.
PRELUDE: list[tuple[Any, ...]] = [
    ("add", "a", [3.0, 1.0, 2.0, 2.0, -4.5, 8.0, 0.0, 1e-3]),
    ("create", "b", 3, None),
    ("add", "b", [5.0, -1.0, 7.5, 0.0]),
    ("create", "c.d", 0, None),
]


@FUZZ
@given(script=st.lists(steps, min_size=1, max_size=12))
def test_random_requests_are_answered_as_documented_and_change_only_what_they_report(
    harness: Harness, script: list[tuple[Any, ...]]
) -> None:
    Fuzzer(harness).run(PRELUDE + script)


EDGE_CASES: dict[str, list[tuple[Any, ...]]] = {
    "names": [
        step
        for name in [*ODD_NAMES, BigName(129), BigName(MAX_MESSAGE - 64), OVERSIZED[1]]
        for step in [
            ("create", name, 0, None),
            ("add1", name, 1.0),
            ("add", name, [1.0, 2.0]),
            ("get", name),
            ("median", name),
            ("top", name, 1),
            ("bottom", name, 1),
            ("stats", name, [0.5], 0, 1),
            ("watch", name, [], 0, 0, None, None),
            ("stream", [(name, [3.0])], None),
            ("list", name, 0, ""),
            ("delete", name),
        ]
    ]
    + [("create", OVERSIZED[0], 0, None), ("add", OVERSIZED[0], [])],
    "windows": [
        step
        for seconds, nanos in DURATIONS
        for step in [
            ("create", "w", 3, duration(seconds, nanos)),
            ("add", "w", [1.0, 2.0]),
            ("get", "w"),
            ("delete", "w"),
        ]
    ]
    + [("create", "w", 2**64 - 1, None), ("big", "w", 30_000), ("create", "w", 0, None)],
    "limits": [
        *[("create", name, 0, None) for name in POOL],
        ("create", "one.more", 0, None),  # the sixth
        ("create", "too.many", 0, None),
        ("add", "too.many", [1.0]),
        ("stream", [("a", [1.0]), ("too.many", [2.0]), ("b", [3.0])], None),
        ("big", "a", AT_LIMIT),
        ("big", "a", AT_LIMIT + 1),
        ("big", "b", 2 * AT_LIMIT),
    ],
    "values": [
        *[("add1", "a", value) for value in [*EXTREMES, math.nan, SIGNALING_NAN, math.inf, -math.inf]],
        ("add", "b", []),
        ("add", "b", [1.0, math.nan, 2.0]),
        ("add", "b", [MAX_FLOAT, MAX_FLOAT, -MAX_FLOAT, 5e-324, -0.0]),
        ("stats", "a", [0.0, 0.25, 0.5, 0.75, 1.0], 1, MAX_K),
        ("stats", "b", [0.0, 0.3, 0.5, 1.0], 4, 3),
        ("rushed", "a", [1.0, 2.0], 1e-6),
        ("rushed", "c.d", [3.0], 1e-4),
    ],
    "queries": [
        ("add", "a", [3.0, 1.0, 2.0, 2.0, -1.0, 7.0, 2.5, 0.0]),
        ("create", "empty", 0, None),
        *[
            (kind, name, k)
            for kind in ("top", "bottom")
            for name in ("a", "empty", "gone")
            for k in [0, 1, 2, 3, 4, 7, 8, 9, MAX_K, MAX_K + 1, 2**32 - 1]
        ],
        *[("median", name) for name in ("a", "empty", "gone")],
        *[
            ("stats", name, quantiles, method, k)
            for name in ("a", "empty")
            for quantiles, method, k in [
                ([], 0, 0),
                ([math.nan], 0, 0),
                ([-0.0, 1.0], 2, 0),
                ([1.0000000000000002], 0, 0),
                ([-5e-324], 0, 0),
                ([0.5] * MAX_QUANTILES, 3, 0),
                ([0.5] * (MAX_QUANTILES + 1), 0, 0),
                ([0.5], 5, 0),
                ([0.5], -1, 0),
                ([0.5], 2**31 - 1, 0),
                ([0.1], 0, MAX_K + 1),
                ([0.1], 0, 2**32 - 1),
            ]
        ],
        ("stats", "gone", [], 0, 0),
    ],
    "pages": [
        *[("create", name, 0, None) for name in POOL],
        *[("list", "", size, "") for size in [-1, -(2**31), 0, 1, 2, 2**31 - 1]],
        ("list", "", 1, Issued()),
        ("list", "", 1, Issued()),
        ("list", "", 2, Issued()),
        *[
            ("list", "", 0, token)
            for token in ["!!!", "YWZ0ZXI6", "%%", "\x00", "é", base64_token(b"after:a"), "a" * 500]
        ],
        ("list", "x/", 0, ""),
    ],
    "stream": [
        ("stream", [], None),
        ("stream", [("a", [1.0]), ("b", [2.0, 3.0]), ("c.d", [math.nan]), ("a", [4.0])], None),
        ("stream", [("a", [5.0]), b"\x0a\xff\xff\xff\xff\x0f", ("a", [6.0])], None),
        ("stream", [("a", [7.0]), (BigName(3 * 1024 * 1024), [1.0]), ("a", [8.0])], None),
        ("stream", [("a", [9.0]), ("", [1.0])], None),
        ("stream", [("a", [10.0]), ("b", []), ("a", [11.0])], 2),
        ("stream", [("a", [12.0])], 0),
        ("stream", [("a", [math.inf]), ("a", [13.0])], 1),
        ("stream", [("a", [14.0]), ("b", batch_of(20_000))], None),
    ],
    "watch": [
        ("add", "a", [1.0, 2.0]),
        *[
            ("watch", name, [0.5], 0, 2, interval, [3.0])
            for name in ("a", "gone", "")
            for interval in [
                None,
                *[duration(s, n) for s, n in [*DURATIONS, (0, 9_999_999), (0, MIN_WATCH_NS)]],
            ]
        ],
        ("watch", "a", [math.nan], 0, 0, None, None),
        ("watch", "a", [], 9, 0, None, None),
        ("watch", "a", [], 0, MAX_K + 1, None, None),
    ],
    "raw": [("raw", method, payload) for method in sorted(METHODS) for payload in RAW],
}


@pytest.mark.parametrize("group", sorted(EDGE_CASES))
def test_edge_cases_are_answered_as_documented_and_change_only_what_they_report(
    harness: Harness, group: str
) -> None:
    Fuzzer(harness).run(EDGE_CASES[group])


def test_bytes_that_are_not_the_request_message_are_invalid_argument_naming_it(harness: Harness) -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # a length-delimited field far longer than the message
    for method in sorted(METHODS):
        if method == "StreamNums":
            future = harness.stream_unary(method).future(iter([garbage]), timeout=T)
            with pytest.raises(grpc.RpcError) as info:
                future.result()
            outcome = outcome_of_error(info.value)
        elif method == "Watch":
            with pytest.raises(grpc.RpcError) as info:
                next(iter(harness.unary_stream(method)(garbage, timeout=T)))
            outcome = outcome_of_error(info.value)
        else:
            outcome = harness.call(method, garbage)
        assert outcome.code == INVALID, (method, outcome.code, outcome.details)
        request_type = METHODS[method].input_type.full_name
        assert f"not a valid {request_type} message" in outcome.details, (method, outcome.details)
    harness.assert_serving()


def test_a_write_cancelled_while_it_is_logged_is_the_same_after_a_restart(tmp_path: Path) -> None:
    """A write cancelled while its log record waits for fsync may be applied or not, but the server
    must serve the same state before and after a restart."""
    fs = GatedFileSystem()
    harness = Harness(replace(TEST_CONFIG, data_dir=str(tmp_path)), fs=fs)
    harness.start()
    try:
        assert (
            harness.call("CreateStream", pb.CreateStreamRequest(name="kept").SerializeToString()).code == OK
        )
        writes: list[tuple[str, Message]] = [
            ("AddNums", pb.AddNumsRequest(stream="kept", values=[1.0, 2.0, 3.0])),
            ("CreateStream", pb.CreateStreamRequest(name="new", config=pb.StreamConfig(window_size=3))),
        ]
        for method, request in writes:
            release = fs.hold_next_sync()
            future = harness.unary_unary(method).future(request.SerializeToString(), timeout=T)
            assert fs.holding.wait(T)  # its record is being logged
            future.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped
            # A logged change is finished even for a cancelled call: the handler ends once the
            # fsync it waits for is let through.
            release.set()
            harness.tracker.wait_idle()  # the server has ended the call
            assert future.cancelled()
        served = harness.held()
        harness.restart()
        recovered = harness.held()
        summary = {name: (h.config, h.total_added, h.values) for name, h in served.items()}
        assert {name: (h.config, h.total_added, h.values) for name, h in recovered.items()} == summary
    finally:
        harness.stop()
