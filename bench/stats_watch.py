"""GetStats latency, and what 1,000 watchers cost ingest (issue 6). Rewrites its section of
docs/BENCHMARKS.md.

Run:  .venv/bin/python bench/stats_watch.py [--quick]     (make bench-stats; about 2 minutes)

A real server (in memory, --max-concurrent-rpcs 0) on core 0; clients in separate processes on core 1.
Every ratio compares cells of one run. The watchers run on the client core beside the writer, so the
ingest rate with watchers also includes the client side of reading their updates: a pessimistic number.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from typing import Any

import grpc
from _common import CLIENT_CORE, pin, streamstats_server, write_section
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc

BEGIN, END = "<!-- stats-watch:begin -->", "<!-- stats-watch:end -->"
QUERY = pb.StatsQuery(quantiles=[0.5, 0.9, 0.99], k=10)
T = 30.0


def _pct(samples_ns: list[int], q: float) -> float:
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


async def _latencies(address: str, stream: str, rounds: int) -> dict[str, tuple[float, float]]:
    """p50/p99 µs of each call kind, interleaved round by round so noise hits them alike."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        calls = {
            "empty RPC (health Check)": lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=T),
            "FindMedian": lambda: stub.FindMedian(pb.FindMedianRequest(stream=stream), timeout=T),
            "GetStats (3 quantiles, k=10)": lambda: stub.GetStats(
                pb.GetStatsRequest(stream=stream, query=QUERY), timeout=T
            ),
        }
        samples: dict[str, list[int]] = {name: [] for name in calls}
        for round_ in range(rounds + 50):
            for name, call in calls.items():
                began = time.perf_counter_ns()
                await call()  # type: ignore[no-untyped-call]
                if round_ >= 50:  # warm-up
                    samples[name].append(time.perf_counter_ns() - began)
            if round_ % 10 == 0:  # a change, so GetStats pays its first-read-after-a-change costs too
                await stub.AddNum(pb.AddNumRequest(stream=stream, value=float(round_)), timeout=T)
        return {name: (_pct(s, 0.5), _pct(s, 0.99)) for name, s in samples.items()}


def latency_worker(address: str, stream: str, rounds: int, out: Any) -> None:
    pin(0, CLIENT_CORE)
    out.put(asyncio.run(_latencies(address, stream, rounds)))


async def _ingest(address: str, streams: list[str], seconds: float, inflight: int) -> float:
    values = [float(i % 997) for i in range(1000)]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        done = 0
        deadline = time.perf_counter() + seconds

        async def writer(task: int) -> None:
            nonlocal done
            i = task
            while time.perf_counter() < deadline:
                await stub.AddNums(
                    pb.AddNumsRequest(stream=streams[i % len(streams)], values=values), timeout=T
                )
                done += len(values)
                i += inflight

        began = time.perf_counter()
        await asyncio.gather(*(writer(t) for t in range(inflight)))
        return done / (time.perf_counter() - began)


def ingest_worker(address: str, streams: list[str], seconds: float, out: Any) -> None:
    pin(0, CLIENT_CORE)
    out.put(asyncio.run(_ingest(address, streams, seconds, 16)))


async def _watch(
    address: str, streams: list[str], count: int, interval: float, ready: Any, stop: Any, out: Any
) -> None:
    duration = pb.WatchRequest().min_interval
    duration.FromNanoseconds(int(interval * 1e9))
    channels = [grpc.aio.insecure_channel(address) for _ in range(8)]
    updates = 0
    try:
        calls = []
        for i in range(count):
            stub = pb_grpc.StreamStatsStub(channels[i % len(channels)])
            request = pb.WatchRequest(stream=streams[i % len(streams)], query=QUERY, min_interval=duration)
            calls.append(stub.Watch(request))
        for call in calls:  # every watch is open before the measurement starts
            await call.read()

        async def drain(call: Any) -> None:
            nonlocal updates
            while True:
                message = await call.read()
                if not isinstance(message, pb.WatchUpdate):  # grpc.aio.EOF
                    return
                updates += 1

        readers = [asyncio.create_task(drain(call)) for call in calls]
        ready.set()
        await asyncio.to_thread(stop.wait)  # a multiprocessing Event: wait for it off the loop
        for call in calls:
            call.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    finally:
        for channel in channels:
            await channel.close(None)
    out.put(updates)


def watch_worker(
    address: str, streams: list[str], count: int, interval: float, ready: Any, stop: Any, out: Any
) -> None:
    pin(0, CLIENT_CORE)
    asyncio.run(_watch(address, streams, count, interval, ready, stop, out))


def _fill(address: str, streams: list[str], size: int) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        for name in streams:
            stub.CreateStream(
                pb.CreateStreamRequest(name=name, config=pb.StreamConfig(window_size=size)), timeout=T
            )
            for start in range(0, size, 100_000):
                batch = [float((start + i) * 7919 % 100_003) for i in range(min(100_000, size - start))]
                stub.AddNums(pb.AddNumsRequest(stream=name, values=batch), timeout=T)


