"""Cost of the in-memory structures: time per operation and bytes per stored value.

Run:  .venv/bin/python bench/structures_cost.py [--load N] [--sizes 1000,100000,1000000] [--repeat R]

In-process and single-threaded; times are wall-clock ns per value (or per query) including the
Python call overhead, after a warm-up.  The values are uniform random doubles.  Expect a few
minutes at the default sizes.  ``--repeat R`` keeps the fastest of R measurements of each cell, which
is what to compare on a shared, noisy machine.

Before/after a change of the structures, run this same script against the older code, e.g.
``git archive <commit> server | tar -x -C /tmp/old`` and ``PYTHONPATH=/tmp/old/server ...
--ingest-only`` (which skips the query rows that older code may not have).
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from collections.abc import Callable

from streamstats_server.structures import MedianHeaps, SlidingWindow
from streamstats_server.structures.sorted_floats import DEFAULT_LOAD

T0 = 1_700_000_000_000_000_000
BATCH = 1000
BIG_BATCH = 100_000
# Each measurement repeats until it has timed at least this many operations and this many ns.
MIN_OPS = 20_000
MIN_NS = 100_000_000
REPEAT = [1]  # --repeat: each cell is the fastest of this many measurements


def random_values(rng: random.Random, n: int) -> list[float]:
    return [rng.random() for _ in range(n)]


def measure(setup: Callable[[], Callable[[], int]]) -> float:
    """ns per operation: ``setup()`` builds a fresh state (untimed) and returns a runner that
    performs some operations (timed) and returns how many it did. The fastest of ``REPEAT``."""
    setup()()  # warm-up
    best = float("inf")
    for _ in range(REPEAT[0]):
        ops = 0
        elapsed = 0
        while ops < MIN_OPS or elapsed < MIN_NS:
            run = setup()
            gc.collect()
            start = time.perf_counter_ns()
            ops += run()
            elapsed += time.perf_counter_ns() - start
        best = min(best, elapsed / ops)
    return best


def unbounded_costs(n: int, load: int, rng: random.Random, *, queries: bool = True) -> dict[str, float]:
    base = random_values(rng, n)
    fresh = random_values(rng, 10 * BATCH)
    big = random_values(rng, BIG_BATCH)
    heaps = MedianHeaps(base, load=load)

    # Adds grow the structure, so each round starts from a copy and adds at most n / 10 values.
    def add_setup() -> Callable[[], int]:
        mh = MedianHeaps(base, load=load)
        values = fresh[: max(1, min(len(fresh), n // 10))]

        def run() -> int:
            add = mh.add
            for v in values:
                add(v)
            return len(values)

        return run

    # Like add_setup: up to n / 10 values per round, here in batches of BATCH.
    def update_setup() -> Callable[[], int]:
        mh = MedianHeaps(base, load=load)
        batches = [fresh[i : i + BATCH] for i in range(0, max(BATCH, min(len(fresh), n // 10)), BATCH)]

        def run() -> int:
            for batch in batches:
                mh.update(batch)
            return BATCH * len(batches)

        return run

    def big_update_setup() -> Callable[[], int]:
        mh = MedianHeaps(base, load=load)

        def run() -> int:
            mh.update(big)
            return len(big)

        return run

    def query_setup(query: Callable[[], object], repeat: int = 1000) -> Callable[[], Callable[[], int]]:
        def setup() -> Callable[[], int]:
            def run() -> int:
                for _ in range(repeat):
                    query()
                return repeat

            return run

        return setup

    adds = {
        "add": measure(add_setup),
        f"update({BATCH})": measure(update_setup),
        f"update({BIG_BATCH})": measure(big_update_setup),
    }
    if not queries:
        return adds
    return {
        **adds,
        "median": measure(query_setup(heaps.median)),
        "top_k(10)": measure(query_setup(lambda: heaps.top_k(10))),
        "bottom_k(10)": measure(query_setup(lambda: heaps.bottom_k(10))),
        "top_k(1000)": measure(query_setup(lambda: heaps.top_k(1000), repeat=20)),
    }


def count_window_costs(n: int, load: int, rng: random.Random, *, queries: bool = True) -> dict[str, float]:
    """Steady state of a full count window of size n: every value added evicts the oldest one."""
    base = random_values(rng, n)
    fresh = random_values(rng, 10 * BATCH)
    window = SlidingWindow(max_count=n, load=load)
    window.add_many(base, T0)
    clock = [T0]

    def single_setup() -> Callable[[], int]:
        values = fresh[: min(len(fresh), 2 * BATCH)]

        def run() -> int:
            add_many = window.add_many
            now = clock[0]
            for v in values:
                now += 1
                add_many((v,), now)
            clock[0] = now
            return len(values)

        return run

    def batch_setup() -> Callable[[], int]:
        batches = [fresh[i : i + BATCH] for i in range(0, len(fresh), BATCH)]

        def run() -> int:
            now = clock[0]
            for batch in batches:
                now += 1
                window.add_many(batch, now)
            clock[0] = now
            return len(fresh)

        return run

    def query_setup(query: Callable[[], object], *, change_first: bool) -> Callable[[], Callable[[], int]]:
        """``query`` 500 times, each after adding (and evicting) one value if ``change_first``: a
        change drops the rank index, so the first quantile after it rebuilds it."""

        def setup() -> Callable[[], int]:
            values = fresh[:500]

            def run() -> int:
                now = clock[0]
                for v in values:
                    if change_first:
                        now += 1
                        window.add_many((v,), now)
                    query()
                clock[0] = now
                return len(values)

            return run

        return setup

    add_one = measure(single_setup)
    stats = {"window add": add_one, f"window add({BATCH})": measure(batch_setup)}
    if not queries:
        return stats
    # Read before timing, so that the rank index and the exact sums are up to date (and the second
    # row times what a read after one add costs, not the first read of the window).
    window.quantile(0.5)
    window.mean()
    stats["quantile(0.99)"] = measure(query_setup(lambda: window.quantile(0.99), change_first=False))
    stats["quantiles(.5,.9,.99)"] = measure(
        query_setup(lambda: window.quantiles((0.5, 0.9, 0.99)), change_first=False)
    )
    stats["quantile(0.99) after an add"] = (
        measure(query_setup(lambda: window.quantile(0.99), change_first=True)) - add_one
    )
    stats["mean + stddev after an add"] = (
        measure(query_setup(lambda: (window.mean(), window.stddev()), change_first=True)) - add_one
    )
    stats["mean + stddev after n unread adds"] = unread_read_cost(window, fresh, clock, n)
    return stats


def unread_read_cost(window: SlidingWindow, fresh: list[float], clock: list[int], n: int) -> float:
    """ns for the first mean + stddev after min(n, 32,768) single adds nobody read: the worst case of a
    read, which converts the live values it has not seen yet (the adds themselves are not timed)."""
    best = float("inf")
    for _ in range(max(3, REPEAT[0])):
        now = clock[0]
        for i in range(min(n, 32_768)):
            now += 1
            window.add_many((fresh[i % len(fresh)],), now)
        clock[0] = now
        gc.collect()
        start = time.perf_counter_ns()
        window.mean()
        window.stddev()
        best = min(best, time.perf_counter_ns() - start)
    return best


def time_window_costs(n: int, load: int, rng: random.Random) -> dict[str, float]:
    """Steady state of a time window holding about n values: every add expires the oldest ones.
    Single adds arrive 1 ns apart with max_age_ns = n; batches arrive BATCH ns apart."""
    fresh = random_values(rng, 10 * BATCH)
    single = SlidingWindow(max_age_ns=n, load=load)
    batched = SlidingWindow(max_age_ns=n, load=load)
    base = random_values(rng, n)
    for i in range(0, n, BATCH):
        single.add_many(base[i : i + BATCH], T0 + i + BATCH - 1)
        batched.add_many(base[i : i + BATCH], T0 + i + BATCH - 1)
    clocks = {"single": T0 + n, "batched": T0 + n}

    def single_setup() -> Callable[[], int]:
        values = fresh[:2000]

        def run() -> int:
            add_many = single.add_many
            now = clocks["single"]
            for v in values:
                now += 1
                add_many((v,), now)
            clocks["single"] = now
            return len(values)

        return run

    def batch_setup() -> Callable[[], int]:
        batches = [fresh[i : i + BATCH] for i in range(0, len(fresh), BATCH)]

        def run() -> int:
            now = clocks["batched"]
            for batch in batches:
                now += BATCH
                batched.add_many(batch, now)
            clocks["batched"] = now
            return len(fresh)

        return run

    return {"time window add": measure(single_setup), f"time window add({BATCH})": measure(batch_setup)}


def traced_bytes(build: Callable[[], object]) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    built = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, built


def memory_costs(n: int, load: int, rng: random.Random) -> dict[str, float]:
    values = random_values(rng, n)

    def heaps_singly() -> MedianHeaps:
        mh = MedianHeaps(load=load)
        for v in values:
            mh.add(v)
        return mh

    def window_batches() -> SlidingWindow:
        w = SlidingWindow(load=load)
        for i in range(0, n, BATCH):
            w.add_many(values[i : i + BATCH], T0 + i)
        return w

    def window_singly() -> SlidingWindow:
        w = SlidingWindow(load=load)
        for i, v in enumerate(values):
            w.add_many((v,), T0 + i)
        return w

    def window_count_steady() -> SlidingWindow:
        w = SlidingWindow(max_count=n, load=load)
        w.add_many(values, T0)
        for i, v in enumerate(values):  # replace every value once, one at a time
            w.add_many((v,), T0 + 1 + i)
        return w

    def window_count_steady_read() -> SlidingWindow:
        """Also read a quantile and the mean every 1,000 adds, so the rank index, its change log and
        the exact sums exist (on older code without them, the same as the row above)."""
        w = SlidingWindow(max_count=n, load=load)
        w.add_many(values, T0)
        quantile, mean = getattr(w, "quantile", None), getattr(w, "mean", None)
        for i, v in enumerate(values):
            w.add_many((v,), T0 + 1 + i)
            if quantile is not None and mean is not None and i % 1000 == 999:
                quantile(0.99)
                mean()
        return w

    builds: dict[str, Callable[[], object]] = {
        "MedianHeaps, bulk": lambda: MedianHeaps(values, load=load),
        "MedianHeaps, single adds": heaps_singly,
        f"SlidingWindow, batches of {BATCH}": window_batches,
        "SlidingWindow, single adds at distinct times": window_singly,
        "count window after n single adds (steady)": window_count_steady,
        "same, read every 1,000 adds": window_count_steady_read,
        "reference: list of n float objects": lambda: [v * 1.0 for v in values],
    }
    out: dict[str, float] = {}
    for name, build in builds.items():
        size, built = traced_bytes(build)
        out[name] = size / n
        del built
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--load", type=int, default=DEFAULT_LOAD, help="SortedFloats chunk load")
    parser.add_argument("--sizes", default="1000,100000,1000000", help="live value counts, comma-separated")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) memory measurement")
    parser.add_argument("--repeat", type=int, default=1, help="keep the fastest of this many measurements")
    parser.add_argument(
        "--ingest-only", action="store_true", help="no query rows (to compare with older code)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    REPEAT[0] = args.repeat
    rng = random.Random(42)

    rows: dict[str, dict[int, float]] = {}
    for n in sizes:
        costs = unbounded_costs(n, args.load, rng, queries=not args.ingest_only)
        costs.update(count_window_costs(n, args.load, rng, queries=not args.ingest_only))
        costs.update(time_window_costs(n, args.load, rng))
        for name, ns in costs.items():
            rows.setdefault(name, {})[n] = ns
    width = max(map(len, rows)) + 2
    print(f"ns per value (add/update/window) or per call (queries); load={args.load}")
    print(f"{'operation':<{width}}" + "".join(f"{f'n={n:,}':>14}" for n in sizes))
    for name, by_size in rows.items():
        print(f"{name:<{width}}" + "".join(f"{by_size[n]:>14,.0f}" for n in sizes))

    if not args.no_memory:
        n = max(sizes)
        print(f"\nbytes per value at n={n:,} (tracemalloc)")
        for name, per_value in memory_costs(n, args.load, rng).items():
            print(f"{name:<48}{per_value:>8.1f}")


if __name__ == "__main__":
    main()
