"""The SDK's public surface: what it exports, what it hides, and that it covers the whole service."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import json
import math
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

import streamstats
from streamstats import _base
from streamstats._errors import translate_rpc_error
from streamstats.v1 import streamstats_pb2, streamstats_pb2_grpc
from streamstats_server.app import KEEPALIVE_OPTIONS

SERVICE = streamstats_pb2.DESCRIPTOR.services_by_name["StreamStats"]
RPC_NAMES = [method.name for method in SERVICE.methods]
HIDDEN_MODULE_PREFIXES = ("grpc", "google.protobuf", "streamstats.v1")


def test_all_is_pinned() -> None:
    assert streamstats.__all__ == [
        "AddResult",
        "AlreadyExists",
        "AsyncClient",
        "AsyncWatch",
        "Cancelled",
        "Client",
        "ClientClosed",
        "ClientConfig",
        "DeadlineExceeded",
        "InvalidArgument",
        "PermissionDenied",
        "ResourceExhausted",
        "ServerError",
        "Stats",
        "Stream",
        "StreamConfig",
        "StreamNotFound",
        "StreamStatsError",
        "TLSConfig",
        "Unauthenticated",
        "Unavailable",
        "Watch",
        "WatchUpdate",
    ]
    namespace: dict[str, Any] = {}
    exec("from streamstats import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == streamstats.__all__
    for name in streamstats.__all__:
        obj = getattr(streamstats, name)
        if issubclass(obj, streamstats.StreamStatsError):  # so tracebacks name the public path
            assert obj.__module__ == "streamstats", name
        typing.get_type_hints(obj)  # resolvable, for serializers and other introspection


# --- nothing of grpc or protobuf in the public API -------------------------------------------------


def _types_in(annotation: Any) -> Any:
    """Every class an annotation mentions (through unions, generics, callables)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        yield origin
    for arg in typing.get_args(annotation):
        if isinstance(arg, list):  # Callable[[...], R]
            for item in arg:
                yield from _types_in(item)
        else:
            yield from _types_in(arg)


def _public_callables(cls: type) -> Any:
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name not in {"__init__", "__enter__", "__aenter__"}:
            continue
        if inspect.isfunction(member):
            yield f"{cls.__name__}.{name}", member
        elif isinstance(member, property) and member.fget is not None:
            yield f"{cls.__name__}.{name}", member.fget


def _public_annotations() -> Any:
    for name in streamstats.__all__:
        obj = getattr(streamstats, name)
        assert isinstance(obj, type), name
        for base in obj.__mro__:
            yield f"{name} base", base
        if dataclasses.is_dataclass(obj):
            for field_name, hint in typing.get_type_hints(obj).items():
                for mentioned in _types_in(hint):
                    yield f"{name}.{field_name}", mentioned
        for where, function in _public_callables(obj):
            hints = typing.get_type_hints(function, localns={obj.__name__: obj})
            for hint in hints.values():
                for mentioned in _types_in(hint):
                    yield where, mentioned


def test_no_public_name_exposes_grpc_or_protobuf_types() -> None:
    seen = 0
    for where, mentioned in _public_annotations():
        seen += 1
        module = getattr(mentioned, "__module__", "")
        assert not module.startswith(HIDDEN_MODULE_PREFIXES), f"{where} exposes {module}.{mentioned.__name__}"
    assert seen > 100  # the walk really looked at the methods


def test_the_walk_would_catch_a_leak() -> None:
    def leaky(channel: grpc.Channel) -> streamstats_pb2.Stream:
        raise NotImplementedError

    hints = typing.get_type_hints(leaky)
    modules = {t.__module__ for hint in hints.values() for t in _types_in(hint)}
    assert any(m.startswith(HIDDEN_MODULE_PREFIXES) for m in modules), modules


