"""The SDK's exception tree and the one place where a gRPC status becomes one of them."""

from __future__ import annotations

from typing import Final

import grpc

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "ClientClosed",
    "DeadlineExceeded",
    "InvalidArgument",
    "PermissionDenied",
    "ResourceExhausted",
    "ServerError",
    "StreamNotFound",
    "StreamStatsError",
    "Unauthenticated",
    "Unavailable",
    "translate_rpc_error",
]


class StreamStatsError(Exception):
    """Base of every error the SDK raises.

    ``code`` is the gRPC status name (``"NOT_FOUND"``, ...); ``message`` is the server's own
    text, which names the offending field and value, or the SDK's for errors it finds itself.
    """

    #: The status name a subclass stands for; instances carry the actual one in ``code``.
    default_code: str = "UNKNOWN"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message: str = message
        self.code: str = code if code is not None else self.default_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidArgument(StreamStatsError):
    """A name, value, k, window or page argument was rejected; nothing was changed."""

    default_code = "INVALID_ARGUMENT"


class StreamNotFound(StreamStatsError):
    """The stream does not exist (NOT_FOUND)."""

    default_code = "NOT_FOUND"


class AlreadyExists(StreamStatsError):
    """The stream exists with another config."""

    default_code = "ALREADY_EXISTS"


class ResourceExhausted(StreamStatsError):
    """A message was too large, or the server is out of some resource."""

    default_code = "RESOURCE_EXHAUSTED"


class PermissionDenied(StreamStatsError):
    default_code = "PERMISSION_DENIED"


class Unauthenticated(StreamStatsError):
    default_code = "UNAUTHENTICATED"


class Unavailable(StreamStatsError):
    """The server could not be reached (reads were already retried on the way here)."""

    default_code = "UNAVAILABLE"


class DeadlineExceeded(StreamStatsError):
    """The call's deadline passed; a write may or may not have been applied."""

    default_code = "DEADLINE_EXCEEDED"


class Cancelled(StreamStatsError):
    default_code = "CANCELLED"


class ClientClosed(Cancelled):
    """The client was closed before the call; nothing was sent."""


class ServerError(StreamStatsError):
    """Any other status (INTERNAL, UNKNOWN, UNIMPLEMENTED, FAILED_PRECONDITION, ...)."""

    default_code = "INTERNAL"


_BY_STATUS: Final[dict[grpc.StatusCode, type[StreamStatsError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: StreamNotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def translate_rpc_error(exc: grpc.RpcError) -> StreamStatsError:
    """Map a failed call (sync or aio) to the SDK exception for its status.

    Callers ``raise translate_rpc_error(exc) from exc`` so the gRPC error stays visible as the
    cause for debugging while callers only ever have to catch SDK types.
    """
    # A bare RpcError (raised by some grpc internals) carries no status: treat it as UNKNOWN.
    try:
        status = exc.code()
        details = exc.details()
    except AttributeError:
        status, details = grpc.StatusCode.UNKNOWN, None
    if not isinstance(status, grpc.StatusCode):
        status = grpc.StatusCode.UNKNOWN
    message = details or f"call failed with status {status.name}"
    return _BY_STATUS.get(status, ServerError)(message, code=status.name)
