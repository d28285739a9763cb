"""GetStats latency, and what 1,000 watchers cost ingest (issue 6). Rewrites its section of
docs/BENCHMARKS.md.

Run:  .venv/bin/python bench/stats_watch.py            (make bench-stats; about 2 minutes)
      .venv/bin/python bench/stats_watch.py --quick    (tiny sizes and counts, a smoke run; writes nothing)

A real server (in memory, --max-concurrent-rpcs 0: 1,000 watchers and the writer are more calls than the
default limit of 1,000) on core 0; clients in separate processes on core 1. Every ratio compares cells of
one run. The watchers (several processes, each on its own connection) open every Watch and read its first
update before the writer starts, and read continuously while it runs; their processes share the client
core with the writer, which needs a small part of it (the server core is the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from _common import CLIENT_CORE, pin, streamstats_server, write_section
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc

BEGIN, END = "<!-- stats-watch:begin -->", "<!-- stats-watch:end -->"
QUERY = pb.StatsQuery(quantiles=[0.5, 0.9, 0.99], k=10)
GETSTATS = "GetStats (3 quantiles, k=10)"
T = 30.0
WORKER_TIMEOUT_S = 300.0  # a client process that has not answered by then has failed
WATCH_PROCESSES = 4
WINDOW = 100_000  # the ingest streams' count window: memory stays flat over the run
STATS_GOAL = 1.2  # GetStats p50 at most this times FindMedian's
WATCH_GOAL = 0.8  # ingest with 1,000 watchers at 0.1 s at least this times the rate without


def _pct(samples_ns: list[int], q: float) -> float:
    """Microseconds; NaN without samples."""
    if not samples_ns:
        return float("nan")
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
            GETSTATS: lambda: stub.GetStats(pb.GetStatsRequest(stream=stream, query=QUERY), timeout=T),
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


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _core_ticks(core: int) -> tuple[int, int]:
    """(all, idle) clock ticks of one core so far."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(t) for t in line.split()[1:]]
            return sum(ticks), ticks[3] + ticks[4]  # idle + iowait
    raise RuntimeError(f"no cpu{core} in /proc/stat")


async def _ingest(address: str, server_pid: int, streams: list[str], seconds: float) -> dict[str, float]:
    """16 writers in flight; the values written, and over the same span the server's CPU seconds and
    how busy the client core was (everything on it: the watchers and this writer)."""
    values = [float(i % 997) for i in range(1000)]
    inflight = 16
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        await channel.channel_ready()
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

        cpu, ticks = _process_cpu_s(server_pid), _core_ticks(CLIENT_CORE)
        began = time.perf_counter()
        await asyncio.gather(*(writer(t) for t in range(inflight)))
        elapsed = time.perf_counter() - began
        all_ticks, idle_ticks = (
            now - then for now, then in zip(_core_ticks(CLIENT_CORE), ticks, strict=True)
        )
        return {
            "values": done,
            "elapsed": elapsed,
            "server_cpu_s": _process_cpu_s(server_pid) - cpu,
            "client_busy": 1 - idle_ticks / all_ticks if all_ticks else float("nan"),
        }


def ingest_worker(address: str, server_pid: int, streams: list[str], seconds: float, out: Any) -> None:
    pin(0, CLIENT_CORE)
    out.put(asyncio.run(_ingest(address, server_pid, streams, seconds)))


