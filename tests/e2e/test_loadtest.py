"""The locust load test (loadtest/): its histogram, and short real runs against real servers.

Locust runs in subprocesses only: it monkey-patches the standard library with gevent at import, which
must not happen in the pytest process. Each run is a few users for a few seconds.
"""

from __future__ import annotations

import csv
import math
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from loadtest.histogram import LogLinearHistogram
from loadtest.report import AGGREGATED, LatencyReport
from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
CALLS = ("AddNum", "AddNums", "FindMedian", "TopK", "BottomK", "GetStats")
WATCH = ("Watch open", "Watch")  # a watch's first update, and the later ones
LISTENING = "streamstats-server listening on "
PERCENTS = (0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0)
# A small, fast mix: 6 streams (3 windowed at 300 values), pre-filled to 20,000 values each (more than a
# few seconds of load add, so the counts show the pre-fill happened), users calling every ~2 ms.
PREFILL = 20_000
MIX = ["--streams", "6", "--windowed-fraction", "0.5", "--window-size", "300", "--prefill", str(PREFILL)]
MIX += ["--wait-ms", "2"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSTATS_", "LOADTEST_", "LOCUST_"))}


# -- the histogram -------------------------------------------------------------------------------------


def exact_percentile(ordered: list[int], percent: float) -> int:
    """Nearest rank: the value of rank ceil(p/100 * n), at least 1."""
    rank = max(1, math.ceil(percent / 100.0 * len(ordered)))
    return ordered[rank - 1]


@pytest.mark.parametrize(
    "draw",
    [
        pytest.param(lambda rng: int(rng.lognormvariate(13.0, 1.0)), id="lognormal-latencies-ns"),
        pytest.param(lambda rng: rng.randrange(0, 1 << 40), id="uniform-wide"),
        pytest.param(lambda rng: rng.randrange(0, 300), id="small-with-duplicates"),
        pytest.param(lambda rng: int(10 ** rng.uniform(0, 12)), id="log-uniform-12-decades"),
    ],
)
def test_histogram_percentiles_are_within_the_relative_error_of_exact_ones(
    draw: Callable[[random.Random], int],
) -> None:
    rng = random.Random(20261124)
    values = [draw(rng) for _ in range(20_000)]
    histogram = LogLinearHistogram()
    histogram.record_many(values)
    ordered = sorted(values)

    assert histogram.relative_error < 0.01
    assert histogram.count == len(values) and histogram.total == sum(values)
    assert (histogram.min, histogram.max) == (ordered[0], ordered[-1])
    for percent, approximate in zip(PERCENTS, histogram.percentiles(PERCENTS), strict=True):
        exact = exact_percentile(ordered, percent)
        assert abs(approximate - exact) <= histogram.relative_error * exact, (percent, approximate, exact)


def test_small_values_are_exact_and_the_extremes_always() -> None:
    histogram = LogLinearHistogram()
    histogram.record_many([3, 1, 2, 100, 127, 10**9 + 7])
    assert histogram.percentiles([0.0, 20.0, 50.0, 100.0]) == [1.0, 2.0, 3.0, float(10**9 + 7)]
    assert LogLinearHistogram().percentiles([50.0]) == [0.0]
    with pytest.raises(ValueError, match="negative"):
        histogram.record(-1)


def test_histograms_merge_and_cross_the_wire_exactly() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(12.0, 1.5)) for _ in range(10_000)]
    whole, first, second = LogLinearHistogram(), LogLinearHistogram(), LogLinearHistogram()
    whole.record_many(values)
    first.record_many(values[:3_000])
    second.record_many(values[3_000:])
    merged = LogLinearHistogram.from_wire(first.to_wire())  # as a worker's report reaches the master
    merged.merge(LogLinearHistogram.from_wire(second.to_wire()))
    assert merged.to_wire() == whole.to_wire()
    assert merged.percentiles(PERCENTS) == whole.percentiles(PERCENTS)
    with pytest.raises(ValueError, match="merge"):
        whole.merge(LogLinearHistogram(sub_bucket_bits=5))


def test_latency_report_rows_in_microseconds() -> None:
    report = LatencyReport()
    for us in range(1, 101):
        report.record("FindMedian", us * 1000)
    report.record("TopK", 5_000_000, failed=True)
    merged = LatencyReport()
    merged.merge(LatencyReport.from_wire(report.to_wire()))
    rows = {row.name: row for row in merged.rows(duration_s=2.0)}
    assert list(rows) == ["FindMedian", "TopK", AGGREGATED]
    median = rows["FindMedian"]
    assert (median.count, median.failures, median.max, median.rate) == (100, 0, 100.0, 50.0)
    assert median.p50 == pytest.approx(50.0, rel=0.005) and median.p99 == pytest.approx(99.0, rel=0.005)
    assert (rows["TopK"].failures, rows[AGGREGATED].count, rows[AGGREGATED].failures) == (1, 101, 1)


# -- real runs -----------------------------------------------------------------------------------------