def ingest_with_watchers(
    ctx: Any, streams: list[str], watchers: int, interval: float, seconds: float
) -> tuple[float, int]:
    """values/s of AddNums(1000) x16 into ``streams`` with ``watchers`` open; and updates delivered."""
    with streamstats_server("--in-memory", "--max-concurrent-rpcs", "0") as server:
        _fill(server.address, streams, 100_000)
        out, ready, stop = ctx.Queue(), ctx.Event(), ctx.Event()
        watcher = None
        if watchers:
            watcher = ctx.Process(
                target=watch_worker, args=(server.address, streams, watchers, interval, ready, stop, out)
            )
            watcher.start()
            if not ready.wait(120):
                raise RuntimeError("the watchers did not all open")
        writer = ctx.Process(target=ingest_worker, args=(server.address, streams, seconds, out))
        writer.start()
        writer.join()
        rate: float = out.get()
        updates = 0
        if watcher is not None:
            stop.set()
            watcher.join(60)
            updates = out.get()
        return rate, updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and durations: proves the script works"
    )
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    sizes = [1_000, 100_000] if args.quick else [1_000, 100_000, 1_000_000]
    rounds, seconds = (200, 2.0) if args.quick else (2000, 10.0)

    latency_rows = []
    for size in sizes:
        with streamstats_server("--in-memory") as server:
            _fill(server.address, ["s"], size)
            out = ctx.Queue()
            worker = ctx.Process(target=latency_worker, args=(server.address, "s", rounds, out))
            worker.start()
            result = out.get()
            worker.join()
        latency_rows.append((size, result))
        print(size, result, flush=True)

    cases = [
        ("no watchers", ["w"], 0, 0.1),
        ("1,000 watchers on the stream, min_interval 0.1 s", ["w"], 1000, 0.1),
        ("1,000 watchers on the stream, min_interval 1 s", ["w"], 1000, 1.0),
        ("1,000 watchers over 100 streams, min_interval 0.1 s", [f"w{i}" for i in range(100)], 1000, 0.1),
    ]
    if args.quick:
        cases = [(label, streams, min(count, 50), interval) for label, streams, count, interval in cases[:2]]
    ingest_rows = []
    baseline_100 = None
    for label, streams, count, interval in cases:
        if len(streams) == 100 and baseline_100 is None:
            baseline_100, _ = ingest_with_watchers(ctx, streams, 0, interval, seconds)
        rate, updates = ingest_with_watchers(ctx, streams, count, interval, seconds)
        ingest_rows.append((label, len(streams), rate, updates))
        print(label, f"{rate:,.0f} values/s, {updates:,} updates", flush=True)

    base = ingest_rows[0][2]
    lines = [
        BEGIN,
        "## GetStats and Watch (`bench/stats_watch.py`, `make bench-stats`)",
        "",
        f"Run {time.strftime('%Y-%m-%d')}{' (--quick)' if args.quick else ''}: server in memory on core 0, clients on core 1.",
        "",
        "### GetStats latency (µs, sequential calls, a change every 10 rounds)",
        "",
        "| live values | "
        + " | ".join(f"{name} p50 / p99" for name in latency_rows[0][1])
        + " | GetStats / FindMedian (p50) |",
        "|---|" + "---|" * (len(latency_rows[0][1]) + 1),
    ]
    ratios = []
    for size, result in latency_rows:
        ratio = result["GetStats (3 quantiles, k=10)"][0] / result["FindMedian"][0]
        ratios.append(ratio)
        cells = " | ".join(f"{p50:,.0f} / {p99:,.0f}" for p50, p99 in result.values())
        lines.append(f"| {size:,} | {cells} | {ratio:.2f}x |")
    met = max(ratios) <= 1.2
    lines += [
        "",
        f"Goal: GetStats p50 within 1.2x of FindMedian's. {'Met' if met else 'Missed'}: worst {max(ratios):.2f}x.",
        "",
        "### Ingest with watchers: AddNums(1000) at 16 in flight, windows of 100,000",
        "",
        "| case | streams | values/s | vs no watchers | updates delivered |",
        "|---|---|---|---|---|",
    ]
    for label, nstreams, rate, updates in ingest_rows:
        reference = baseline_100 if nstreams == 100 and baseline_100 else base
        lines.append(f"| {label} | {nstreams} | {rate:,.0f} | {rate / reference:.2f}x | {updates:,} |")
    worst = min(
        rate / (baseline_100 if n == 100 and baseline_100 else base) for _, n, rate, _ in ingest_rows[1:2]
    )
    lines += [
        "",
        f"Goal: 1,000 watchers at a 0.1 s interval cost less than 20% of ingest. "
        f"{'Met' if worst >= 0.8 else 'Missed'}: {worst:.2f}x of the rate without watchers"
        + (f" (100-stream baseline {baseline_100:,.0f} values/s)." if baseline_100 else "."),
        "",
        END,
    ]
    write_section(BEGIN, END, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