async def _watch(
    address: str, streams: list[str], first: int, count: int, interval: float, ready: Any, stop: Any, out: Any
) -> None:
    """Watches ``first`` .. ``first + count - 1`` (watch i on ``streams[i % len]``): open them all, read
    every first update, set ``ready``, then read until ``stop``; put (updates, snapshot ages in ns)."""
    duration = pb.WatchRequest().min_interval
    duration.FromNanoseconds(int(interval * 1e9))
    # Its own connection (channels with the same arguments would share one): several processes then
    # mean several connections, as separate dashboards would be.
    channel = grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    stub = pb_grpc.StreamStatsStub(channel)
    ages_ns: list[int] = []
    try:
        calls = [
            stub.Watch(pb.WatchRequest(stream=streams[i % len(streams)], query=QUERY, min_interval=duration))
            for i in range(first, first + count)
        ]
        for call in calls:  # every watch is open before the measurement starts
            await call.read()

        async def drain(call: Any) -> None:
            while True:
                message = await call.read()
                if not isinstance(message, pb.WatchUpdate):  # grpc.aio.EOF
                    return
                ages_ns.append(time.time_ns() - message.stats.time.ToNanoseconds())

        readers = [asyncio.create_task(drain(call)) for call in calls]
        ready.set()
        await asyncio.to_thread(stop.wait)  # a multiprocessing Event: wait for it off the loop
        for call in calls:
            call.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    finally:
        await channel.close(None)
    out.put((len(ages_ns), ages_ns))


def watch_worker(
    address: str, streams: list[str], first: int, count: int, interval: float, ready: Any, stop: Any, out: Any
) -> None:
    pin(0, CLIENT_CORE)
    asyncio.run(_watch(address, streams, first, count, interval, ready, stop, out))


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


@dataclass(frozen=True)
class IngestCell:
    label: str
    streams: int
    watchers: int
    interval: float
    values: int  # written by the writer
    elapsed: float  # seconds it wrote for
    server_cpu_s: float  # the server's CPU seconds meanwhile
    client_busy: float  # fraction of the client core busy meanwhile
    updates: int  # updates the watchers received while it wrote
    ages_ns: list[int]  # each update's age on arrival: arrival minus its stats.time

    @property
    def rate(self) -> float:
        return self.values / self.elapsed

    def server_us_per_update(self, baseline: IngestCell) -> float:
        """Server CPU the watchers cost per update: this cell's CPU beyond what its values cost at the
        baseline's CPU per value, over the updates sent. Does not assume a saturated server."""
        if not self.updates:
            return float("nan")
        per_value = baseline.server_cpu_s / baseline.values
        return (self.server_cpu_s - self.values * per_value) / self.updates * 1e6


