"""Per-RPC latency histograms in microseconds: recording, merging worker reports, the table and the CSV.

Latencies are recorded in nanoseconds (``time.perf_counter_ns``) and reported in microseconds. Every
call is recorded, failed ones included (as locust does), and failures are also counted apart.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.histogram import LogLinearHistogram

AGGREGATED = "Aggregated"
PERCENTILES = (50.0, 95.0, 99.0, 99.9)
CSV_HEADER = (
    "Name",
    "Count",
    "Failures",
    "p50_us",
    "p95_us",
    "p99_us",
    "p99.9_us",
    "Max_us",
    "Mean_us",
    "Calls/s",
)


@dataclass
class RpcLatency:
    histogram: LogLinearHistogram = field(default_factory=LogLinearHistogram)
    failures: int = 0


@dataclass(frozen=True)
class Row:
    """One line of the table; latencies in microseconds."""

    name: str
    count: int
    failures: int
    p50: float
    p95: float
    p99: float
    p999: float
    max: float
    mean: float
    rate: float


class LatencyReport:
    """Latency histograms and failure counts by RPC name."""

    def __init__(self) -> None:
        self.rpcs: dict[str, RpcLatency] = {}

    def record(self, name: str, latency_ns: int, *, failed: bool = False) -> None:
        rpc = self.rpcs.get(name)
        if rpc is None:
            rpc = self.rpcs[name] = RpcLatency()
        rpc.histogram.record(max(0, latency_ns))
        if failed:
            rpc.failures += 1

    def clear(self) -> None:
        self.rpcs.clear()

    @property
    def total_count(self) -> int:
        return sum(rpc.histogram.count for rpc in self.rpcs.values())

    def merge(self, other: LatencyReport) -> None:
        for name, theirs in other.rpcs.items():
            ours = self.rpcs.get(name)
            if ours is None:
                ours = self.rpcs[name] = RpcLatency(LogLinearHistogram(theirs.histogram.sub_bucket_bits))
            ours.histogram.merge(theirs.histogram)
            ours.failures += theirs.failures

    def to_wire(self) -> dict[str, Any]:
        return {
            name: {"histogram": rpc.histogram.to_wire(), "failures": rpc.failures}
            for name, rpc in self.rpcs.items()
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> LatencyReport:
        report = cls()
        for name, rpc in data.items():
            report.rpcs[str(name)] = RpcLatency(
                LogLinearHistogram.from_wire(rpc["histogram"]), int(rpc["failures"])
            )
        return report

    # -- output ----------------------------------------------------------------------------------------

    def rows(self, duration_s: float) -> list[Row]:
        """One row per RPC (by name) and an Aggregated row of all of them (when there is any RPC)."""
        aggregated = RpcLatency()
        rows = []
        for name in sorted(self.rpcs):
            rpc = self.rpcs[name]
            aggregated.histogram.merge(rpc.histogram)
            aggregated.failures += rpc.failures
            rows.append(_row(name, rpc, duration_s))
        if rows:
            rows.append(_row(AGGREGATED, aggregated, duration_s))
        return rows

    def table(self, duration_s: float) -> list[str]:
        """The table as printed at the end of a run (latencies in µs)."""
        head = (
            f"{'Name':<22} {'# calls':>9} {'# fails':>8} {'p50':>9} {'p95':>9} {'p99':>9} "
            f"{'p99.9':>9} {'max':>10} {'mean':>9} {'calls/s':>9}"
        )
        lines = [
            f"streamstats latency in microseconds (µs), {duration_s:.1f} s of load, every call recorded "
            f"(failures included), percentiles within {100 * LogLinearHistogram().relative_error:.1f} %:",
            head,
            "-" * len(head),
        ]
        for row in self.rows(duration_s):
            if row.name == AGGREGATED:
                lines.append("-" * len(head))
            lines.append(
                f"{row.name:<22} {row.count:>9} {row.failures:>8} {row.p50:>9.1f} {row.p95:>9.1f} "
                f"{row.p99:>9.1f} {row.p999:>9.1f} {row.max:>10.1f} {row.mean:>9.1f} {row.rate:>9.1f}"
            )
        if len(lines) == 3:
            lines.append("(no calls recorded)")
        return lines

    def write_csv(self, path: Path, duration_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(CSV_HEADER)
            for row in self.rows(duration_s):
                writer.writerow(
                    (
                        row.name,
                        row.count,
                        row.failures,
                        f"{row.p50:.1f}",
                        f"{row.p95:.1f}",
                        f"{row.p99:.1f}",
                        f"{row.p999:.1f}",
                        f"{row.max:.1f}",
                        f"{row.mean:.1f}",
                        f"{row.rate:.2f}",
                    )
                )


def _row(name: str, rpc: RpcLatency, duration_s: float) -> Row:
    histogram = rpc.histogram
    p50, p95, p99, p999 = (ns / 1000.0 for ns in histogram.percentiles(PERCENTILES))
    return Row(
        name=name,
        count=histogram.count,
        failures=rpc.failures,
        p50=p50,
        p95=p95,
        p99=p99,
        p999=p999,
        max=histogram.max / 1000.0,
        mean=histogram.mean / 1000.0,
        rate=histogram.count / duration_s if duration_s > 0 else 0.0,
    )
