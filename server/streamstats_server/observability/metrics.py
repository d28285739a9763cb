"""Prometheus metrics: go-grpc-prometheus's names (so Go dashboards and alerts work unchanged) and ours.

Each server has its own ``CollectorRegistry`` (tests run many servers in one process), served over
HTTP by prometheus_client in its own thread: a scrape never touches the event loop. Our gauges are
read at scrape time from the live server (``source``), which is only reading ints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

# Our calls take ~0.5 ms, so go-grpc-prometheus's default buckets (.005 to 10 s) would put nearly every
# call in the first one and say nothing about a p99 of 1 ms vs 4 ms. These are Go's defaults with five
# sub-5 ms buckets in front: quantiles resolve from 100 µs, and a dashboard or alert written against
# Go's boundaries (le="0.005", le="0.1", ...) still finds them. A Watch's "handling" is its whole life,
# so it lands in the top buckets, as server streams do in Go.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
# An fsync takes ~0.1-2 ms on an SSD, 5-50 ms on a spinning or network disk; above a second it stalls
# every writer (they wait for it) and shows in +Inf.
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

#: grpc status -> Go's codes.Code.String(), the grpc_code label values dashboards expect.
GO_CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class Source(Protocol):
    """What the gauges read from the running server."""

    def stream_count(self) -> int: ...
    def values_held(self) -> int: ...
    def values_added_total(self) -> int: ...
    def data_dir(self) -> str: ...


@dataclass(frozen=True)
class Limits:
    max_streams: int
    max_values: int
    max_concurrent_rpcs: int


class Metrics:
    """One server's metrics and, once ``serve`` is called, their HTTP endpoint."""

    def __init__(self, source: Source, limits: Limits) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", _LABELS, registry=r
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            (*_LABELS, "grpc_code"),
            registry=r,
        )
        self.received = Counter(
            "grpc_server_msg_received_total",
            "RPC stream messages received on the server.",
            _LABELS,
            registry=r,
        )
        self.sent = Counter(
            "grpc_server_msg_sent_total", "gRPC stream messages sent on the server.", _LABELS, registry=r
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled "
            "by the server.",
            _LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fsync = Histogram(
            "streamstats_fsync_seconds",
            "Time each fsync of the write-ahead log took (one fsync covers every write waiting for it).",
            buckets=FSYNC_BUCKETS,
            registry=r,
        )
        r.register(_ServerCollector(source, limits))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._http: WSGIServer | None = None

    def initialize(self, service: str, methods: dict[str, str]) -> None:
        """Create every method's series at 0 (``methods``: name -> grpc_type), every code included, as
        go-grpc-prometheus's InitializeMetrics does: rates, ratios and absent() alerts then work
        before the first call, and before the first failure."""
        for method, grpc_type in methods.items():
            labels = (grpc_type, service, method)
            for counter in (self.started, self.received, self.sent):
                counter.labels(*labels)
            self.handling.labels(*labels)
            for code in GO_CODE_NAMES.values():
                self.handled.labels(*labels, code)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP on host:port (0: a free port); returns the bound port."""
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def close(self) -> None:
        """Stop serving; blocks until the HTTP thread notices (up to half a second): call it off the
        event loop."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _ServerCollector(Collector):
    def __init__(self, source: Source, limits: Limits) -> None:
        self._source = source
        self._limits = limits

    def collect(self) -> Iterator[Metric]:
        s = self._source
        yield GaugeMetricFamily("streamstats_streams", "Streams that exist now.", value=s.stream_count())
        yield GaugeMetricFamily(
            "streamstats_values",
            "Live values held in memory across all streams (counted against --max-values).",
            value=s.values_held(),
        )
        yield CounterMetricFamily(
            "streamstats_values_added",
            "Values accepted since the server started.",
            value=s.values_added_total(),
        )
        yield GaugeMetricFamily(
            "streamstats_storage_bytes",
            "Bytes of the files in the data dir (0 in memory).",
            value=_folder_bytes(s.data_dir()),
        )
        for name, value, help_text in (
            ("max_streams", self._limits.max_streams, "--max-streams (0: no limit)."),
            ("max_values", self._limits.max_values, "--max-values (0: no limit)."),
            ("max_concurrent_rpcs", self._limits.max_concurrent_rpcs, "--max-concurrent-rpcs (0: no limit)."),
        ):
            yield GaugeMetricFamily(f"streamstats_limit_{name}", help_text, value=value)


def _folder_bytes(path: str) -> int:
    if not path:
        return 0
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile (a checkpoint dropping old segments)
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
