"""One interceptor that observes every call: go-grpc-prometheus metrics, and a log line per failed call.

It wraps each method handler's behaviour, keeping its kind: a coroutine stays a coroutine, an async
generator (server streaming: Watch, reflection) stays an async generator, and a coroutine-style
streaming handler (grpc_health's Watch, which calls ``context.write``) is awaited as it is.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from streamstats_server.observability.metrics import GO_CODE_NAMES, Metrics

log = logging.getLogger("streamstats.calls")

# Failures the caller caused (its request, its token, its deadline): INFO. Anything else is ours: WARNING.
CLIENT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)

Context = grpc.aio.ServicerContext[Any, Any]


def grpc_type(request_streaming: bool, response_streaming: bool) -> str:
    """go-grpc-prometheus's grpc_type label."""
    return {
        (False, False): "unary",
        (True, False): "client_stream",
        (False, True): "server_stream",
        (True, True): "bidi_stream",
    }[(request_streaming, response_streaming)]


class _Call:
    """One call's bookkeeping: started now, finished by ``finish``."""

    def __init__(self, observer: CallObserver, labels: tuple[str, str, str], context: Context) -> None:
        self.observer = observer
        self.labels = labels
        self.context = context
        # Read now: after a cancellation grpc may have freed the call, and context.peer() then
        # crashes the process (seen with a cancelled server-streaming call).
        self.peer = context.peer()
        self.began = time.perf_counter()
        if observer.metrics is not None:
            observer.metrics.started.labels(*labels).inc()

    def received(self) -> None:
        if self.observer.metrics is not None:
            self.observer.metrics.received.labels(*self.labels).inc()

    def sent(self) -> None:
        if self.observer.metrics is not None:
            self.observer.metrics.sent.labels(*self.labels).inc()

    def finish(self, error: BaseException | None) -> None:
        code = _final_code(self.context, error)
        elapsed = time.perf_counter() - self.began
        metrics = self.observer.metrics
        if metrics is not None:
            metrics.handled.labels(*self.labels, GO_CODE_NAMES.get(code, "Unknown")).inc()
            metrics.handling.labels(*self.labels).observe(elapsed)
        if code is not grpc.StatusCode.OK:
            _log_failure(self.labels, code, self.context, self.peer, error, elapsed)


def _final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None or isinstance(error, grpc.aio.AbortError):
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN


def _log_failure(
    labels: tuple[str, str, str],
    code: grpc.StatusCode,
    context: Context,
    peer: str,
    error: BaseException | None,
    elapsed: float,
) -> None:
    _, service, method = labels
    # A cancelled call's context must not be touched (see _Call.peer).
    details = "cancelled by the client" if isinstance(error, asyncio.CancelledError) else context.details()
    if isinstance(details, bytes):
        details = details.decode("utf-8", "replace")
    if not details and error is not None and not isinstance(error, grpc.aio.AbortError):
        details = f"{type(error).__name__}: {error}"
    level = logging.INFO if code in CLIENT_CODES else logging.WARNING
    log.log(
        level,
        "%s/%s failed: %s: %s (peer %s, %.1f ms)",
        service,
        method,
        code.name,
        details or "",
        peer,
        elapsed * 1000,
        extra={
            "grpc_service": service,
            "grpc_method": method,
            "grpc_code": code.name,
            "error": details or "",
            "peer": peer,
            "duration_ms": round(elapsed * 1000, 3),
        },
        exc_info=error if code is grpc.StatusCode.UNKNOWN and error is not None else None,
    )


if TYPE_CHECKING:  # grpc-stubs makes it generic; at run time it is not subscriptable
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class CallObserver(_ServerInterceptor):
    """Counts and times every call (when ``metrics`` is given) and logs every failed one."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        labels = (grpc_type(handler.request_streaming, handler.response_streaming), service, method)
        kind = labels[0]
        wrapped: dict[str, Callable[..., Any]] = {}
        if kind == "unary":
            wrapped["unary_unary"] = self._unary(_behavior(handler.unary_unary), labels)
        elif kind == "client_stream":
            wrapped["stream_unary"] = self._client_stream(_behavior(handler.stream_unary), labels)
        elif kind == "server_stream":
            wrapped["unary_stream"] = self._server_stream(_behavior(handler.unary_stream), labels)
        else:
            wrapped["stream_stream"] = self._bidi_stream(_behavior(handler.stream_stream), labels)
        # grpc's handlers are namedtuples: _replace keeps the (de)serializers and the kind flags.
        replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(**wrapped)  # type: ignore[attr-defined]
        return replaced

    def _unary(self, behavior: Callable[..., Any], labels: tuple[str, str, str]) -> Callable[..., Any]:
        async def observed(request: Any, context: Context) -> Any:
            call = _Call(self, labels, context)
            call.received()
            try:
                response = await behavior(request, context)
            except BaseException as error:
                call.finish(error)
                raise
            call.sent()
            call.finish(None)
            return response

        return observed

    def _client_stream(
        self, behavior: Callable[..., Any], labels: tuple[str, str, str]
    ) -> Callable[..., Any]:
        async def observed(requests: AsyncIterator[Any], context: Context) -> Any:
            call = _Call(self, labels, context)
            try:
                response = await behavior(_counted(requests, call), context)
            except BaseException as error:
                call.finish(error)
                raise
            call.sent()
            call.finish(None)
            return response

        return observed

    def _server_stream(
        self, behavior: Callable[..., Any], labels: tuple[str, str, str]
    ) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            return self._unary_like_stream(behavior, labels, request_streaming=False)

        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call(self, labels, context)
            call.received()
            try:
                async for response in behavior(request, context):
                    call.sent()
                    yield response
            except BaseException as error:
                call.finish(error)
                raise
            call.finish(None)

        return observed

    def _bidi_stream(self, behavior: Callable[..., Any], labels: tuple[str, str, str]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            return self._unary_like_stream(behavior, labels, request_streaming=True)

        async def observed(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            call = _Call(self, labels, context)
            try:
                async for response in behavior(_counted(requests, call), context):
                    call.sent()
                    yield response
            except BaseException as error:
                call.finish(error)
                raise
            call.finish(None)

        return observed

    def _unary_like_stream(
        self, behavior: Callable[..., Any], labels: tuple[str, str, str], *, request_streaming: bool
    ) -> Callable[..., Any]:
        """A streaming handler written as a coroutine that calls ``context.write``: awaited as is
        (its sent messages are not counted)."""

        async def observed(request: Any, context: Context) -> Any:
            call = _Call(self, labels, context)
            if not request_streaming:
                call.received()
            try:
                result = await behavior(_counted(request, call) if request_streaming else request, context)
            except BaseException as error:
                call.finish(error)
                raise
            call.finish(None)
            return result

        return observed


def _behavior(function: Callable[..., Any] | None) -> Callable[..., Any]:
    if function is None:
        raise TypeError("a method handler without the behaviour its kind says it has")
    return function


async def _counted(requests: AsyncIterator[Any], call: _Call) -> AsyncIterator[Any]:
    async for request in requests:
        call.received()
        yield request
