"""Durability benchmark: ingest throughput per --fsync policy, and restart time per stored value.

Run:  .venv/bin/python bench/durability.py [--seconds 3] [--restart-values 10000000] [--no-write]

Everything is measured in one run so ratios are comparable on a shared, noisy machine. The server
is a real `streamstats-server` subprocess pinned to core 0; the load generator is this process (an
asyncio gRPC client with N calls in flight) pinned to core 1. Results replace the durability section
of docs/BENCHMARKS.md (between its markers) unless --no-write.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from _common import CLIENT_CORE, pin, streamstats_server, write_section

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.registry import Registry
from streamstats_server.storage import DurableStorage, StorageConfig

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- durability:begin -->", "<!-- durability:end -->"
MODES = ("memory", "always", "interval")


async def ingest(address: str, batch: int, concurrency: int, seconds: float, shared_stream: bool) -> float:
    """Values acknowledged per second with ``concurrency`` AddNums calls in flight."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        values = [float(i % 997) for i in range(batch)]
        requests = [
            pb.AddNumsRequest(stream="bench" if shared_stream else f"bench-{i}", values=values)
            for i in range(concurrency)
        ]
        for request in requests:  # create the streams and the connection before timing
            await stub.AddNums(request, timeout=30)
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker(request: pb.AddNumsRequest) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await stub.AddNums(request, timeout=30)
                done += batch

        start = time.perf_counter()
        await asyncio.gather(*(worker(r) for r in requests))
        return done / (time.perf_counter() - start)


@dataclass
class IngestRow:
    batch: int
    concurrency: int
    shared: bool
    rates: dict[str, float]


def run_ingest(seconds: float) -> list[IngestRow]:
    rows = []
    for batch, concurrency, shared in [
        (1, 1, False),
        (1, 16, False),
        (1000, 1, False),
        (1000, 16, False),
        (1000, 16, True),
    ]:
        rates: dict[str, float] = {}
        for mode in MODES:
            data_dir = tempfile.mkdtemp(prefix="ssbench-")
            flags = ["--in-memory"] if mode == "memory" else ["--data-dir", data_dir, "--fsync", mode]
            try:
                with streamstats_server("--max-k", "10", *flags) as running:
                    rates[mode] = asyncio.run(ingest(running.address, batch, concurrency, seconds, shared))
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
            print(
                f"  batch {batch:>5} x{concurrency:<2} {'one stream' if shared else 'own streams'} "
                f"{mode:>8}: "
                f"{rates[mode]:>12,.0f} values/s",
                flush=True,
            )
        rows.append(IngestRow(batch, concurrency, shared, rates))
    return rows


def build_data_dir(directory: str, values: int, checkpoint: bool, batch: int) -> None:
    """``values`` stored values in 10 streams, written in-process in batches of ``batch``; then a
    checkpoint, or left as log only."""

    async def main() -> None:
        storage = DurableStorage(StorageConfig(data_dir=directory, checkpoint_bytes=1 << 40))
        recovered, _ = storage.recover()
        registry = Registry(storage)
        registry.load(recovered)
        storage.start()
        per_stream = values // 10
        chunk = [float(i % 100_003) * 0.5 for i in range(min(per_stream, batch))]
        for s in range(10):
            left = per_stream
            while left:
                part = chunk[: min(left, len(chunk))]
                await registry.add(f"restart-{s}", part)
                left -= len(part)
        if checkpoint:
            await registry.checkpoint()
        await registry.close()

    asyncio.run(main())


def run_restart(total: int) -> list[tuple[str, int, float, int]]:
    rows = []
    cases = [
        ("checkpoint", total, True, 100_000),
        ("log only, batches of 1,000", total // 2, False, 1000),
    ]
    for label, count, checkpoint, batch in cases:
        directory = tempfile.mkdtemp(prefix="ssrestart-")
        try:
            build_data_dir(directory, count, checkpoint, batch)
            size = sum(p.stat().st_size for p in Path(directory).iterdir())
            with streamstats_server("--data-dir", directory) as running:
                seconds = running.startup_seconds
            rows.append((label, count, seconds, size))
            print(
                f"  restart from {label}: {count:,} values, {size / 1e6:,.0f} MB on disk, {seconds:.2f} s",
                flush=True,
            )
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return rows


def render(rows: list[IngestRow], restarts: list[tuple[str, int, float, int]], seconds: float) -> str:
    lines = [
        BEGIN,
        "## Durability: ingest per --fsync policy, restart time",
        "",
        f"`bench/durability.py`, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}. Server on core 0, asyncio client on "
        f"core 1, {seconds:g} s per cell, AddNums; each client task writes its own stream unless noted.",
        "",
        "| batch | in flight | streams | in-memory values/s | always values/s | interval values/s "
        "| always / memory | interval / memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row.rates
        lines.append(
            f"| {row.batch} | {row.concurrency} | {'one shared' if row.shared else 'one each'} | "
            f"{r['memory']:,.0f} | {r['always']:,.0f} | {r['interval']:,.0f} | "
            f"{r['always'] / r['memory']:.2f} | {r['interval'] / r['memory']:.2f} |"
        )
    goal = next(row for row in rows if row.batch == 1000 and row.concurrency == 16 and not row.shared)
    slowdown = goal.rates["memory"] / goal.rates["always"]
    lines += [
        "",
        f"Goal: `always` at 16 in flight, batches of 1,000, within 1.3x of in-memory: measured "
        f"**{slowdown:.2f}x** ({'met' if slowdown <= 1.3 else 'missed'}).",
        "",
        "| restart from | stored values | on disk | spawn to listening | per million values |",
        "|---|---|---|---|---|",
    ]
    for label, count, secs, size in restarts:
        lines.append(
            f"| {label} | {count:,} | {size / 1e6:,.0f} MB | {secs:.2f} s | {secs / (count / 1e6):.2f} s |"
        )
    big = next(r for r in restarts if r[0] == "checkpoint")
    lines += [
        "",
        f"Goal: restart of 10 million values in under 10 s: measured **{big[2]:.2f} s** for {big[1]:,} "
        f"values ({'met' if big[1] >= 10_000_000 and big[2] < 10 else 'see the row above'}). The log-only "
        "row is the most log a restart replays on top of a checkpoint of that size (the log between "
        "checkpoints grows to a quarter of the last checkpoint's bytes); the worst restart is the sum of the "
        "two rows.",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each ingest cell")
    parser.add_argument("--restart-values", type=int, default=10_000_000)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    ns = parser.parse_args()
    pin(0, CLIENT_CORE)
    print("ingest:", flush=True)
    rows = run_ingest(ns.seconds)
    print("restart:", flush=True)
    restarts = run_restart(ns.restart_values)
    section = render(rows, restarts, ns.seconds)
    print(section)
    if not ns.no_write:
        write_section(BEGIN, END, section)


if __name__ == "__main__":
    main()