def test_importing_creates_no_channel() -> None:
    """In a fresh interpreter where making any channel raises, import the SDK and build clients."""
    script = """
import grpc, grpc.aio
def refuse(*args, **kwargs):
    raise AssertionError("a channel was created")
grpc.insecure_channel = grpc.secure_channel = refuse
grpc.aio.insecure_channel = grpc.aio.secure_channel = refuse
import streamstats
streamstats.AsyncClient("127.0.0.1:1")  # outside any event loop: the channel must wait
print("ok")
"""
    client_dir = str(Path(streamstats.__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": client_dir},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- the SDK covers the service, and the server implements it --------------------------------------


def test_every_rpc_has_an_sdk_method_on_both_clients_and_a_server_handler() -> None:
    from streamstats_server.service import StreamStatsServicer

    assert issubclass(StreamStatsServicer, streamstats_pb2_grpc.StreamStatsServicer)
    assert RPC_NAMES, "the descriptor lists no methods"
    assert set(_base.RPC_METHODS) == set(RPC_NAMES)
    for rpc in RPC_NAMES:
        method = _base.RPC_METHODS[rpc]
        assert callable(getattr(streamstats.Client, method, None)), (rpc, method)
        assert callable(getattr(streamstats.AsyncClient, method, None)), (rpc, method)
        assert getattr(StreamStatsServicer, rpc) is not getattr(
            streamstats_pb2_grpc.StreamStatsServicer, rpc
        ), rpc
    assert len(set(_base.RPC_METHODS.values())) == len(RPC_NAMES)


def test_read_rpcs_are_the_ones_that_change_nothing() -> None:
    # Watch changes nothing either, but a retry policy cannot resume a stream that already sent updates.
    reads = {"GetStream", "ListStreams", "FindMedian", "TopK", "BottomK", "GetStats"}
    assert reads == _base.READ_RPCS
    assert reads <= set(RPC_NAMES)


def test_sync_and_async_clients_have_the_same_methods_and_parameters() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") or name == "__init__"
        }

    sync, asynchronous = public(streamstats.Client), public(streamstats.AsyncClient)
    assert sync.keys() == asynchronous.keys()
    for name in sync:
        sync_params = list(sync[name].parameters.values())
        async_params = list(asynchronous[name].parameters.values())
        if name == "stream_values":  # the async twin also takes an AsyncIterable
            sync_params, async_params = sync_params[2:], async_params[2:]
        assert [(p.name, p.kind, p.default) for p in sync_params] == [
            (p.name, p.kind, p.default) for p in async_params
        ], name
        is_coroutine = inspect.iscoroutinefunction(getattr(streamstats.AsyncClient, name))
        # Iterators are returned at once (their items are awaited): list_streams and watch.
        assert is_coroutine == (name not in {"__init__", "list_streams", "watch"}), name


def test_every_call_takes_a_keyword_only_timeout() -> None:
    for cls in (streamstats.Client, streamstats.AsyncClient):
        for method in _base.RPC_METHODS.values():
            parameter = inspect.signature(getattr(cls, method)).parameters["timeout"]
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
            assert parameter.default is None


# --- config ----------------------------------------------------------------------------------------


def test_client_config_is_frozen_and_keyword_only() -> None:
    config = streamstats.ClientConfig()
    assert (config.timeout, config.max_message_bytes, config.read_retries) == (10.0, 16 * 1024 * 1024, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        streamstats.ClientConfig(5.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "overrides",
    [
        {"timeout": 0},
        {"timeout": math.inf},
        {"timeout": -1.0},
        {"read_retries": -1},
        {"read_retries": 5},  # gRPC allows at most 5 attempts
        {"max_message_bytes": 10},
        {"retry_backoff_multiplier": math.nan},
    ],
)
def test_client_config_rejects_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(overrides))):
        streamstats.ClientConfig(**overrides)


def test_channel_options_carry_limits_and_the_read_retry_policy() -> None:
    config = streamstats.ClientConfig(max_message_bytes=1 << 20, read_retries=3)
    options = dict(_base.channel_options(config))
    assert options["grpc.max_send_message_length"] == 1 << 20
    assert options["grpc.max_receive_message_length"] == 1 << 20
    assert options["grpc.enable_retries"] == 1
    (method_config,) = json.loads(options["grpc.service_config"])["methodConfig"]
    assert {(n["service"], n["method"]) for n in method_config["name"]} == {
        ("streamstats.v1.StreamStats", rpc) for rpc in _base.READ_RPCS
    }
    policy = method_config["retryPolicy"]
    assert policy["maxAttempts"] == 4
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert policy["initialBackoff"].endswith("s")
    assert policy["maxBackoff"].endswith("s")


def test_no_retry_policy_when_retries_are_off() -> None:
    options = dict(_base.channel_options(streamstats.ClientConfig(read_retries=0)))
    assert "grpc.service_config" not in options


def test_keepalive_tls_name_and_token() -> None:
    options = dict(_base.channel_options(streamstats.ClientConfig()))
    keepalive = ("grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms", "grpc.keepalive_permit_without_calls")
    assert [options[name] for name in keepalive] == [30_000, 10_000, 0]
    # Never more often than the server accepts, or it disconnects the client ("too_many_pings").
    assert (
        options["grpc.keepalive_time_ms"]
        >= dict(KEEPALIVE_OPTIONS)["grpc.http2.min_ping_interval_without_data_ms"]
    )
    assert "grpc.ssl_target_name_override" not in options
    named = streamstats.ClientConfig(tls=streamstats.TLSConfig(server_name="streamstats.internal"))
    assert dict(_base.channel_options(named))["grpc.ssl_target_name_override"] == "streamstats.internal"
    assert _base.call_metadata(streamstats.ClientConfig()) is None
    assert _base.call_metadata(streamstats.ClientConfig(token="t0k3n")) == (
        ("authorization", "Bearer t0k3n"),
    )


