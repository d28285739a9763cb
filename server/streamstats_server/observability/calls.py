"""One interceptor that observes every call: go-grpc-prometheus metrics, and a log line per failed call.

It wraps each method handler's behaviour, keeping its kind, since grpc decides how to run a handler by
inspecting it: a coroutine function stays one (unary and client-streaming handlers, and streaming ones
that call ``context.write`` themselves, like grpc_health's Watch), and an async generator function
stays one (server and bidi streaming: Watch, reflection). A plain function (grpc would run it in its
thread pool) is left unwrapped and unobserved: we have none.

The final status: a handler that returns is OK unless it called ``set_code``; one that aborts raises
``grpc.aio.AbortError`` with the code in ``context.code()``; any other exception is UNKNOWN (what grpc
answers); a call the client cancelled, or whose deadline passed, is CANCELLED or DEADLINE_EXCEEDED.
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

# Failures the caller caused (its request, its token, its deadline): INFO. The others are ours: see BUG_CODES.
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
# Failures that mean a bug or lost data: ERROR. The rest of ours (UNAVAILABLE: storage failing, ...): WARNING.
BUG_CODES = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS})

# The client's deadline timer often fires first and cancels the call a little before the server's own
# deadline (the same instant plus the request's transit): a cancellation this close to the deadline is
# the deadline's doing.
DEADLINE_SLACK_S = 0.005

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
        # Read now: once the call's task is done grpc releases the call, and context.peer() on it then
        # crashes the process; a dropped async generator is only closed (GeneratorExit) after that.
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

    def finish(self, error: BaseException | None, *, response_sent: bool = False) -> None:
        """Record the call's end: ``error`` is what the handler raised (None: it returned), and
        ``response_sent`` says it returned the one response of a unary-response call."""
        code = _final_code(self.context, error)
        elapsed = time.perf_counter() - self.began
        metrics = self.observer.metrics
        if metrics is not None:
            if response_sent and code is grpc.StatusCode.OK:  # grpc drops it after set_code(not OK)
                metrics.sent.labels(*self.labels).inc()
            metrics.handled.labels(*self.labels, GO_CODE_NAMES.get(code, "Unknown")).inc()
            metrics.handling.labels(*self.labels).observe(elapsed)
        if code is not grpc.StatusCode.OK:
            _log_failure(self.labels, code, self.context, self.peer, error, elapsed)


def _ended_outside(error: BaseException | None) -> bool:
    """Whether the call was ended from outside the handler: the client cancelled it, its deadline
    passed, or the server stopped. grpc cancels the handler's task (CancelledError), or, when that
    happens while grpc is writing a message an async generator yielded, drops the generator, which
    is then closed at its ``yield`` (GeneratorExit)."""
    return isinstance(error, (asyncio.CancelledError, GeneratorExit))


def _final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    if _ended_outside(error):
        # grpc tells the handler no more than "cancelled"; the deadline is what the client saw (and
        # what Go's handlers return), so tell the two apart by it. time_remaining() only reads the
        # deadline the call arrived with: safe on a call grpc has already released.
        remaining = context.time_remaining()
        if remaining is not None and remaining < DEADLINE_SLACK_S:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code  # set by abort() or set_code()
    if error is None:
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN  # what grpc answers for an exception escaping a handler


def _log_failure(
    labels: tuple[str, str, str],
    code: grpc.StatusCode,
    context: Context,
    peer: str,
    error: BaseException | None,
    elapsed: float,
) -> None:
    _, service, method = labels
    if _ended_outside(error):  # a cancelled call's details are empty; say what happened instead
        details = "deadline exceeded" if code is grpc.StatusCode.DEADLINE_EXCEEDED else "cancelled"
    else:
        raw = context.details()
        details = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
        if not details and error is not None and not isinstance(error, grpc.aio.AbortError):
            details = f"{type(error).__name__}: {error}"
    level = logging.INFO if code in CLIENT_CODES else logging.ERROR if code in BUG_CODES else logging.WARNING
    unexpected = (
        error is not None and not _ended_outside(error) and not isinstance(error, grpc.aio.AbortError)
    )
    # The status details are the server's own message (field names, a bad value, a stream name); the
    # request's metadata (its token) and its values are never logged.
    log.log(
        level,
        "%s/%s failed: %s: %s (peer %s, %.1f ms)",
        service,
        method,
        code.name,
        details,
        peer,
        elapsed * 1000,
        extra={
            "grpc_service": service,
            "grpc_method": method,
            "grpc_code": code.name,
            "error": details,
            "peer": peer,
            "duration_ms": round(elapsed * 1000, 3),
        },
        exc_info=error if unexpected else None,
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
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED without a handler
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        kind = grpc_type(handler.request_streaming, handler.response_streaming)
        labels = (kind, service, method)
        attribute = _BEHAVIOR_OF[kind]
        behavior = getattr(handler, attribute)
        observed: Callable[..., Any] | None
        if inspect.isasyncgenfunction(behavior):  # yields its responses (Watch, reflection)
            observed = self._generator(behavior, labels) if handler.response_streaming else None
        elif inspect.iscoroutinefunction(behavior):  # returns its response, or writes them itself
            observed = self._coroutine(behavior, labels)
        else:
            observed = None
        if observed is None:
            # grpc runs a plain function in its thread pool (or rejects the kind): wrapping it in a
            # coroutine would move it onto the event loop, so it is served as it is, unobserved.
            return handler
        # grpc's handlers are namedtuples: _replace keeps the (de)serializers and the kind flags.
        replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(**{attribute: observed})  # type: ignore[attr-defined]
        return replaced

    def _coroutine(self, behavior: Callable[..., Any], labels: tuple[str, str, str]) -> Callable[..., Any]:
        """A unary or client-streaming handler, or a streaming one that calls ``context.write``
        itself (grpc_health's Watch): awaited as it is. What such a handler writes (or reads with
        ``context.read``) goes past us, so those messages are not counted."""
        request_streaming = labels[0] in ("client_stream", "bidi_stream")
        unary_response = labels[0] in ("unary", "client_stream")

        async def observed(request: Any, context: Context) -> Any:
            call = _Call(self, labels, context)
            if request_streaming:
                request = _counted(request, call)
            else:
                call.received()
            try:
                response = await behavior(request, context)
            except BaseException as error:
                call.finish(error)
                raise
            call.finish(None, response_sent=unary_response)
            return response

        return observed

    def _generator(self, behavior: Callable[..., Any], labels: tuple[str, str, str]) -> Callable[..., Any]:
        """A server- or bidi-streaming handler that yields its responses: an async generator still,
        counting each response it yields."""
        request_streaming = labels[0] == "bidi_stream"

        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call(self, labels, context)
            if request_streaming:
                request = _counted(request, call)
            else:
                call.received()
            try:
                async for response in behavior(request, context):
                    call.sent()
                    yield response
            except BaseException as error:  # GeneratorExit too: see _ended_outside
                call.finish(error)
                raise
            call.finish(None)

        return observed


# Which attribute of a method handler holds the behaviour of each kind.
_BEHAVIOR_OF = {
    "unary": "unary_unary",
    "client_stream": "stream_unary",
    "server_stream": "unary_stream",
    "bidi_stream": "stream_stream",
}


async def _counted(requests: AsyncIterator[Any], call: _Call) -> AsyncIterator[Any]:
    async for request in requests:
        call.received()
        yield request
