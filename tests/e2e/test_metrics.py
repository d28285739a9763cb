"""Prometheus metrics over HTTP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.app import StreamStatsServer
from tests.conftest import TEST_CONFIG, ThreadedServer
from tests.e2e.program import LISTENING, METRICS, SERVER, program_environment, server_process

T = 10.0
SERVICE = "streamstats.v1.StreamStats"
Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def scrape(url: str) -> Samples:
    """Every sample as (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=T) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def settled(url: str) -> Samples:
    """A scrape once every call started has been counted as handled.

    A call that fails is counted just after its status is sent, so a client can see the failure a
    moment before the server has counted it."""
    for _ in range(200):
        samples = scrape(url)
        started = sum(v for (name, _), v in samples.items() if name == "grpc_server_started_total")
        handled = sum(v for (name, _), v in samples.items() if name == "grpc_server_handled_total")
        if started == handled:
            return samples
        time.sleep(0.05)
    raise AssertionError(f"calls started but never handled: {started} started, {handled} handled")


def key(name: str, method: str, grpc_type: str = "unary", service: str = SERVICE, **extra: str) -> Any:
    labels = {"grpc_method": method, "grpc_service": service, "grpc_type": grpc_type, **extra}
    return (name, tuple(sorted(labels.items())))


def handled(method: str, code: str, grpc_type: str = "unary", service: str = SERVICE) -> Any:
    return key("grpc_server_handled_total", method, grpc_type, service, grpc_code=code)


@contextmanager
def serving(**overrides: Any) -> Iterator[StreamStatsServer]:
    """An in-process server with a metrics endpoint on a free port."""
    threaded = ThreadedServer(replace(TEST_CONFIG, metrics_port=0, **overrides))
    threaded.start()
    try:
        yield threaded.server
    finally:
        threaded.stop()


@pytest.fixture
def server(storage_mode: str, tmp_path: Path) -> Iterator[StreamStatsServer]:
    data_dir = str(tmp_path / "data") if storage_mode == "durable" else ""
    with serving(data_dir=data_dir, max_streams=77, max_values=5000, max_concurrent_rpcs=33) as server:
        yield server


def test_calls_are_counted_like_go_grpc_prometheus(server: StreamStatsServer) -> None:
    assert server.metrics_url is not None
    before = scrape(server.metrics_url)
    # Initialised like go-grpc-prometheus: every method and code is there at 0 before any call.
    assert before[handled("GetStats", "OK")] == 0
    assert before[handled("GetStats", "NotFound")] == 0
    assert before[key("grpc_server_started_total", "Watch", "server_stream")] == 0
    assert before[key("grpc_server_msg_received_total", "StreamNums", "client_stream")] == 0
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        stub.CreateStream(pb.CreateStreamRequest(name="w", config=pb.StreamConfig(window_size=2)), timeout=T)
        stub.AddNums(pb.AddNumsRequest(stream="w", values=[1.0, 2.0, 3.0]), timeout=T)  # keeps 2
        stub.AddNums(pb.AddNumsRequest(stream="m", values=[1.0, 2.0, 3.0]), timeout=T)
        stub.FindMedian(pb.FindMedianRequest(stream="m"), timeout=T)
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                stub.FindMedian(pb.FindMedianRequest(stream="missing"), timeout=T)
        with pytest.raises(grpc.RpcError):
            stub.AddNum(pb.AddNumRequest(stream="m", value=float("nan")), timeout=T)
        requests = [pb.AddNumsRequest(stream="m", values=[4.0]) for _ in range(3)]
        stub.StreamNums(iter(requests), timeout=T)
    after = settled(server.metrics_url)
    assert after[key("grpc_server_started_total", "FindMedian")] == 3
    assert after[handled("FindMedian", "OK")] == 1
    assert after[handled("FindMedian", "NotFound")] == 2
    assert after[handled("AddNum", "InvalidArgument")] == 1
    # Like Go: a unary call receives one message, and sends one only when it succeeds.
    assert after[key("grpc_server_msg_received_total", "AddNum")] == 1
    assert after[key("grpc_server_msg_sent_total", "AddNum")] == 0
    assert after[key("grpc_server_msg_sent_total", "FindMedian")] == 1
    assert after[key("grpc_server_handling_seconds_count", "FindMedian")] == 3
    assert after[key("grpc_server_handling_seconds_bucket", "FindMedian", le="+Inf")] == 3
    assert key("grpc_server_handling_seconds_bucket", "FindMedian", le="0.005") in after  # Go's boundaries
    assert after[key("grpc_server_msg_received_total", "StreamNums", "client_stream")] == 3
    assert after[key("grpc_server_msg_sent_total", "StreamNums", "client_stream")] == 1
    assert after[handled("StreamNums", "OK", "client_stream")] == 1
    # Ours: the window keeps 2 of w's 3 values.
    assert after[("streamstats_streams", ())] == 2
    assert after[("streamstats_values", ())] == 2 + 6
    assert after[("streamstats_values_added_total", ())] == 3 + 6
    assert after[("streamstats_limit_max_streams", ())] == 77
    assert after[("streamstats_limit_max_values", ())] == 5000
    assert after[("streamstats_limit_max_concurrent_rpcs", ())] == 33
    assert after[("process_resident_memory_bytes", ())] > 0
    assert any(name == "python_info" for name, _ in after)
    if server.config.data_dir:  # fsync always: every add was fsynced
        assert after[("streamstats_storage_bytes", ())] > 0
        assert after[("streamstats_fsync_seconds_count", ())] > 0
    else:
        assert after[("streamstats_storage_bytes", ())] == 0
        assert after[("streamstats_fsync_seconds_count", ())] == 0