# --- errors ----------------------------------------------------------------------------------------


EXPECTED_CLASS = {
    "INVALID_ARGUMENT": streamstats.InvalidArgument,
    "NOT_FOUND": streamstats.StreamNotFound,
    "ALREADY_EXISTS": streamstats.AlreadyExists,
    "RESOURCE_EXHAUSTED": streamstats.ResourceExhausted,
    "PERMISSION_DENIED": streamstats.PermissionDenied,
    "UNAUTHENTICATED": streamstats.Unauthenticated,
    "UNAVAILABLE": streamstats.Unavailable,
    "DEADLINE_EXCEEDED": streamstats.DeadlineExceeded,
    "CANCELLED": streamstats.Cancelled,
}


@pytest.mark.parametrize("status", [s for s in grpc.StatusCode if s is not grpc.StatusCode.OK], ids=str)
def test_every_status_maps_to_one_sdk_exception(status: grpc.StatusCode) -> None:
    rpc_error = grpc.aio.AioRpcError(status, grpc.aio.Metadata(), grpc.aio.Metadata(), "k: bad (got 0)", None)
    error = translate_rpc_error(rpc_error)
    assert type(error) is EXPECTED_CLASS.get(status.name, streamstats.ServerError)
    assert error.code == status.name
    assert error.message == str(error) == "k: bad (got 0)"
    assert not isinstance(error, grpc.RpcError)


def test_a_hang_up_while_connecting_says_what_to_check() -> None:
    def raised(details: str) -> streamstats.StreamStatsError:
        status = grpc.StatusCode.UNAVAILABLE
        with pytest.raises(streamstats.StreamStatsError) as info, _base.rpc_errors():
            raise grpc.aio.AioRpcError(status, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)
        return info.value

    hung_up = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:9: Socket closed"
    error = raised(hung_up)
    assert type(error) is streamstats.Unavailable
    assert error.message.startswith(hung_up) and "require TLS, or a client certificate" in error.message
    refused = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: Connection refused"
    assert raised(refused).message == refused


def test_exception_tree() -> None:
    for name in streamstats.__all__:
        obj = getattr(streamstats, name)
        if issubclass(obj, Exception):
            assert issubclass(obj, streamstats.StreamStatsError), name
    assert issubclass(streamstats.ClientClosed, streamstats.Cancelled)
    error = streamstats.StreamNotFound("stream 'x' not found")
    assert (error.code, error.message) == ("NOT_FOUND", "stream 'x' not found")


# --- request building ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1024, 4096, 64 * 1024, 1 << 20])
@pytest.mark.parametrize("name", ["s", "n" * 128])
def test_add_many_chunks_fit_the_limit_and_fill_it(limit: int, name: str) -> None:
    values = [float(i) + 0.25 for i in range(3 * limit // 8 + 7)]
    requests = _base.add_nums_requests(name, values, limit)
    assert [v for r in requests for v in r.values] == values
    for request in requests:
        # gRPC's own 5-byte frame prefix included, to be safe on any server's reading of the limit.
        assert request.ByteSize() + 5 <= limit
    for request in requests[:-1]:
        assert request.ByteSize() > limit - 64 - len(name)  # not wastefully small


def test_an_empty_batch_is_still_one_request() -> None:
    (request,) = _base.add_nums_requests("s", [], 1024)
    assert (request.stream, list(request.values)) == ("s", [])


def test_window_duration_accepts_timedelta_or_seconds() -> None:
    from_seconds = _base.window_duration_pb(90.5)
    from_delta = _base.window_duration_pb(datetime.timedelta(seconds=90, milliseconds=500))
    assert from_seconds is not None
    assert from_seconds == from_delta
    assert (from_seconds.seconds, from_seconds.nanos) == (90, 500_000_000)
    assert _base.window_duration_pb(0) is None
    assert _base.window_duration_pb(None) is None
    with pytest.raises(streamstats.InvalidArgument, match="window_duration"):
        _base.window_duration_pb(math.inf)
    with pytest.raises(TypeError):
        _base.window_duration_pb("60s")  # type: ignore[arg-type]


def test_stream_from_pb_is_plain_python() -> None:
    message = streamstats_pb2.Stream(
        name="s", config=streamstats_pb2.StreamConfig(window_size=3), count=2, total_added=5
    )
    message.create_time.FromSeconds(1_700_000_000)
    stream = _base.stream_from_pb(message)
    assert stream == streamstats.Stream(
        name="s",
        config=streamstats.StreamConfig(window_size=3, window_duration=None),
        count=2,
        total_added=5,
        create_time=datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC),
    )
    assert all(not isinstance(v, types.ModuleType) for v in dataclasses.astuple(stream))
