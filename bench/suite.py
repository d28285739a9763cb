"""The benchmark suite: latency, ingest, growth, memory, and Redis side by side.

Run:  .venv/bin/python bench/suite.py            (or `make bench`; about 5 minutes)
      .venv/bin/python bench/suite.py --quick    (small sizes, a smoke run; does not write the doc)

It rewrites the suite's section of docs/BENCHMARKS.md (between its markers) and docs/bench_growth.png.
Everything is measured in one run, as ratios where it matters: these machines are shared and noisy.

How: the server is a real `streamstats-server --in-memory` subprocess pinned to core 0. Load comes
from separate client processes (this script re-run as `worker`), pinned to core 1, each an asyncio
gRPC client keeping N calls in flight and recording perf_counter_ns per call. Redis (when
`redis-server` is installed; `apt-get install redis-server`) runs on core 0 the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from _common import CLIENT_CORE, SERVER_CORE, RunningServer, pin, streamstats_server, write_section
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.structures import SlidingWindow

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "bench_growth.png"
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile in microseconds."""
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, max(0, round(q / 100 * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[index] / 1000


# --- the load generator (runs in worker processes) ---------------------------------------------------


Op = Callable[[], Awaitable[int]]  # performs one call, returns how many values it carried


def grpc_ops(address: str, channel: grpc.aio.Channel, task: int) -> Callable[[str], Op]:
    stub = pb_grpc.StreamStatsStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    rng = random.Random(task)

    def build(spec: str) -> Op:
        kind, *args = spec.split(":")
        stream = args[0].replace("{task}", str(task)) if args else ""
        if kind == "check":
            request = health_pb2.HealthCheckRequest()

            async def check() -> int:
                await health.Check(request, timeout=30)
                return 0

            return check
        if kind == "median":
            median_request = pb.FindMedianRequest(stream=stream)

            async def median() -> int:
                await stub.FindMedian(median_request, timeout=30)
                return 0

            return median
        if kind in ("topk", "bottomk"):
            k = int(args[1])
            top_request = pb.TopKRequest(stream=stream, k=k)
            bottom_request = pb.BottomKRequest(stream=stream, k=k)

            async def k_query() -> int:
                if kind == "topk":
                    await stub.TopK(top_request, timeout=30)
                else:
                    await stub.BottomK(bottom_request, timeout=30)
                return 0

            return k_query
        if kind == "stats":  # stats:STREAM:K:Q1,Q2,... -> GetStats with those quantiles and k
            query = pb.StatsQuery(k=int(args[1]), quantiles=[float(q) for q in args[2].split(",")])
            stats_request = pb.GetStatsRequest(stream=stream, query=query)

            async def stats() -> int:
                await stub.GetStats(stats_request, timeout=30)
                return 0

            return stats
        if kind == "addnum":

            async def add_one() -> int:
                await stub.AddNum(pb.AddNumRequest(stream=stream, value=rng.random()), timeout=30)
                return 1

            return add_one
        if kind == "addnums":
            batch = int(args[1])
            add_request = pb.AddNumsRequest(stream=stream, values=[rng.random() for _ in range(batch)])

            async def add_many() -> int:
                await stub.AddNums(add_request, timeout=30)
                return batch

            return add_many
        if kind == "streamnums":
            batch, messages = int(args[1]), int(args[2])
            message = pb.AddNumsRequest(stream=stream, values=[rng.random() for _ in range(batch)])

            async def stream_many() -> int:
                response = await stub.StreamNums(iter([message] * messages), timeout=60)
                return int(response.values_added)

            return stream_many
        raise ValueError(spec)

    return build


def redis_ops(address: str, task: int) -> Callable[[str], Op]:
    import redis.asyncio as aredis

    host, port = address.rsplit(":", 1)
    client = aredis.Redis(host=host, port=int(port))
    rng = random.Random(task)
    sequence = iter(range(task * 10**12, (task + 1) * 10**12))

    def build(spec: str) -> Op:
        kind, key, *args = spec.split(":")
        key = key.replace("{task}", str(task))
        if kind == "zadd":
            batch = int(args[0])

            async def zadd() -> int:
                pipe = client.pipeline(transaction=False)
                # A sequence number as member (duplicates allowed), the value as score.
                pipe.zadd(key, {str(next(sequence)): rng.random() for _ in range(batch)})
                await pipe.execute()
                return batch

            return zadd
        if kind == "zmedian":

            async def zmedian() -> int:
                count = await client.zcard(key)
                middle = await client.zrange(key, (count - 1) // 2, count // 2, withscores=True)
                return len(middle) * 0

            return zmedian
        if kind == "ztop":
            k = int(args[0])

            async def ztop() -> int:
                await client.zrange(key, 0, k - 1, desc=True, withscores=True)
                return 0

            return ztop
        raise ValueError(spec)

    return build


async def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Latency: ops in turn, one call at a time. Throughput: ``inflight`` tasks looping one op."""
    address: str = spec["address"]
    backend: str = spec.get("backend", "grpc")
    channel = grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    builders = [
        (grpc_ops(address, channel, t) if backend == "grpc" else redis_ops(address, t))
        for t in range(spec.get("task_base", 0), spec.get("task_base", 0) + max(1, spec.get("inflight", 1)))
    ]
    try:
        if spec["kind"] == "latency":
            ops = [(name, builders[0](name)) for name in spec["ops"]]
            for _, op in ops:  # warm up connection and paths
                for _ in range(50):
                    await op()
            samples: dict[str, list[int]] = {name: [] for name, _ in ops}
            for _ in range(spec["rounds"]):
                for name, op in ops:
                    start = time.perf_counter_ns()
                    await op()
                    samples[name].append(time.perf_counter_ns() - start)
            result: dict[str, Any] = {}
            for name, values in samples.items():
                values.sort()
                result[name] = {
                    "p50": percentile(values, 50),
                    "p99": percentile(values, 99),
                    "n": len(values),
                }
            return result
        op_spec: str = spec["op"]
        ops_per_task = [build(op_spec) for build in builders]
        for op in ops_per_task:
            await op()
        deadline = time.perf_counter() + spec["seconds"]
        calls = values_done = 0

        async def loop(op: Op) -> None:
            nonlocal calls, values_done
            while time.perf_counter() < deadline:
                carried = await op()  # not `values_done += await op()`: that reads the total before awaiting
                values_done += carried
                calls += 1

        began = time.perf_counter()
        await asyncio.gather(*(loop(op) for op in ops_per_task))
        elapsed = time.perf_counter() - began
        return {"calls": calls, "values": values_done, "elapsed": round(elapsed, 6)}
    finally:
        await channel.close(None)


def worker_main(raw: str) -> None:
    pin(0, CLIENT_CORE)
    print(json.dumps(asyncio.run(run_worker(json.loads(raw)))))


def spawn_workers(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "worker", json.dumps(s)], stdout=subprocess.PIPE, text=True
        )
        for s in specs
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed: {out}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def throughput(
    address: str, op: str, inflight: int, seconds: float, processes: int, backend: str = "grpc"
) -> float:
    """Calls/s or values/s (whichever the op counts) with ``inflight`` calls spread over processes."""
    per = [inflight // processes + (1 if i < inflight % processes else 0) for i in range(processes)]
    specs = [
        {
            "address": address,
            "backend": backend,
            "kind": "throughput",
            "op": op,
            "inflight": n,
            "seconds": seconds,
            "task_base": sum(per[:i]),
        }
        for i, n in enumerate(per)
        if n
    ]
    results = spawn_workers(specs)
    elapsed = max(float(r["elapsed"]) for r in results)
    counted = sum(int(r["values"]) for r in results) or sum(int(r["calls"]) for r in results)
    return counted / elapsed


# --- the server and Redis ------------------------------------------------------------------------------


def in_memory_server() -> contextlib.AbstractContextManager[RunningServer]:
    return streamstats_server("--in-memory", "--max-k", "10000")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pin(proc.pid, SERVER_CORE)
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def fill(address: str, stream: str, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        left = count
        while left:
            n = min(left, 100_000)
            stub.AddNums(
                pb.AddNumsRequest(stream=stream, values=[rng.random() for _ in range(n)]), timeout=120
            )
            left -= n


def create_windowed(address: str, names: list[str], window: int) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        for name in names:
            stub.CreateStream(
                pb.CreateStreamRequest(name=name, config=pb.StreamConfig(window_size=window)), timeout=30
            )


# --- the sections ----------------------------------------------------------------------------------------


@dataclass
class Results:
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    qps: dict[str, float] = field(default_factory=dict)
    ingest: dict[tuple[str, int], float] = field(default_factory=dict)
    growth: list[dict[str, Any]] = field(default_factory=list)
    memory: list[tuple[int, float]] = field(default_factory=list)
    redis: dict[str, Any] | None = None
    profile: str = ""
    profile_kind: str = ""
    ingest_profile: str = ""
    notes: list[str] = field(default_factory=list)


def measure_latency_and_qps(res: Results, size: int, rounds: int, seconds: float) -> None:
    with in_memory_server() as running:
        address = running.address
        fill(address, "big", size)
        ops = ["check", "median:big", "topk:big:10", "bottomk:big:10", STATS_OP]
        (res.latency,) = spawn_workers(
            [{"address": address, "kind": "latency", "ops": ops, "rounds": rounds}]
        )
        for op in ("check", "median:big"):
            res.qps[op] = throughput(address, op, inflight=100, seconds=seconds, processes=2)
            print(f"  100 in flight {op}: {res.qps[op]:,.0f} calls/s", flush=True)


# GetStats as a dashboard would ask: three quantiles and the 10 extremes each side.
STATS_OP = "stats:big:10:0.5,0.9,0.99"
STATS_GOAL = 1.2  # GetStats p50 at most this times FindMedian's

INGEST_OPS = [
    ("AddNum", "addnum:s{task}"),
    ("AddNums(10)", "addnums:s{task}:10"),
    ("AddNums(100)", "addnums:s{task}:100"),
    ("AddNums(1000)", "addnums:s{task}:1000"),
    ("AddNums(10000)", "addnums:s{task}:10000"),
    ("StreamNums(100 x 1000)", "streamnums:s{task}:1000:100"),
]


def measure_ingest(res: Results, seconds: float, window: int) -> None:
    for label, op in INGEST_OPS:
        for concurrency in (1, 16):
            with in_memory_server() as running:
                address = running.address
                # Count windows keep memory flat over the run, as a long-lived deployment would.
                create_windowed(address, [f"s{t}" for t in range(concurrency)], window)
                rate = throughput(
                    address, op, inflight=concurrency, seconds=seconds, processes=min(2, concurrency)
                )
            res.ingest[(label, concurrency)] = rate
            print(f"  {label:>24} x{concurrency:<2}: {rate:>12,.0f} values/s", flush=True)


def timed_ns(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(repeat):
        fn()
    return (time.perf_counter_ns() - start) / repeat


def growth_window(kind: str, n: int, rng: random.Random) -> SlidingWindow:
    """A window of ``kind`` holding n random values, in the steady state the next single add sees."""
    base = [rng.random() for _ in range(n)]
    if kind == "time window":  # n values 1 ns apart with a window of n ns: each add expires one
        return SlidingWindow.from_items(((v, i + 1) for i, v in enumerate(base)), max_age_ns=n)
    window = SlidingWindow(max_count=n if kind == "count window" else 0)
    window.add_many(base, n)
    return window


def cost_at(window: SlidingWindow, n: int, rng: random.Random) -> dict[str, float]:
    now = n
    fresh = iter([rng.random() for _ in range(20_000)])

    def add_one() -> None:
        nonlocal now
        now += 1
        window.add_many([next(fresh)], now)

    return {
        "add": timed_ns(add_one, 20_000),
        "median": timed_ns(window.median, 20_000),
        "top_k(10)": timed_ns(lambda: window.top_k(10), 20_000),
        "bottom_k(10)": timed_ns(lambda: window.bottom_k(10), 20_000),
    }


def measure_growth(res: Results, sizes: list[int]) -> None:
    """In-process cost of one add and of each query at n live values, for three kinds of window."""
    rng = random.Random(7)
    for n in sizes:
        for kind in ("unbounded", "count window", "time window"):
            costs = cost_at(growth_window(kind, n, rng), n, rng)
            res.growth.append({"n": n, "kind": kind, **costs})
            print(
                f"  n={n:>10,} {kind:>12}: add {costs['add']:,.0f} ns, median {costs['median']:,.0f} ns, "
                f"top_k(10) {costs['top_k(10)']:,.0f} ns",
                flush=True,
            )


def _profile(run: Callable[[], None]) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(line.replace(str(ROOT) + "/", "") for line in lines[start : start + 9])


def profile_batches(res: Results, window_size: int) -> None:
    """Where ingest time goes in the server's own work: batches of 1,000 into a full count window."""
    rng = random.Random(5)
    window = SlidingWindow(max_count=window_size)
    window.add_many([rng.random() for _ in range(window_size)], 1)
    batches = [[rng.random() for _ in range(1000)] for _ in range(300)]

    def run() -> None:
        for i, batch in enumerate(batches):
            window.add_many(batch, 2 + i)

    res.ingest_profile = _profile(run)


def profile_adds(res: Results, n: int) -> None:
    """Where a single add's time goes at n live values, on the window kind whose add grew most."""
    by_kind = {(r["n"], r["kind"]): r["add"] for r in res.growth}
    smallest = min(r["n"] for r in res.growth)
    kind = max(
        ("unbounded", "count window", "time window"), key=lambda k: by_kind[(n, k)] / by_kind[(smallest, k)]
    )
    rng = random.Random(3)
    window = growth_window(kind, n, rng)
    fresh = [rng.random() for _ in range(100_000)]

    def run() -> None:
        for i, value in enumerate(fresh):
            window.add_many([value], n + 1 + i)

    res.profile = _profile(run)
    res.profile_kind = kind


def measure_memory(res: Results, sizes: list[int]) -> None:
    with in_memory_server() as running:
        address, pid = running.address, running.pid
        time.sleep(0.5)
        before = rss_bytes(pid)
        loaded = 0
        for n in sizes:
            fill(address, "mem", n - loaded, seed=n)
            loaded = n
            time.sleep(0.5)
            per_value = (rss_bytes(pid) - before) / n
            res.memory.append((n, per_value))
            print(f"  memory at {n:,} values: {per_value:.1f} bytes/value", flush=True)


def measure_redis(res: Results, size: int, rounds: int, seconds: float) -> None:
    with redis_server() as address:
        if address is None:
            res.notes.append(
                "Redis: `redis-server` is not installed (`apt-get install redis-server`); table skipped."
            )
            return
        import redis  # only now: without redis-server the bench extra is not needed (--quick smoke runs)

        host, port = address.rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port))
        before = int(client.info("memory")["used_memory"])
        rng = random.Random(1)
        sequence = 0
        for _ in range(size // 10_000):
            pipe = client.pipeline(transaction=False)
            pipe.zadd("big", {str(sequence + i): rng.random() for i in range(10_000)})
            sequence += 10_000
            pipe.execute()
        per_element = (int(client.info("memory")["used_memory"]) - before) / size
        (latency,) = spawn_workers(
            [
                {
                    "address": address,
                    "backend": "redis",
                    "kind": "latency",
                    "ops": ["zmedian:big", "ztop:big:10"],
                    "rounds": rounds,
                }
            ]
        )
        ingest = {
            c: throughput(
                address,
                "zadd:z{task}:1000",
                inflight=c,
                seconds=seconds,
                processes=min(2, c),
                backend="redis",
            )
            for c in (1, 16)
        }
        res.redis = {
            "latency": latency,
            "ingest": ingest,
            "bytes_per_element": per_element,
            "version": client.info("server")["redis_version"],
        }
        print(f"  redis: {res.redis}", flush=True)


# --- the report --------------------------------------------------------------------------------------------


def plot(res: Results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind in ("unbounded", "count window", "time window"):
        rows = [r for r in res.growth if r["kind"] == kind]
        axes[0].plot([r["n"] for r in rows], [r["add"] for r in rows], marker="o", label=f"add, {kind}")
    rows = [r for r in res.growth if r["kind"] == "count window"]
    for query in ("median", "top_k(10)", "bottom_k(10)"):
        axes[1].plot([r["n"] for r in rows], [r[query] for r in rows], marker="o", label=query)
    for axis, title in zip(
        axes, ("add (ns per value)", "queries on a count window (ns per call)"), strict=True
    ):
        axis.set_xscale("log")
        axis.set_xlabel("live values")
        axis.set_title(title)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(res: Results, args: argparse.Namespace) -> str:
    lat = res.latency
    check = lat["check"]
    lines = [
        BEGIN,
        "## The suite: latency, ingest, growth, memory, Redis",
        "",
        f"`bench/suite.py`, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}. Server (`--in-memory`) on core 0, "
        "client processes (asyncio gRPC, perf_counter_ns per call) on core 1.",
        "",
        "### Goals",
        "",
        "| goal | measured | |",
        "|---|---|---|",
    ]
    worst_p50 = max(lat[q]["p50"] / check["p50"] for q in ("median:big", "topk:big:10", "bottomk:big:10"))
    worst_p99 = max(lat[q]["p99"] / check["p99"] for q in ("median:big", "topk:big:10", "bottomk:big:10"))
    qps_ratio = res.qps["median:big"] / res.qps["check"]
    lines.append(
        f"| each query's p50 within 1.10x of the empty RPC's | worst {worst_p50:.2f}x | {verdict(worst_p50 <= 1.10)} |"
    )
    lines.append(
        f"| each query's p99 within 1.5x of the empty RPC's | worst {worst_p99:.2f}x | {verdict(worst_p99 <= 1.5)} |"
    )
    lines.append(
        f"| FindMedian calls/s at 100 in flight >= 0.8x the empty RPC's | {qps_ratio:.2f}x | {verdict(qps_ratio >= 0.8)} |"
    )
    stats_ratio = lat[STATS_OP]["p50"] / lat["median:big"]["p50"]
    lines.append(
        f"| GetStats (3 quantiles, k=10) p50 within {STATS_GOAL}x of FindMedian's | {stats_ratio:.2f}x | {verdict(stats_ratio <= STATS_GOAL)} |"
    )
    if res.redis:
        ours = res.ingest[("AddNums(1000)", 16)]
        theirs = res.redis["ingest"][16]
        lines.append(
            f"| AddNums(1000) ingest >= 6x Redis ZADD pipelined by 1,000 (16 in flight) | {ours / theirs:.1f}x | "
            f"{verdict(ours / theirs >= 6)} |"
        )
    else:
        lines.append("| AddNums(1000) ingest >= 6x Redis ZADD | Redis not installed | not measured |")
    worst_memory = max(b for _, b in res.memory)
    lines.append(
        f"| at most 48 bytes per stored value | {worst_memory:.1f} | {verdict(worst_memory <= 48)} |"
    )
    growth = {(r["n"], r["kind"]): r for r in res.growth}
    small, large = min(args.sizes), (1_000_000 if 1_000_000 in args.sizes else max(args.sizes))
    add_ratio = max(
        growth[(large, k)]["add"] / growth[(small, k)]["add"]
        for k in ("unbounded", "count window", "time window")
    )
    lines.append(
        f"| add cost at {large:,} live values at most 1.5x the cost at {small:,} | worst {add_ratio:.2f}x | {verdict(add_ratio <= 1.5)} |"
    )
    missed_why = []
    if res.redis and res.ingest[("AddNums(1000)", 16)] < 6 * res.redis["ingest"][16]:
        missed_why.append(
            "Ingest vs Redis: every value costs ~1-2.6 us of pure-Python work in the structures (insert into a "
            "chunked sorted array, plus evicting the oldest from a full count window: table 3 and the profile "
            "below), and the server applies it on one core, so it tops out near 1 M values/s; Redis's C ZADD "
            "pipelined from 16 clients reaches a third to half of that. 6x would need ~0.3 us per value, i.e. "
            "a compiled structure (or vectorised bulk merges); the data layout (raw doubles in chunks) is ready for it."
        )
    if add_ratio > 1.5:
        missed_why.append(
            "Add cost growth: the work per add is O(log n) by design, but at 1e6 live values each add touches a "
            "chunk and an eviction in a different, cold part of 16 MB of arrays (cache misses), and a time window "
            "also walks its run FIFO; the profile below shows the time spread over the insert/remove/bookkeeping "
            "calls rather than one hot spot."
        )
    if missed_why:
        lines += ["", "Why the missed goals are missed:", "", *(f"- {why}" for why in missed_why)]
    if missed_why and res.ingest_profile and res.redis:
        lines += [
            "",
            f"Where the server's own ingest work goes: 300 batches of 1,000 into a full count window of "
            f"{args.window:,} (cProfile, in-process, by own time):",
            "",
            "```",
            res.ingest_profile,
            "```",
        ]
    lines += [
        "",
        f"### 1. Query latency on a stream of {args.latency_size:,} values ({args.rounds:,} calls each, one at a time)",
        "",
        "| call | p50 us | p99 us | p50 / empty | p99 / empty |",
        "|---|---|---|---|---|",
    ]
    for label, key in (
        ("empty RPC (grpc.health.v1 Check)", "check"),
        ("FindMedian", "median:big"),
        ("TopK(10)", "topk:big:10"),
        ("BottomK(10)", "bottomk:big:10"),
        ("GetStats(quantiles 0.5, 0.9, 0.99; k=10)", STATS_OP),
    ):
        row = lat[key]
        lines.append(
            f"| {label} | {row['p50']:.0f} | {row['p99']:.0f} | {row['p50'] / check['p50']:.2f} | "
            f"{row['p99'] / check['p99']:.2f} |"
        )
    lines += [
        "",
        f"GetStats reads count, min, max, mean, stddev, median, three quantiles and the 10 largest and "
        f"smallest in one call under one lock: its p50 is {stats_ratio:.2f}x FindMedian's, so a dashboard "
        f"asking for all of it pays {lat[STATS_OP]['p50'] - lat['median:big']['p50']:.0f} us more than for the "
        f"median alone, where FindMedian, TopK and BottomK one after another take "
        f"{sum(lat[q]['p50'] for q in ('median:big', 'topk:big:10', 'bottomk:big:10')):,.0f} us (p50s added) "
        "and are not one instant. `bench/stats_watch.py` measures GetStats at other sizes.",
        "",
        f"At 100 calls in flight (2 client processes): empty RPC {res.qps['check']:,.0f} calls/s, FindMedian "
        f"{res.qps['median:big']:,.0f} calls/s ({qps_ratio:.2f}x).",
        "",
        f"### 2. Ingest (values/s; each client task writes its own stream, a count window of {args.window:,})",
        "",
        "| call | 1 in flight | 16 in flight |",
        "|---|---|---|",
    ]
    for label, _ in INGEST_OPS:
        lines.append(f"| {label} | {res.ingest[(label, 1)]:,.0f} | {res.ingest[(label, 16)]:,.0f} |")
    lines += [
        "",
        "### 3. Growth: in-process cost at n live values (`SlidingWindow`, what each stream holds)",
        "",
        "![cost against size](bench_growth.png)",
        "",
        "| live values | window | add ns | median ns | top_k(10) ns | bottom_k(10) ns |",
        "|---|---|---|---|---|---|",
    ]
    for r in res.growth:
        lines.append(
            f"| {r['n']:,} | {r['kind']} | {r['add']:,.0f} | {r['median']:,.0f} | {r['top_k(10)']:,.0f} | "
            f"{r['bottom_k(10)']:,.0f} |"
        )
    lines += [
        "",
        "Single adds, one value per call; a time window holds n values arriving 1 ns apart, so every add also "
        "expires one. Batches cost less per value (`bench/structures_cost.py`).",
    ]
    if add_ratio > 1.5 and res.profile:
        lines += [
            "",
            f"Where an add's time goes on a full {res.profile_kind} of {large:,} (cProfile, 100,000 adds, by own time):",
            "",
            "```",
            res.profile,
            "```",
        ]
    lines += [
        "",
        "### 4. Memory (server resident memory growth / values stored, one stream, batches of 100,000)",
        "",
        "| values | bytes per value |",
        "|---|---|",
    ]
    for n, b in res.memory:
        lines.append(f"| {n:,} | {b:.1f} |")
    if res.redis:
        r = res.redis
        ours_median, ours_top = lat["median:big"], lat["topk:big:10"]
        lines += [
            "",
            f"### 5. Side by side with Redis {r['version']} sorted sets (same machine, same run)",
            "",
            "Redis members are sequence numbers (so duplicates are kept) and scores the values.",
            "",
            "| | streamstats | Redis | streamstats / Redis |",
            "|---|---|---|---|",
        ]
        for c in (1, 16):
            ours = res.ingest[("AddNums(1000)", c)]
            lines.append(
                f"| ingest, batches of 1,000, {c} in flight (values/s) | {ours:,.0f} (AddNums) | "
                f"{r['ingest'][c]:,.0f} (ZADD, pipelined) | {ours / r['ingest'][c]:.1f}x |"
            )
        zm, zt = r["latency"]["zmedian:big"], r["latency"]["ztop:big:10"]
        lines.append(
            f"| median of {args.latency_size:,}, p50 / p99 us | {ours_median['p50']:.0f} / {ours_median['p99']:.0f} "
            f"(FindMedian) | {zm['p50']:.0f} / {zm['p99']:.0f} (ZCARD + ZRANGE) | "
            f"{ours_median['p50'] / zm['p50']:.2f}x |"
        )
        lines.append(
            f"| top 10, p50 / p99 us | {ours_top['p50']:.0f} / {ours_top['p99']:.0f} (TopK) | "
            f"{zt['p50']:.0f} / {zt['p99']:.0f} (ZRANGE REV) | {ours_top['p50'] / zt['p50']:.2f}x |"
        )
        ours_mem = res.memory[0][1]
        lines.append(
            f"| memory per value (bytes) | {ours_mem:.1f} | {r['bytes_per_element']:.1f} | "
            f"{ours_mem / r['bytes_per_element']:.2f}x |"
        )
        lines += [
            "",
            "Redis answers a query in C with no RPC framework around it, so its latencies are lower; what it "
            "lacks is windows, exact medians in one call, and durability that survives a power cut at "
            "this ingest rate.",
        ]
    lines += [*(f"\n{note}" for note in res.notes), END]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        worker_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and short runs; prints, writes nothing"
    )
    parser.add_argument("--with-1e7", action="store_true", help="also measure growth at 10 million values")
    args = parser.parse_args()
    quick = args.quick
    args.latency_size = 100_000 if quick else 1_000_000
    args.rounds = 300 if quick else 3000
    args.seconds = 1.0 if quick else 3.0
    args.window = 100_000
    args.sizes = (
        [1_000, 10_000]
        if quick
        else [1_000, 10_000, 100_000, 1_000_000] + ([10_000_000] if args.with_1e7 else [])
    )
    memory_sizes = [200_000] if quick else [1_000_000, 10_000_000]
    pin(0, CLIENT_CORE)
    res = Results()
    print("1. latency and calls/s", flush=True)
    measure_latency_and_qps(res, args.latency_size, args.rounds, args.seconds)
    print("2. ingest", flush=True)
    measure_ingest(res, args.seconds, args.window)
    print("3. growth", flush=True)
    measure_growth(res, args.sizes)
    profile_adds(res, max(args.sizes))
    profile_batches(res, args.window)
    print("4. memory", flush=True)
    measure_memory(res, memory_sizes)
    print("5. redis", flush=True)
    measure_redis(res, args.latency_size, args.rounds, args.seconds)
    section = render(res, args)
    print(section)
    if not quick:
        plot(res)
        write_section(BEGIN, END, section)


if __name__ == "__main__":
    main()