@contextmanager
def server(*args: str) -> Iterator[str]:
    """A streamstats-server process, in memory, on a free port; its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamstats_server", "--port", "0", "--in-memory", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(LISTENING), line
        yield line[len(LISTENING) :].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_locust(address: str, results: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"),
        *("-u", "4", "-r", "4", "-t", "3s", "--host", address),
        *("--csv", str(results / "locust"), "--html", str(results / "report.html"), *MIX, *extra),
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=90, cwd=ROOT, env=clean_env(), check=False
    )


def read_csv(path: Path, key: str) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return {row[key]: row for row in csv.DictReader(f)}


def assert_every_rpc_recorded_without_failures(results: Path, names: tuple[str, ...]) -> None:
    """Locust's stats CSV (ms) and our latency CSV (µs) both hold these names and no other, the same
    counts, no failures."""
    locust_stats = read_csv(results / "locust_stats.csv", "Name")
    latency = read_csv(results / "locust_latency_us.csv", "Name")
    for name in names:
        assert locust_stats[name]["Type"] == "grpc"
        count = int(locust_stats[name]["Request Count"])
        assert count > 0 and int(locust_stats[name]["Failure Count"]) == 0, locust_stats[name]
        row = latency[name]
        assert int(row["Count"]) == count and int(row["Failures"]) == 0, (row, count)
        p50, p95, p99, p999, top = (
            float(row[c]) for c in ("p50_us", "p95_us", "p99_us", "p99.9_us", "Max_us")
        )
        assert 0 < p50 <= p95 <= p99 <= p999 <= top, row
        assert float(row["Calls/s"]) > 0
    assert int(latency[AGGREGATED]["Count"]) == int(locust_stats[AGGREGATED]["Request Count"])
    assert set(latency) == {*names, AGGREGATED}
    assert set(locust_stats) == {*names, AGGREGATED}


@pytest.mark.slow
def test_a_short_run_records_every_rpc_without_failures(tmp_path: Path) -> None:
    # 2 of the 4 users watch (the default), each moving to another stream every 0.5 s; the others call.
    # Stopping gracefully (--stop-timeout) waits for users to finish their task: the open watches must
    # be ended at once rather than held to the end of their hold, and their CANCELLED is no failure.
    watching = ["--watch-seconds", "0.5", "--watch-interval", "0.05", "--stop-timeout", "60"]
    with server() as address:
        done = run_locust(address, tmp_path, *watching)
        assert done.returncode == 0, done.stdout + done.stderr
        assert_every_rpc_recorded_without_failures(tmp_path, (*CALLS, *WATCH))
        assert "Not all users finished" not in done.stdout + done.stderr
        opened = read_csv(tmp_path / "locust_stats.csv", "Name")["Watch open"]
        assert int(opened["Request Count"]) > 2  # 2 watch users, and at least one moved to another stream
        assert (tmp_path / "report.html").stat().st_size > 0
        assert "streamstats latency in microseconds" in done.stdout + done.stderr
        with grpc.insecure_channel(address) as channel:  # the streams were made and pre-filled
            stub = pb_grpc.StreamStatsStub(channel)
            listed = stub.ListStreams(pb.ListStreamsRequest(prefix="loadtest-"), timeout=10).streams
            streams = {stream.name: stream for stream in listed}
            assert sorted(streams) == [
                *(f"loadtest-a{i:05d}" for i in (3, 4, 5)),
                *(f"loadtest-w{i:05d}" for i in (0, 1, 2)),
            ]
            for i in (0, 1, 2):
                windowed = streams[f"loadtest-w{i:05d}"]
                assert windowed.config.window_size == 300 and windowed.count == 300
            for i in (3, 4, 5):
                unbounded = streams[f"loadtest-a{i:05d}"]
                assert unbounded.config.window_size == 0 and unbounded.count >= PREFILL


@pytest.mark.slow
def test_failures_are_reported_with_their_status_code(tmp_path: Path) -> None:
    with server("--max-k", "5") as address:
        done = run_locust(address, tmp_path, "--k", "10", "-t", "2s")
    assert done.returncode == 1, done.stdout + done.stderr  # locust's exit code when a call failed
    failures = read_csv(tmp_path / "locust_failures.csv", "Name")
    # k above --max-k: TopK and BottomK name "k", GetStats and Watch (which ask for top/bottom k too)
    # "query.k"; a Watch fails before its first update.
    assert set(failures) == {"TopK", "BottomK", "GetStats", "Watch open"}
    for row in failures.values():
        assert row["Method"] == "grpc", row
        assert row["Error"].startswith(
            ('GrpcFailure("INVALID_ARGUMENT: k: ', 'GrpcFailure("INVALID_ARGUMENT: query.k: ')
        ), row
    latency = read_csv(tmp_path / "locust_latency_us.csv", "Name")
    for name in ("TopK", "BottomK", "GetStats", "Watch open"):
        assert int(latency[name]["Failures"]) == int(latency[name]["Count"]) > 0
    assert "Watch" not in latency
    assert int(latency["FindMedian"]["Failures"]) == 0 < int(latency["FindMedian"]["Count"])


@pytest.mark.slow
def test_distributed_run_merges_the_workers_histograms_on_the_master(tmp_path: Path) -> None:
    """loadtest/run.py: its own server, a master and one worker; only the worker runs users. With
    --watch-users 0 locust must not fall back to giving the watch user class users by weight."""
    command = [sys.executable, "-m", "loadtest.run", "--workers", "1", "-u", "3", "-r", "3", "-t", "3s"]
    command += ["--results", str(tmp_path), "--", "--only-summary", *MIX, "--watch-users", "0"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=ROOT, env=clean_env(), check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_every_rpc_recorded_without_failures(tmp_path, CALLS)
    assert "Got quit message from master" in (tmp_path / "worker-1.log").read_text(encoding="utf-8")
    assert "streamstats-server stopped (exit code 0)" in done.stdout
