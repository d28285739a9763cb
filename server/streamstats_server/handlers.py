"""Registers the StreamStats servicer with grpc, parsing requests without ever failing the call.

grpc answers INTERNAL ("Exception deserializing request") when a request's bytes are not the message
the method expects. That blames the server for the client's bad bytes, so each method here gets a
deserializer that returns a ``MalformedRequest`` instead, and the servicer answers INVALID_ARGUMENT
naming the message type (see ``service._rpc``). Otherwise this is what the generated
``add_StreamStatsServicer_to_server`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from streamstats.v1 import streamstats_pb2 as pb
from streamstats_server.errors import InvalidArgument

_SERVICE = pb.DESCRIPTOR.services_by_name["StreamStats"]

_HANDLER_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


@dataclass(frozen=True, slots=True)
class MalformedRequest:
    """Stands in for a request whose bytes did not parse as ``message_type``."""

    message_type: str
    reason: str

    def error(self) -> InvalidArgument:
        return InvalidArgument(
            "request", f"<{self.message_type}>", f"is not a valid {self.message_type} message ({self.reason})"
        )


def _safe_parser(message_class: type[Message]) -> Callable[[bytes], Message | MalformedRequest]:
    name = message_class.DESCRIPTOR.full_name

    def parse(data: bytes) -> Message | MalformedRequest:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return MalformedRequest(name, str(exc) or "cannot parse")

    return parse


def _serializer(message_class: type[Message]) -> Callable[[Message | bytes], bytes]:
    """Messages are serialized; bytes (a message the servicer encoded itself, as Watch does for
    updates many watchers share) go out as they are."""
    serialize = message_class.SerializeToString

    def serializer(message: Message | bytes) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return serializer


def add_servicer(servicer: object, server: grpc.aio.Server) -> None:
    """Serve every RPC of streamstats.v1.StreamStats with ``servicer``'s method of the same name."""
    handlers = {}
    for method in _SERVICE.methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        factory = _HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            request_deserializer=_safe_parser(request_class),
            response_serializer=_serializer(response_class),
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(_SERVICE.full_name, handlers)  # type: ignore[attr-defined]  # grpc-stubs predates it
