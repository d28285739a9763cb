"""The StreamStats servicer: requests -> registry calls -> responses.

This is the one place where domain errors become gRPC status codes (``_translate_errors``), and the
only module that converts between protobuf messages and domain values.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.errors import (
    DomainError,
    InvalidArgument,
    ServiceUnavailable,
    StreamAlreadyExists,
    StreamNotFound,
)
from streamstats_server.registry import Registry
from streamstats_server.storage import StorageError
from streamstats_server.stream import StreamView, WindowConfig
from streamstats_server.validation import check_k, check_name, check_page_size, check_values

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StreamStats"].full_name
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PAGE_TOKEN_PREFIX = b"after:"

_STATUS_OF: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    StreamNotFound: grpc.StatusCode.NOT_FOUND,
    ServiceUnavailable: grpc.StatusCode.UNAVAILABLE,
    StreamAlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
}

Context = grpc.aio.ServicerContext[Any, Any]
_R = TypeVar("_R")
_Handler = Callable[["StreamStatsServicer", Any, Context], Awaitable[_R]]


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


def _translate_errors(handler: _Handler[_R]) -> _Handler[_R]:
    """Turn a DomainError (or a storage failure) raised by ``handler`` into an aborted call with the
    matching status."""

    @functools.wraps(handler)
    async def wrapper(self: StreamStatsServicer, request: Any, context: Context) -> _R:
        try:
            try:
                return await handler(self, request, context)
            except StorageError as exc:
                raise ServiceUnavailable(f"{exc}; the change was not applied") from exc
        except DomainError as exc:
            code = _status_code(exc)
            status = _rich_status(code, exc)
            await context.abort(code, exc.message, status.trailing_metadata)
            raise AssertionError("context.abort returned") from exc  # abort always raises

    return wrapper


def _window_config(field: str, config: pb.StreamConfig) -> WindowConfig:
    duration = config.window_duration
    if duration.seconds < 0 or duration.nanos < 0:
        shown = f"{duration.seconds}s {duration.nanos}ns"
        raise InvalidArgument(f"{field}.window_duration", shown, "must not be negative")
    if duration.nanos >= 1_000_000_000:
        raise InvalidArgument(f"{field}.window_duration.nanos", duration.nanos, "must be below 1e9")
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

    def __init__(self, registry: Registry, *, max_k: int) -> None:
        self._registry = registry
        self._max_k = max_k

    @_translate_errors
    async def CreateStream(self, request: pb.CreateStreamRequest, context: Context) -> pb.Stream:
        name = check_name("name", request.name)
        config = _window_config("config", request.config)
        return _stream_pb(await self._registry.create(name, config))

    @_translate_errors
    async def GetStream(self, request: pb.GetStreamRequest, context: Context) -> pb.Stream:
        return _stream_pb(await self._registry.get(check_name("name", request.name)))

    @_translate_errors
    async def ListStreams(self, request: pb.ListStreamsRequest, context: Context) -> pb.ListStreamsResponse:
        limit = check_page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _decode_page_token(request.page_token)
        views, more = await self._registry.page(request.prefix, after, limit)
        response = pb.ListStreamsResponse(streams=[_stream_pb(view) for view in views])
        if more and views:
            response.next_page_token = _encode_page_token(views[-1].name)
        return response

    @_translate_errors
    async def DeleteStream(
        self, request: pb.DeleteStreamRequest, context: Context
    ) -> pb.DeleteStreamResponse:
        await self._registry.delete(check_name("name", request.name))
        return pb.DeleteStreamResponse()

    @_translate_errors
    async def AddNum(self, request: pb.AddNumRequest, context: Context) -> pb.AddNumResponse:
        count, total = await self._add(request.stream, [request.value], "value")
        return pb.AddNumResponse(count=count, total_added=total)

    @_translate_errors
    async def AddNums(self, request: pb.AddNumsRequest, context: Context) -> pb.AddNumsResponse:
        count, total = await self._add(request.stream, request.values, "values")
        return pb.AddNumsResponse(count=count, total_added=total)

    @_translate_errors
    async def StreamNums(
        self, request_iterator: AsyncIterator[pb.AddNumsRequest], context: Context
    ) -> pb.StreamNumsResponse:
        applied = 0
        async for request in request_iterator:
            try:
                await self._add(request.stream, request.values, "values")
            except DomainError as exc:
                exc.message = (
                    f"{exc.message}; {applied} values from earlier messages of this call were applied"
                )
                raise
            applied += len(request.values)
        return pb.StreamNumsResponse(values_added=applied)

    @_translate_errors
    async def FindMedian(self, request: pb.FindMedianRequest, context: Context) -> pb.FindMedianResponse:
        median, count = await self._registry.median(check_name("stream", request.stream))
        return pb.FindMedianResponse(median=median, count=count)

    @_translate_errors
    async def TopK(self, request: pb.TopKRequest, context: Context) -> pb.TopKResponse:
        name = check_name("stream", request.stream)
        values, count = await self._registry.top_k(name, check_k(request.k, self._max_k))
        return pb.TopKResponse(values=values, count=count)

    @_translate_errors
    async def BottomK(self, request: pb.BottomKRequest, context: Context) -> pb.BottomKResponse:
        name = check_name("stream", request.stream)
        values, count = await self._registry.bottom_k(name, check_k(request.k, self._max_k))
        return pb.BottomKResponse(values=values, count=count)

    async def _add(self, name: str, values: Sequence[float], field: str) -> tuple[int, int]:
        """Validate, then apply the batch atomically to the named stream (created if absent)."""
        check_name("stream", name)
        check_values(field, values)
        return await self._registry.add(name, values)
