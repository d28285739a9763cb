"""Domain errors: what the registry and streams raise. service.py turns them into gRPC status codes.

Nothing here knows about gRPC; each error carries the message the caller will read, naming the field
and the offending value.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a request can cause; the request changed nothing."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """A request field has a bad value."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field}: {reason} (got {_show(value)})")
        self.field = field
        self.value = value
        self.reason = reason


class StreamNotFound(DomainError):
    """The named stream does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"stream {name!r} not found")
        self.name = name


class StreamAlreadyExists(DomainError):
    """CreateStream named an existing stream with another config."""

    def __init__(self, name: str, existing: str, requested: str) -> None:
        super().__init__(
            f"stream {name!r} already exists with config {existing}; requested config {requested}"
        )
        self.name = name


def _show(value: object) -> str:
    """A value as the caller can recognise it, cut short when huge (a 10 MB name must not echo back)."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + f"... ({len(text)} characters)"


class ServiceUnavailable(DomainError):
    """The server cannot take the change now (its storage failed); nothing was applied."""


class Unauthenticated(DomainError):
    """The call carries no token, or one the server does not know."""


class PermissionDenied(DomainError):
    """The caller's token is known but does not allow this call."""


class LimitExceeded(DomainError):
    """The call would take the server past one of its limits; nothing of it was applied."""

    def __init__(self, limit: str, value: int, what: str) -> None:
        super().__init__(f"{what}: the server's limit {limit}={value} would be exceeded")
        self.limit = limit
        self.value = value