def cancel(call: grpc.RpcContext) -> None:
    call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped


def _blocked_watch(stub: pb_grpc.StreamStatsStub, url: str) -> grpc.RpcContext:
    """A Watch of 160 KB updates that its client never reads, fed until the server's write of an
    update waits for the client: grpc then drops the handler's generator when the call is cancelled."""
    stub.AddNums(pb.AddNumsRequest(stream="big", values=[float(i) for i in range(10_000)]), timeout=T)
    query = pb.StatsQuery(k=10_000)
    interval = pb.WatchRequest(stream="big").min_interval
    interval.FromMilliseconds(10)
    watch = stub.Watch(pb.WatchRequest(stream="big", query=query, min_interval=interval), timeout=60)
    sent = key("grpc_server_msg_sent_total", "Watch", "server_stream")
    last, unchanged = -1.0, 0
    for _ in range(600):
        stub.AddNum(pb.AddNumRequest(stream="big", value=1.0), timeout=T)  # a change to send
        time.sleep(0.05)
        count = scrape(url)[sent]
        unchanged = unchanged + 1 if count == last else 0
        last = count
        if unchanged >= 4:  # changes keep coming, updates stopped: the server waits on a write
            return watch
    raise AssertionError("the server never blocked writing Watch updates")


def test_streaming_calls_keep_their_kind_and_final_code() -> None:
    with serving() as server, grpc.insecure_channel(server.address) as channel:
        assert server.metrics_url is not None
        stub = pb_grpc.StreamStatsStub(channel)
        stub.AddNum(pb.AddNumRequest(stream="w", value=1.0), timeout=T)
        # Watch (an async generator), cancelled by the client while waiting for a change.
        watch = stub.Watch(pb.WatchRequest(stream="w"), timeout=T)
        next(iter(watch))
        cancel(watch)
        # Watch ended by its deadline.
        with pytest.raises(grpc.RpcError) as expired:
            for _ in stub.Watch(pb.WatchRequest(stream="w"), timeout=0.2):
                pass
        assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # Watch cancelled while grpc writes an update: the generator is closed (GeneratorExit).
        cancel(_blocked_watch(stub, server.metrics_url))
        # grpc_health's Watch: a coroutine that writes its messages itself.
        health = health_pb2_grpc.HealthStub(channel)
        health_watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=T)
        assert next(iter(health_watch)).status == health_pb2.HealthCheckResponse.SERVING
        cancel(health_watch)
        # Reflection: a bidi-streaming async generator.
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = reflection.ServerReflectionInfo(iter([request]), timeout=T)
        assert SERVICE in [s.name for s in answer.list_services_response.service]
        after = settled(server.metrics_url)
    assert after[handled("Watch", "Canceled", "server_stream")] == 2
    assert after[handled("Watch", "DeadlineExceeded", "server_stream")] == 1
    assert after[handled("Watch", "Unknown", "server_stream")] == 0
    assert after[handled("Watch", "Canceled", "server_stream", "grpc.health.v1.Health")] == 1
    bidi = ("bidi_stream", "grpc.reflection.v1alpha.ServerReflection")
    assert after[handled("ServerReflectionInfo", "OK", *bidi)] == 1
    assert after[key("grpc_server_msg_received_total", "ServerReflectionInfo", *bidi)] == 1
    assert after[key("grpc_server_msg_sent_total", "ServerReflectionInfo", *bidi)] == 1


def test_no_endpoint_without_a_metrics_port() -> None:
    server = ThreadedServer(TEST_CONFIG)
    server.start()
    try:
        assert server.server.metrics is None
        assert server.server.metrics_url is None
    finally:
        server.stop()


def test_the_program_serves_metrics_on_loopback(tmp_path: Path) -> None:
    with server_process("--metrics-port", "0", "--fsync", "always", data_dir=tmp_path / "data") as program:
        line = program.stdout_line()
        assert line.startswith(METRICS), line
        url = line[len(METRICS) :].strip()
        found = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/metrics", url)
        assert found, url
        # Bound to 127.0.0.1 only: on Linux 127.0.0.2 is this machine too, but nothing listens there.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", int(found.group(1))), timeout=T).close()
        with grpc.insecure_channel(program.address) as channel:
            stub = pb_grpc.StreamStatsStub(channel)
            stub.AddNums(pb.AddNumsRequest(stream="m", values=[1.0, 2.0, 3.0]), timeout=T)
            with pytest.raises(grpc.RpcError):
                stub.GetStream(pb.GetStreamRequest(name="missing"), timeout=T)
        samples = settled(url)
        assert program.terminate() == 0
        assert f"metrics on {url}" in program.stderr()
    assert samples[handled("AddNums", "OK")] == 1
    assert samples[handled("GetStream", "NotFound")] == 1
    assert samples[("streamstats_streams", ())] == 1
    assert samples[("streamstats_values_added_total", ())] == 3
    assert samples[("streamstats_storage_bytes", ())] > 0
    assert samples[("streamstats_fsync_seconds_count", ())] > 0
    assert not [name for name, _ in samples if name.endswith("_created")]  # as from Go: none


def test_a_taken_metrics_port_stops_the_program() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SERVER, "--port", "0", "--in-memory", "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=program_environment(),
        )
    assert result.returncode == 1, result.stderr
    assert f"streamstats-server: cannot serve metrics on 127.0.0.1:{port}: " in result.stderr
    assert LISTENING not in result.stdout
