"""GetStats: one consistent snapshot, exact quantiles by numpy's definitions, accurate moments."""

from __future__ import annotations

import math
import random
import statistics
import threading
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.e2e.calls import error_of

T = 10.0
QS = [0.0, 0.001, 0.1, 0.25, 1 / 3, 0.5, 0.9, 0.99, 0.999, 1.0]
METHODS = {
    "linear": pb.QUANTILE_METHOD_LINEAR,
    "lower": pb.QUANTILE_METHOD_LOWER,
    "higher": pb.QUANTILE_METHOD_HIGHER,
    "nearest": pb.QUANTILE_METHOD_NEAREST,
}


def stats(stub: pb_grpc.StreamStatsStub, name: str, **query: Any) -> pb.Stats:
    response = stub.GetStats(pb.GetStatsRequest(stream=name, query=pb.StatsQuery(**query)), timeout=T)
    result: pb.Stats = response.stats
    return result


@pytest.mark.parametrize("method", METHODS)
def test_quantiles_match_numpy(stub: pb_grpc.StreamStatsStub, method: str) -> None:
    rng = random.Random(7)
    values = [
        rng.choice([rng.gauss(100, 15), float(rng.randint(0, 9)), rng.expovariate(0.01)]) for _ in range(5001)
    ]
    stub.AddNums(pb.AddNumsRequest(stream="s", values=values), timeout=T)
    for live in (values, values[:1], values[:2], values[:1000]):
        name = f"s{len(live)}"
        stub.AddNums(pb.AddNumsRequest(stream=name, values=live), timeout=T)
        got = stats(stub, name, quantiles=QS, quantile_method=METHODS[method])
        expected = np.quantile(np.array(live), QS, method=method)  # type: ignore[call-overload]
        assert [q.q for q in got.quantiles] == QS
        for quantile, want in zip(got.quantiles, expected, strict=True):
            assert quantile.value == pytest.approx(float(want), rel=1e-12, abs=1e-12), (quantile.q, method)
        assert got.quantiles[0].value == got.min == min(live)
        assert got.quantiles[-1].value == got.max == max(live)


def test_the_default_method_is_linear(stub: pb_grpc.StreamStatsStub) -> None:
    stub.AddNums(pb.AddNumsRequest(stream="s", values=[1.0, 2.0, 4.0, 8.0]), timeout=T)
    got = stats(stub, "s", quantiles=[0.5, 0.75])
    assert [q.value for q in got.quantiles] == [3.0, 5.0]  # numpy: [3.0, 5.0]


def test_every_statistic_at_once(stub: pb_grpc.StreamStatsStub) -> None:
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 3.0]
    stub.AddNums(pb.AddNumsRequest(stream="s", values=values), timeout=T)
    got = stats(stub, "s", quantiles=[0.5], k=2)
    assert (got.count, got.total_added) == (6, 6)
    assert (got.min, got.max, got.median) == (1.0, 9.0, 4.0)
    assert got.mean == pytest.approx(np.mean(values), rel=1e-15)
    assert got.stddev == pytest.approx(np.std(values), rel=1e-15)
    assert list(got.top) == [9.0, 7.0] and list(got.bottom) == [1.0, 3.0]
    assert got.time.ToNanoseconds() > 0
    # k = 0 and no quantiles: just the moments and order statistics.
    plain = stats(stub, "s")
    assert (list(plain.top), list(plain.bottom), list(plain.quantiles)) == ([], [], [])
    assert plain.HasField("median")


def test_an_empty_stream_leaves_the_statistics_unset(stub: pb_grpc.StreamStatsStub) -> None:
    stub.CreateStream(pb.CreateStreamRequest(name="empty"), timeout=T)
    got = stats(stub, "empty", quantiles=[0.5], k=3)
    assert (got.count, got.total_added) == (0, 0)
    for field in ("min", "max", "mean", "stddev", "median"):
        assert not got.HasField(field), field
    assert (list(got.quantiles), list(got.top), list(got.bottom)) == ([], [], [])