def ingest_with_watchers(
    ctx: Any, label: str, streams: list[str], watchers: int, interval: float, seconds: float
) -> IngestCell:
    """AddNums(1000) x16 into ``streams`` (round robin) with ``watchers`` open on them."""
    with streamstats_server("--in-memory", "--max-concurrent-rpcs", "0") as server:
        _fill(server.address, streams, WINDOW)
        stop = ctx.Event()
        watch_out, write_out = ctx.Queue(), ctx.Queue()
        processes = min(WATCH_PROCESSES, watchers)
        per = [watchers // processes + (1 if i < watchers % processes else 0) for i in range(processes)]
        watching = []
        for i, count in enumerate(per):
            ready = ctx.Event()
            process = ctx.Process(
                target=watch_worker,
                args=(server.address, streams, sum(per[:i]), count, interval, ready, stop, watch_out),
            )
            process.start()
            watching.append((process, ready))
        for _, ready in watching:
            if not ready.wait(WORKER_TIMEOUT_S):
                raise RuntimeError("the watchers did not all open")
        writer = ctx.Process(
            target=ingest_worker, args=(server.address, server.pid, streams, seconds, write_out)
        )
        writer.start()
        wrote: dict[str, float] = write_out.get(timeout=WORKER_TIMEOUT_S)
        writer.join()
        stop.set()
        updates, ages_ns = 0, []
        for _ in watching:
            n, ages = watch_out.get(timeout=WORKER_TIMEOUT_S)
            updates += n
            ages_ns += ages
        for process, _ in watching:
            process.join(60)
        return IngestCell(
            label,
            len(streams),
            watchers,
            interval,
            int(wrote["values"]),
            wrote["elapsed"],
            wrote["server_cpu_s"],
            wrote["client_busy"],
            updates,
            ages_ns,
        )


def render(
    latency_rows: list[tuple[int, dict[str, tuple[float, float]]]],
    cells: list[IngestCell],
    seconds: float,
    quick: bool,
) -> str:
    baselines = {cell.streams: cell for cell in cells if not cell.watchers}
    watchers = max(cell.watchers for cell in cells)
    lines = [
        BEGIN,
        "## GetStats and Watch (`bench/stats_watch.py`, `make bench-stats`)",
        "",
        f"`bench/stats_watch.py`{' --quick' if quick else ''}, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}. Server (`--in-memory`, "
        "`--max-concurrent-rpcs 0`) on core 0, client processes (asyncio gRPC) on core 1.",
        "",
        "### GetStats latency (µs, one call at a time, interleaved; a value added every 10 rounds)",
        "",
        "| live values | "
        + " | ".join(f"{name} p50 / p99" for name in latency_rows[0][1])
        + " | GetStats / FindMedian (p50) |",
        "|---|" + "---|" * (len(latency_rows[0][1]) + 1),
    ]
    ratios = []
    for size, result in latency_rows:
        ratio = result[GETSTATS][0] / result["FindMedian"][0]
        ratios.append(ratio)
        cells_text = " | ".join(f"{p50:,.0f} / {p99:,.0f}" for p50, p99 in result.values())
        lines.append(f"| {size:,} | {cells_text} | {ratio:.2f}x |")
    worst_stats = max(ratios)
    lines += [
        "",
        f"Goal: GetStats p50 within {STATS_GOAL}x of FindMedian's at every size: worst **{worst_stats:.2f}x** "
        f"({'met' if worst_stats <= STATS_GOAL else 'missed'}).",
        "",
        f"### Ingest with watchers: AddNums(1000), 16 in flight, round robin over the streams (count windows of {WINDOW:,}), {seconds:g} s per cell",
        "",
        "Every watcher asks for the same query as GetStats above and reads continuously; updates are what they "
        "received while the writer ran. Age: an update's arrival time minus its `stats.time` (one machine, "
        "one clock; a snapshot shared by watchers carries the time the first of them read it). Server µs per "
        "update: the server's CPU time beyond what the values written cost in the baseline row, per update. "
        "Client core: how busy core 1 was (watchers and writer).",
        "",
        "| case | streams | values/s | vs no watchers | updates/s received | age p50 / p99 ms | server µs per update | server core busy | client core busy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        baseline = baselines[cell.streams]
        if cell.watchers:
            age = f"{_pct(cell.ages_ns, 0.5) / 1000:.1f} / {_pct(cell.ages_ns, 0.99) / 1000:.1f}"
            received = f"{cell.updates / cell.elapsed:,.0f}"
            cost = f"{cell.server_us_per_update(baseline):,.0f}"
        else:
            age = received = cost = "-"
        lines.append(
            f"| {cell.label} | {cell.streams} | {cell.rate:,.0f} | {cell.rate / baseline.rate:.2f}x | {received} | "
            f"{age} | {cost} | {cell.server_cpu_s / cell.elapsed:.0%} | {cell.client_busy:.0%} |"
        )
    main = next(c for c in cells if c.watchers and c.streams == 1 and c.interval == 0.1)
    main_ratio = main.rate / baselines[1].rate
    lines += ["", reading(worst_stats, cells, baselines), ""]
    lines.append(
        f"Goal: {watchers:,} watchers at a 0.1 s interval cost less than {1 - WATCH_GOAL:.0%} of ingest "
        f"(at least {WATCH_GOAL}x the rate without): measured **{main_ratio:.2f}x** "
        f"({'met' if main_ratio >= WATCH_GOAL else 'missed'})."
    )
    if main_ratio < WATCH_GOAL:
        wanted = main.watchers / main.interval
        lines += [
            "",
            f"Why it is missed: {main.watchers:,} watchers of a stream that changes all the time want "
            f"{wanted:,.0f} updates/s, and each cost the server about {main.server_us_per_update(baselines[1]):,.0f} "
            "µs of its one core: the watcher's wake-up, its timed wait for the interval (a timer and a shielded "
            "future per update), the stream's lock to take the shared snapshot, and grpc's send of one message "
            "(already encoded once per state), all "
            f"Python and asyncio work. Keeping {WATCH_GOAL:.0%} of ingest at that update rate needs at most "
            f"{(1 - WATCH_GOAL) * 1e6 / wanted:,.0f} µs per update (one timer per stream and interval for all "
            "its watchers, say, instead of one per watcher); until then a longer `min_interval` is the lever "
            "(the 1 s row).",
        ]
    lines.append(END)
    return "\n".join(lines)


def reading(worst_stats: float, cells: list[IngestCell], baselines: dict[int, IngestCell]) -> str:
    """The paragraph that reads the numbers: what GetStats costs, and what a watcher's update costs."""
    parts = [
        f"GetStats costs at most {worst_stats:.2f}x a FindMedian: "
        + (
            "the extra statistics are read in the same call under the same lock, and the RPC's fixed cost "
            "dominates."
            if worst_stats <= STATS_GOAL
            else "reading its extra statistics costs more than the RPC around them (the table shows at which sizes)."
        )
    ]
    for cell in cells:
        if not cell.watchers:
            continue
        baseline = baselines[cell.streams]
        where = "one stream" if cell.streams == 1 else f"{cell.streams} streams"
        parts.append(
            f"{cell.watchers:,} watchers on {where} at {cell.interval:g} s received "
            f"{cell.updates / cell.elapsed:,.0f} updates/s and left the writer "
            f"{cell.rate / baseline.rate:.2f}x its rate; each update cost the server about "
            f"{cell.server_us_per_update(baseline):,.0f} µs of CPU."
        )
    parts.append(
        "An update is one message per watcher (the snapshot is computed once per stream state and query "
        "and shared), so the cost follows updates per second, watchers x changes capped at one per watcher "
        "per interval, times the server's cost of sending one message; the server has one core for that "
        "and ingest together. A longer interval, or fewer watchers per busy stream, is what makes it cheap."
    )
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, counts and durations: proves the script works"
    )
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    pin(0, CLIENT_CORE)
    sizes = [1_000, 100_000] if args.quick else [1_000, 100_000, 1_000_000]
    rounds, seconds = (200, 2.0) if args.quick else (2000, 10.0)
    watchers, spread = (40, 10) if args.quick else (1000, 100)

    latency_rows = []
    for size in sizes:
        with streamstats_server("--in-memory") as server:
            _fill(server.address, ["s"], size)
            out = ctx.Queue()
            worker = ctx.Process(target=latency_worker, args=(server.address, "s", rounds, out))
            worker.start()
            result = out.get(timeout=WORKER_TIMEOUT_S)
            worker.join()
        latency_rows.append((size, result))
        print(f"  GetStats latency at {size:,} values: {result}", flush=True)

    one, many = ["w"], [f"w{i}" for i in range(spread)]
    cases = [
        ("no watchers", one, 0, 0.1),
        (f"{watchers:,} watchers, min_interval 0.1 s", one, watchers, 0.1),
        (f"{watchers:,} watchers, min_interval 1 s", one, watchers, 1.0),
        (f"no watchers, {spread} streams", many, 0, 0.1),
        (f"{watchers:,} watchers over {spread} streams, min_interval 0.1 s", many, watchers, 0.1),
    ]
    cells = []
    for label, streams, count, interval in cases:
        cell = ingest_with_watchers(ctx, label, streams, count, interval, seconds)
        cells.append(cell)
        print(f"  {label}: {cell.rate:,.0f} values/s, {cell.updates:,} updates", flush=True)
    section = render(latency_rows, cells, seconds, args.quick)
    print(section)
    if not args.quick:
        write_section(BEGIN, END, section)


if __name__ == "__main__":
    main()
