"""The StreamStats servicer: requests -> registry calls -> responses.

This is the one place where domain errors become gRPC status codes (``_rpc``), and the
only module that converts between protobuf messages and domain values.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.auth import EVERYONE, Caller, Scope, Tokens
from streamstats_server.errors import (
    DomainError,
    InvalidArgument,
    LimitExceeded,
    PermissionDenied,
    ServiceUnavailable,
    StreamAlreadyExists,
    StreamNotFound,
    Unauthenticated,
)
from streamstats_server.handlers import MalformedRequest
from streamstats_server.registry import Registry
from streamstats_server.storage import StorageError
from streamstats_server.stream import Stream, StreamStats, StreamView, WindowConfig
from streamstats_server.validation import (
    check_k,
    check_name,
    check_optional_k,
    check_page_size,
    check_quantiles,
    check_values,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StreamStats"].full_name
# Longer windows are "forever" in practice, and beyond ~584 years the nanoseconds no longer fit the log.
MAX_WINDOW_SECONDS = 3_155_760_000  # 100 years of 365.25 days
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PAGE_TOKEN_PREFIX = b"after:"

_STATUS_OF: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    StreamNotFound: grpc.StatusCode.NOT_FOUND,
    ServiceUnavailable: grpc.StatusCode.UNAVAILABLE,
    StreamAlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

Context = grpc.aio.ServicerContext[Any, Any]
_R = TypeVar("_R")
_Handler = Callable[["StreamStatsServicer", Any, Context, Caller], Awaitable[_R]]
_Method = Callable[["StreamStatsServicer", Any, Context], Awaitable[_R]]
_StreamHandler = Callable[["StreamStatsServicer", Any, Context, Caller], AsyncIterator[_R]]
_StreamMethod = Callable[["StreamStatsServicer", Any, Context], AsyncIterator[_R]]


def _status_code(exc: DomainError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in _STATUS_OF:
            return _STATUS_OF[cls]
    return grpc.StatusCode.FAILED_PRECONDITION


def _rich_status(code: grpc.StatusCode, exc: DomainError) -> grpc.Status:
    """The status with google.rpc details, so clients in any language can read the bad field."""
    detail = any_pb2.Any()
    if isinstance(exc, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.message)
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    else:
        detail.Pack(error_details_pb2.ErrorInfo(reason=code.name, domain=SERVICE_NAME))
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=exc.message, details=[detail])
    )
    return status


def _rpc(scope: Scope) -> Callable[[_Handler[_R]], _Method[_R]]:
    """Make ``handler`` an RPC method needing ``scope``: the one place every call is authenticated,
    counted against the concurrency limit, checked for a malformed request, and where a DomainError
    (or a storage failure) becomes an aborted call with the matching status."""

    def decorate(handler: _Handler[_R]) -> _Method[_R]:
        method = handler.__name__

        @functools.wraps(handler)
        async def wrapper(self: StreamStatsServicer, request: Any, context: Context) -> _R:
            try:
                caller = self._caller(context, scope, method, request)
                with self._admitted():
                    try:
                        return await handler(self, request, context, caller)
                    except StorageError as exc:
                        raise ServiceUnavailable(f"{exc}; the change was not applied") from exc
            except DomainError as exc:
                await _abort(context, exc)

        return wrapper

    return decorate


def _rpc_stream(scope: Scope) -> Callable[[_StreamHandler[_R]], _StreamMethod[_R]]:
    """``_rpc`` for a server-streaming method (an async generator): the same checks and the same
    error translation, for errors raised before or between the messages it yields."""

    def decorate(handler: _StreamHandler[_R]) -> _StreamMethod[_R]:
        method = handler.__name__

        @functools.wraps(handler)
        async def wrapper(self: StreamStatsServicer, request: Any, context: Context) -> AsyncIterator[_R]:
            try:
                caller = self._caller(context, scope, method, request)
                with self._admitted():
                    async for message in handler(self, request, context, caller):
                        yield message
            except DomainError as exc:
                await _abort(context, exc)

        return wrapper

    return decorate


async def _abort(context: Context, exc: DomainError) -> NoReturn:
    code = _status_code(exc)
    status = _rich_status(code, exc)
    await context.abort(code, exc.message, status.trailing_metadata)
    raise AssertionError("context.abort returned") from exc  # abort always raises


_QUANTILE_METHODS = {
    pb.QUANTILE_METHOD_UNSPECIFIED: "linear",
    pb.QUANTILE_METHOD_LINEAR: "linear",
    pb.QUANTILE_METHOD_LOWER: "lower",
    pb.QUANTILE_METHOD_HIGHER: "higher",
    pb.QUANTILE_METHOD_NEAREST: "nearest",
}
DEFAULT_WATCH_INTERVAL_S = 1.0
MIN_WATCH_INTERVAL_S = 0.01


def _check_duration(field: str, duration: duration_pb2.Duration) -> None:
    """Not negative, and nanos a proper fraction of a second."""
    if duration.seconds < 0 or duration.nanos < 0:
        raise InvalidArgument(field, f"{duration.seconds}s {duration.nanos}ns", "must not be negative")
    if duration.nanos >= 1_000_000_000:
        raise InvalidArgument(f"{field}.nanos", duration.nanos, "must be below 1e9")


def _min_interval(field: str, duration: duration_pb2.Duration) -> float:
    _check_duration(field, duration)
    seconds = duration.seconds + duration.nanos / 1e9
    if seconds == 0:
        return DEFAULT_WATCH_INTERVAL_S
    if seconds < MIN_WATCH_INTERVAL_S:
        raise InvalidArgument(
            field, f"{seconds:g}s", f"must be at least {MIN_WATCH_INTERVAL_S:g}s (or unset)"
        )
    return seconds


def _stats_pb(stats: StreamStats, now_ns: int) -> pb.Stats:
    # None leaves an optional field unset: what an empty stream answers.
    message = pb.Stats(
        count=stats.count,
        total_added=stats.total_added,
        min=stats.min,
        max=stats.max,
        mean=stats.mean,
        stddev=stats.stddev,
        median=stats.median,
        quantiles=[pb.Quantile(q=q, value=v) for q, v in stats.quantiles],
        top=stats.top,
        bottom=stats.bottom,
    )
    message.time.FromNanoseconds(now_ns)
    return message


def encode_watch_update(stats: bytes, changes: int) -> bytes:
    """``WatchUpdate(stats=<stats, already encoded>, changes=changes)``, encoded by hand: the Stats that
    watchers of one query share is then serialized once per state, not once per watcher."""
    encoded = b"\x0a" + _varint(len(stats)) + stats  # field 1 (stats), length-delimited
    if changes:
        encoded += b"\x10" + _varint(changes)  # field 2 (changes), varint; 0 is left out, as protobuf does
    return encoded


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _window_config(field: str, config: pb.StreamConfig) -> WindowConfig:
    duration = config.window_duration
    _check_duration(f"{field}.window_duration", duration)
    if duration.seconds > MAX_WINDOW_SECONDS:
        raise InvalidArgument(
            f"{field}.window_duration",
            f"{duration.seconds}s",
            f"must be at most 100 years ({MAX_WINDOW_SECONDS}s)",
        )
    return WindowConfig(window_size=config.window_size, window_duration_ns=duration.ToNanoseconds())


def _config_pb(config: WindowConfig) -> pb.StreamConfig:
    message = pb.StreamConfig(window_size=config.window_size)
    if config.window_duration_ns:
        message.window_duration.FromNanoseconds(config.window_duration_ns)
    return message


def _stream_pb(view: StreamView) -> pb.Stream:
    message = pb.Stream(
        name=view.name, config=_config_pb(view.config), count=view.count, total_added=view.total_added
    )
    message.create_time.FromNanoseconds(view.create_time_ns)
    return message


def _encode_page_token(last_name: str) -> str:
    return base64.urlsafe_b64encode(_PAGE_TOKEN_PREFIX + last_name.encode()).decode()


def _decode_page_token(token: str) -> str | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if not raw.startswith(_PAGE_TOKEN_PREFIX):
            raise ValueError("not ours")
        return check_name("page_token", raw[len(_PAGE_TOKEN_PREFIX) :].decode("ascii"))
    except (ValueError, binascii.Error, UnicodeError, InvalidArgument):
        raise InvalidArgument("page_token", token, "is not a token returned by ListStreams") from None


class StreamStatsServicer(pb_grpc.StreamStatsServicer):
    """Implements every RPC of streamstats.v1.StreamStats over a Registry (which makes each call
    atomic, durable and linearizable per stream)."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_k: int,
        tokens: Tokens | None = None,
        max_concurrent_rpcs: int = 0,
    ) -> None:
        self._registry = registry
        self._max_k = max_k
        self._tokens = tokens
        self._max_concurrent = max_concurrent_rpcs
        self._in_flight = 0

    def authenticate(self, context: Context) -> Caller:
        """The caller the call's token names (everyone may do everything without a tokens file)."""
        if self._tokens is None:
            return EVERYONE
        return self._tokens.authenticate(context.invocation_metadata())

    def _caller(self, context: Context, scope: Scope, method: str, request: Any) -> Caller:
        """Who calls, once they may call ``method`` and their request parsed; else a DomainError."""
        caller = self.authenticate(context)
        caller.require(scope, method)
        if isinstance(request, MalformedRequest):
            raise request.error()
        return caller

    @contextlib.contextmanager
    def _admitted(self) -> Iterator[None]:
        """Count the call as in progress; LimitExceeded if that would pass --max-concurrent-rpcs."""
        if self._max_concurrent and self._in_flight >= self._max_concurrent:
            raise LimitExceeded(
                "--max-concurrent-rpcs", self._max_concurrent, "too many calls in progress; retry later"
            )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    @_rpc(Scope.ADMIN)
    async def CreateStream(
        self, request: pb.CreateStreamRequest, context: Context, caller: Caller
    ) -> pb.Stream:
        name = self._stream_name(caller, "name", request.name)
        config = _window_config("config", request.config)
        return _stream_pb(await self._registry.create(name, config))

    @_rpc(Scope.READ)
    async def GetStream(self, request: pb.GetStreamRequest, context: Context, caller: Caller) -> pb.Stream:
        return _stream_pb(await self._registry.get(self._stream_name(caller, "name", request.name)))

    @_rpc(Scope.READ)
    async def ListStreams(
        self, request: pb.ListStreamsRequest, context: Context, caller: Caller
    ) -> pb.ListStreamsResponse:
        limit = check_page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _decode_page_token(request.page_token)
        views, more = await self._registry.page(caller.visible_prefixes(request.prefix), after, limit)
        response = pb.ListStreamsResponse(streams=[_stream_pb(view) for view in views])
        if more and views:
            response.next_page_token = _encode_page_token(views[-1].name)
        return response

    @_rpc(Scope.ADMIN)
    async def DeleteStream(
        self, request: pb.DeleteStreamRequest, context: Context, caller: Caller
    ) -> pb.DeleteStreamResponse:
        await self._registry.delete(self._stream_name(caller, "name", request.name))
        return pb.DeleteStreamResponse()

    @_rpc(Scope.WRITE)
    async def AddNum(self, request: pb.AddNumRequest, context: Context, caller: Caller) -> pb.AddNumResponse:
        count, total = await self._add(caller, request.stream, [request.value], "value")
        return pb.AddNumResponse(count=count, total_added=total)

    @_rpc(Scope.WRITE)
    async def AddNums(
        self, request: pb.AddNumsRequest, context: Context, caller: Caller
    ) -> pb.AddNumsResponse:
        count, total = await self._add(caller, request.stream, request.values, "values")
        return pb.AddNumsResponse(count=count, total_added=total)

    @_rpc(Scope.WRITE)
    async def StreamNums(
        self,
        request_iterator: AsyncIterator[pb.AddNumsRequest | MalformedRequest],
        context: Context,
        caller: Caller,
    ) -> pb.StreamNumsResponse:
        applied = 0
        async for request in request_iterator:
            try:
                if isinstance(request, MalformedRequest):
                    raise request.error()
                await self._add(caller, request.stream, request.values, "values")
            except DomainError as exc:
                exc.message = (
                    f"{exc.message}; {applied} values from earlier messages of this call were applied"
                )
                raise
            applied += len(request.values)
        return pb.StreamNumsResponse(values_added=applied)

    @_rpc(Scope.READ)
    async def FindMedian(
        self, request: pb.FindMedianRequest, context: Context, caller: Caller
    ) -> pb.FindMedianResponse:
        median, count = await self._registry.median(self._stream_name(caller, "stream", request.stream))
        return pb.FindMedianResponse(median=median, count=count)

    @_rpc(Scope.READ)
    async def TopK(self, request: pb.TopKRequest, context: Context, caller: Caller) -> pb.TopKResponse:
        name = self._stream_name(caller, "stream", request.stream)
        values, count = await self._registry.top_k(name, check_k(request.k, self._max_k))
        return pb.TopKResponse(values=values, count=count)

    @_rpc(Scope.READ)
    async def BottomK(
        self, request: pb.BottomKRequest, context: Context, caller: Caller
    ) -> pb.BottomKResponse:
        name = self._stream_name(caller, "stream", request.stream)
        values, count = await self._registry.bottom_k(name, check_k(request.k, self._max_k))
        return pb.BottomKResponse(values=values, count=count)

    @_rpc(Scope.READ)
    async def GetStats(
        self, request: pb.GetStatsRequest, context: Context, caller: Caller
    ) -> pb.GetStatsResponse:
        name = self._stream_name(caller, "stream", request.stream)
        reader = self._stats_reader("query", request.query)
        return pb.GetStatsResponse(stats=await self._registry.read(name, reader))

    @_rpc_stream(Scope.READ)
    async def Watch(  # type: ignore[override]  # yields encoded WatchUpdates (see handlers.py)
        self, request: pb.WatchRequest, context: Context, caller: Caller
    ) -> AsyncIterator[bytes]:
        name = self._stream_name(caller, "stream", request.stream)
        reader = self._stats_reader("query", request.query)
        interval = _min_interval("min_interval", request.min_interval)
        query = request.query.SerializeToString(deterministic=True)  # watchers of one query share snapshots

        def read_encoded(stream: Stream, now_ns: int) -> bytes:
            return reader(stream, now_ns).SerializeToString()

        async for stats, changes in self._registry.watch(name, read_encoded, interval, share=query):
            yield encode_watch_update(stats, changes)

    def _stats_reader(self, field: str, query: pb.StatsQuery) -> Callable[[Stream, int], pb.Stats]:
        """Validate a StatsQuery; returns what reads it from a locked stream as a Stats message."""
        quantiles = check_quantiles(f"{field}.quantiles", query.quantiles)
        method = _QUANTILE_METHODS.get(query.quantile_method)
        if method is None:
            raise InvalidArgument(
                f"{field}.quantile_method", query.quantile_method, "is not a QuantileMethod"
            )
        k = check_optional_k(f"{field}.k", query.k, self._max_k)

        def read(stream: Stream, now_ns: int) -> pb.Stats:
            return _stats_pb(stream.stats(now_ns, quantiles, method, k), now_ns)

        return read

    @staticmethod
    def _stream_name(caller: Caller, field: str, name: str) -> str:
        """A valid stream name the caller may touch."""
        caller.require_stream(check_name(field, name))
        return name

    async def _add(self, caller: Caller, name: str, values: Sequence[float], field: str) -> tuple[int, int]:
        """Validate, then apply the batch atomically to the named stream (created if absent)."""
        self._stream_name(caller, "stream", name)
        check_values(field, values)
        return await self._registry.add(name, values)
