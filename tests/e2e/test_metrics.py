"""Prometheus metrics over HTTP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.conftest import TEST_CONFIG, ThreadedServer
from tests.e2e.program import server_process

T = 10.0
SERVICE = "streamstats.v1.StreamStats"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=T) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def labels(method: str, grpc_type: str = "unary", **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted({"grpc_method": method, "grpc_service": SERVICE, "grpc_type": grpc_type, **extra}.items())
    )


@pytest.fixture(params=["memory", "durable"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ThreadedServer]:
    data_dir = str(tmp_path / "data") if request.param == "durable" else ""
    threaded = ThreadedServer(replace(TEST_CONFIG, metrics_port=0, data_dir=data_dir, max_streams=77))
    threaded.start()
    yield threaded
    threaded.stop()


def test_grpc_metrics_have_go_grpc_prometheus_names(server: ThreadedServer) -> None:
    port = server.server.metrics_port
    assert port
    before = scrape(port)
    # Initialised like go-grpc-prometheus: every method is there at 0 before any call.
    assert before[("grpc_server_handled_total", labels("GetStats", grpc_code="OK"))] == 0
    assert before[("grpc_server_started_total", labels("Watch", "server_stream"))] == 0
    with grpc.insecure_channel(server.server.address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        stub.AddNums(pb.AddNumsRequest(stream="m", values=[1.0, 2.0, 3.0]), timeout=T)
        stub.FindMedian(pb.FindMedianRequest(stream="m"), timeout=T)
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                stub.FindMedian(pb.FindMedianRequest(stream="missing"), timeout=T)
        with pytest.raises(grpc.RpcError):
            stub.AddNum(pb.AddNumRequest(stream="m", value=float("nan")), timeout=T)
        requests = [pb.AddNumsRequest(stream="m", values=[4.0]) for _ in range(3)]
        stub.StreamNums(iter(requests), timeout=T)
    after = scrape(port)
    assert after[("grpc_server_started_total", labels("FindMedian"))] == 3
    assert after[("grpc_server_handled_total", labels("FindMedian", grpc_code="OK"))] == 1
    assert after[("grpc_server_handled_total", labels("FindMedian", grpc_code="NotFound"))] == 2
    assert after[("grpc_server_handled_total", labels("AddNum", grpc_code="InvalidArgument"))] == 1
    assert after[("grpc_server_handling_seconds_count", labels("FindMedian"))] == 3
    assert after[("grpc_server_handling_seconds_bucket", labels("FindMedian", le="+Inf"))] == 3
    stream_labels = labels("StreamNums", "client_stream")
    assert after[("grpc_server_msg_received_total", stream_labels)] == 3
    assert after[("grpc_server_msg_sent_total", stream_labels)] == 1
    assert after[("grpc_server_handled_total", labels("StreamNums", "client_stream", grpc_code="OK"))] == 1
    # Ours.
    assert after[("streamstats_streams", ())] == 1
    assert after[("streamstats_values", ())] == 6
    assert after[("streamstats_values_added_total", ())] == 6
    assert after[("streamstats_limit_max_streams", ())] == 77
    assert ("process_resident_memory_bytes", ()) in after
    durable = bool(server.server.config.data_dir)
    assert (after[("streamstats_storage_bytes", ())] > 0) == durable
    assert (after[("streamstats_fsync_seconds_count", ())] > 0) == durable


def test_no_endpoint_without_a_metrics_port() -> None:
    server = ThreadedServer(TEST_CONFIG)
    server.start()
    try:
        assert server.server.metrics_port is None
    finally:
        server.stop()


def test_the_program_serves_metrics_on_loopback() -> None:
    with server_process("--metrics-port", "0") as program:
        found = None
        for _ in range(200):
            found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", program.stderr())
            if found:
                break
            program.proc.poll()
        assert found, program.stderr()
        samples = scrape(int(found.group(1)))
        assert samples[("streamstats_streams", ())] == 0