@pytest.mark.parametrize(
    ("query", "field", "fragment"),
    [
        (pb.StatsQuery(quantiles=[0.5, 1.5]), "query.quantiles[1]", "between 0 and 1 (got 1.5)"),
        (pb.StatsQuery(quantiles=[-0.1]), "query.quantiles[0]", "(got -0.1)"),
        (pb.StatsQuery(quantiles=[math.nan]), "query.quantiles[0]", "(got nan)"),
        (pb.StatsQuery(quantiles=[math.inf]), "query.quantiles[0]", "(got inf)"),
        (pb.StatsQuery(quantiles=[0.5] * 101), "query.quantiles", "at most 100"),
        (pb.StatsQuery(k=10_001), "query.k", "between 0 and 10000"),
        (pb.StatsQuery(quantile_method=99), "query.quantile_method", "(got 99)"),  # type: ignore[arg-type]
    ],
)
def test_bad_queries_are_invalid_argument(
    stub: pb_grpc.StreamStatsStub, query: pb.StatsQuery, field: str, fragment: str
) -> None:
    stub.AddNum(pb.AddNumRequest(stream="s", value=1.0), timeout=T)
    err = error_of(lambda: stub.GetStats(pb.GetStatsRequest(stream="s", query=query), timeout=T))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith(field + ":"), err.details()
    assert fragment in (err.details() or "")


def test_a_missing_stream_is_not_found(stub: pb_grpc.StreamStatsStub) -> None:
    err = error_of(lambda: stub.GetStats(pb.GetStatsRequest(stream="nope"), timeout=T))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_mean_and_stddev_stay_accurate_after_100_window_turnovers(stub: pb_grpc.StreamStatsStub) -> None:
    size = 1000
    stub.CreateStream(pb.CreateStreamRequest(name="w", config=pb.StreamConfig(window_size=size)), timeout=T)
    rng = random.Random(3)
    live: list[float] = []
    for turn in range(100):
        # A level that moves far from where it started, with noise a millionth of it: naive running sums
        # of x and x² drift, and E[x²] - mean² cancels catastrophically. (Much smaller noise and numpy's
        # own std is off by more than 1e-9; statistics.pstdev is exact, and checked too.)
        level = 1e6 * (1 + turn % 7) + rng.random()
        batch = [level + rng.gauss(0, 1) for _ in range(size)]
        if turn % 10 == 9:
            batch = [rng.choice([1e15, -1e15, 1e-9, 0.0]) + rng.random() for _ in range(size)]
        for start in range(0, size, 250):  # partial turnovers too
            stub.AddNums(pb.AddNumsRequest(stream="w", values=batch[start : start + 250]), timeout=T)
        live = (live + batch)[-size:]
        got = stats(stub, "w")
        assert got.count == size
        assert got.mean == pytest.approx(float(np.mean(live)), rel=1e-9)
        assert got.stddev == pytest.approx(float(np.std(live)), rel=1e-9)
        assert got.mean == pytest.approx(statistics.fmean(live), rel=1e-12)
        assert got.stddev == pytest.approx(statistics.pstdev(live), rel=1e-12)
    assert stats(stub, "w").total_added == 100 * size


def test_a_time_window_is_expired_first(stub: pb_grpc.StreamStatsStub) -> None:
    config = pb.StreamConfig(window_duration=duration_pb2.Duration(nanos=200_000_000))
    stub.CreateStream(pb.CreateStreamRequest(name="t", config=config), timeout=T)
    stub.AddNums(pb.AddNumsRequest(stream="t", values=[1.0, 2.0]), timeout=T)
    threading.Event().wait(0.3)  # the values are now older than the window
    got = stats(stub, "t", quantiles=[0.5], k=1)
    assert (got.count, got.total_added) == (0, 2)
    assert not got.HasField("mean")


def test_a_snapshot_is_one_instant_under_concurrent_writes(stub: pb_grpc.StreamStatsStub) -> None:
    # Each batch is 100 copies of one value, increasing batch by batch: any snapshot taken between
    # batches has a count that is a multiple of 100 and every statistic agrees with it.
    stop = threading.Event()

    def write() -> None:
        for i in range(1, 300):
            stub.AddNums(pb.AddNumsRequest(stream="c", values=[float(i)] * 100), timeout=T)
        stop.set()

    stub.AddNums(pb.AddNumsRequest(stream="c", values=[0.0] * 100), timeout=T)
    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while not stop.is_set() or seen == 0:
        got = stats(stub, "c", quantiles=[1.0], k=1)
        batches = got.count // 100
        assert got.count % 100 == 0 and got.total_added == got.count
        assert got.max == batches - 1 == got.top[0] == got.quantiles[0].value
        assert got.mean == pytest.approx((batches - 1) / 2, rel=1e-12)
        seen += 1
    writer.join()
