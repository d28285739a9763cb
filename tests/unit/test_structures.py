"""Focused examples for the structures; tests/property/test_structures.py covers the rest."""

from __future__ import annotations

import math
import random
from array import array
from fractions import Fraction

import pytest

from streamstats_server.structures import MedianHeaps, SlidingWindow, SortedFloats, WindowState
from streamstats_server.structures.exact_moments import ExactMoments, exact_sums
from streamstats_server.structures.window import quantile_by_rank

MAX = 1.7976931348623157e308
MIN_SUBNORMAL = 5e-324
T0 = 1_700_000_000_000_000_000


def is_negative_zero(v: float) -> bool:
    return v == 0.0 and math.copysign(1.0, v) < 0


# --- SortedFloats ---------------------------------------------------------------------------------


def test_sorted_floats_empty() -> None:
    sf = SortedFloats()
    sf._check()
    assert len(sf) == 0
    assert list(sf) == []
    assert sf.smallest(3) == []
    assert sf.largest(3) == []
    assert sf.pop_smallest(3) == []
    assert sf.pop_largest(3) == []
    with pytest.raises(ValueError, match="empty"):
        sf.min()
    with pytest.raises(ValueError, match="empty"):
        sf.max()
    with pytest.raises(IndexError):
        sf.pop_min()
    with pytest.raises(IndexError):
        sf.pop_max()
    with pytest.raises(ValueError, match="not in"):
        sf.remove(1.0)
    assert repr(sf) == "SortedFloats(len=0)"


def test_sorted_floats_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="load"):
        SortedFloats(load=1)
    sf = SortedFloats([1.0])
    for method in (sf.smallest, sf.largest, sf.pop_smallest, sf.pop_largest):
        with pytest.raises(ValueError, match="non-negative"):
            method(-1)


def test_sorted_floats_duplicates_and_removal() -> None:
    sf = SortedFloats([2.0, 1.0, 2.0, 3.0, 2.0], load=2)
    sf._check()
    assert list(sf) == [1.0, 2.0, 2.0, 2.0, 3.0]
    sf.remove(2.0)
    sf._check()
    assert list(sf) == [1.0, 2.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="not in"):
        sf.remove(2.5)
    with pytest.raises(ValueError, match="not in"):
        sf.remove(4.0)  # larger than every value
    assert sf.min() == 1.0
    assert sf.max() == 3.0
    assert repr(sf) == "SortedFloats(len=4, min=1.0, max=3.0)"


def test_sorted_floats_extremes_keep_their_bits() -> None:
    values = [MAX, -MAX, MIN_SUBNORMAL, -MIN_SUBNORMAL, 0.0, 1.0]
    sf = SortedFloats(values)
    assert list(sf) == sorted(values)
    assert sf.min() == -MAX
    assert sf.max() == MAX
    assert sf.smallest(2) == [-MAX, -MIN_SUBNORMAL]
    assert sf.largest(2) == [MAX, 1.0]


def test_sorted_floats_k_beyond_len() -> None:
    sf = SortedFloats([3.0, 1.0, 2.0], load=2)
    assert sf.smallest(10) == [1.0, 2.0, 3.0]
    assert sf.largest(10) == [3.0, 2.0, 1.0]
    assert sf.smallest(0) == []
    assert sf.pop_largest(10) == [3.0, 2.0, 1.0]
    assert len(sf) == 0
    sf._check()


@pytest.mark.parametrize("load", [2, 4, 16, 64])
def test_sorted_floats_bulk_update_into_many_chunks(load: int) -> None:
    """Large and small batches into a multi-chunk multiset (both the merge and the insert paths)."""
    rng = random.Random(load)
    sf = SortedFloats(load=load)
    model: list[float] = []
    for size in [1, 7, 8, 300, 5, 2000, 40, 10, 1]:
        batch = [float(rng.randrange(-50, 50)) for _ in range(size)]
        sf.update(batch)
        model += batch
        model.sort()
        sf._check()
        assert list(sf) == model
    while model:
        v = model.pop(rng.randrange(len(model)))
        sf.remove(v)
    sf._check()
    assert len(sf) == 0


def test_sorted_floats_stores_raw_doubles() -> None:
    sf = SortedFloats(range(10_000), load=100)
    assert all(isinstance(c, array) and c.typecode == "d" for c in sf._chunks)
    assert len(sf._chunks) == 100


# --- MedianHeaps ----------------------------------------------------------------------------------


def test_median_heaps_empty() -> None:
    mh = MedianHeaps()
    mh._check()
    assert len(mh) == 0
    assert mh.median() is None
    assert mh.top_k(5) == []
    assert mh.bottom_k(5) == []
    with pytest.raises(ValueError, match="not in"):
        mh.remove(0.0)


def test_median_odd_and_even() -> None:
    mh = MedianHeaps()
    mh.add(5.0)
    assert mh.median() == 5.0
    mh.add(1.0)
    assert mh.median() == 3.0
    mh.add(2.0)
    assert mh.median() == 2.0
    mh.update([10.0, 20.0, 30.0])
    mh._check()
    assert mh.median() == 7.5  # 1 2 5 | 10 20 30
    assert repr(mh) == "MedianHeaps(len=6, median=7.5)"


def test_median_of_duplicates_and_removal_at_the_boundary() -> None:
    mh = MedianHeaps([1.0, 2.0, 2.0, 2.0, 2.0, 3.0], load=2)
    mh._check()
    assert mh.median() == 2.0
    for _ in range(4):
        mh.remove(2.0)
        mh._check()
    assert list(mh) == [1.0, 3.0]
    assert mh.median() == 2.0
    with pytest.raises(ValueError, match="not in"):
        mh.remove(2.0)


def test_median_of_huge_doubles_does_not_overflow() -> None:
    assert MedianHeaps([MAX, MAX]).median() == MAX
    assert MedianHeaps([-MAX, -MAX]).median() == -MAX
    assert MedianHeaps([MAX, -MAX]).median() == 0.0
    a, b = 1.5e308, MAX
    expected = float((Fraction(a) + Fraction(b)) / 2)
    assert math.isinf(a + b)
    assert MedianHeaps([a, b]).median() == expected


def test_median_of_tiny_doubles_is_correctly_rounded() -> None:
    # The exact mean 2.5e-324 is halfway between 0 and the smallest subnormal: ties go to even (0).
    assert MedianHeaps([0.0, MIN_SUBNORMAL]).median() == 0.0
    assert MedianHeaps([MIN_SUBNORMAL, MIN_SUBNORMAL]).median() == MIN_SUBNORMAL
    assert MedianHeaps([-MIN_SUBNORMAL, MIN_SUBNORMAL]).median() == 0.0
    assert MedianHeaps([-0.0]).median() == 0.0


def test_top_and_bottom_k() -> None:
    mh = MedianHeaps([4.0, 1.0, 3.0, 2.0, 5.0], load=2)
    assert mh.top_k(2) == [5.0, 4.0]
    assert mh.bottom_k(2) == [1.0, 2.0]
    assert mh.top_k(4) == [5.0, 4.0, 3.0, 2.0]  # spills from the upper half into the lower
    assert mh.bottom_k(4) == [1.0, 2.0, 3.0, 4.0]
    assert mh.top_k(100) == [5.0, 4.0, 3.0, 2.0, 1.0]
    assert mh.bottom_k(100) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert mh.top_k(0) == []
    with pytest.raises(ValueError, match="non-negative"):
        mh.top_k(-1)


def test_bulk_update_rebalances_in_both_directions() -> None:
    mh = MedianHeaps([5.0, 6.0], load=2)
    mh.update([float(v) for v in range(100, 140)])  # all above: values move down
    mh._check()
    mh.update([float(-v) for v in range(100)])  # all below: values move up
    mh._check()
    ordered = sorted([5.0, 6.0, *range(100, 140), *range(-99, 1)])
    assert mh.median() == (ordered[70] + ordered[71]) / 2 == -28.5


# --- SlidingWindow --------------------------------------------------------------------------------


def test_window_empty_and_arguments() -> None:
    w = SlidingWindow()
    w._check()
    assert len(w) == 0
    assert (w.max_count, w.max_age_ns) == (0, 0)
    assert w.median() is None
    assert w.top_k(3) == []
    assert w.bottom_k(3) == []
    assert list(w.items()) == []
    assert w.expire(T0) == 0
    w.add_many([], T0)
    w._check()
    assert len(w) == 0
    assert repr(w) == "SlidingWindow(len=0, max_count=0, max_age_ns=0)"
    with pytest.raises(ValueError, match="max_count"):
        SlidingWindow(max_count=-1)
    with pytest.raises(ValueError, match="max_age_ns"):
        SlidingWindow(max_age_ns=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        SlidingWindow(fifo_chunk=0)


def test_count_window_evicts_oldest() -> None:
    w = SlidingWindow(max_count=3, load=2, fifo_chunk=2)
    for i, v in enumerate([10.0, 20.0, 30.0, 40.0, 50.0]):
        w.add_many([v], T0 + i)
        w._check()
    assert list(w.items()) == [(30.0, T0 + 2), (40.0, T0 + 3), (50.0, T0 + 4)]
    assert w.median() == 40.0
    w.add_many([1.0, 2.0], T0 + 5)
    w._check()
    assert list(w.items()) == [(50.0, T0 + 4), (1.0, T0 + 5), (2.0, T0 + 5)]
    assert w.bottom_k(5) == [1.0, 2.0, 50.0]


def test_batch_larger_than_window_keeps_its_newest_values() -> None:
    w = SlidingWindow(max_count=3, load=2)
    w.add_many([100.0, 200.0], T0)
    w.add_many([1.0, 2.0, 3.0, 4.0, 5.0], T0 + 1)
    w._check()
    assert list(w.items()) == [(3.0, T0 + 1), (4.0, T0 + 1), (5.0, T0 + 1)]
    assert w.median() == 4.0
    w.add_many([6.0, 7.0, 8.0], T0 + 2)  # exactly max_count
    assert list(w.items()) == [(6.0, T0 + 2), (7.0, T0 + 2), (8.0, T0 + 2)]


def test_time_window_boundary() -> None:
    w = SlidingWindow(max_age_ns=10)
    w.add_many([1.0], T0)
    w.add_many([2.0, 3.0], T0 + 5)
    assert w.expire(T0 + 9) == 0
    assert len(w) == 3
    assert w.expire(T0 + 10) == 1  # exactly max_age_ns old: expired
    assert list(w.items()) == [(2.0, T0 + 5), (3.0, T0 + 5)]
    assert w.expire(T0 + 14) == 0
    assert w.expire(T0 + 15) == 2
    assert len(w) == 0
    assert w.median() is None
    w._check()


def test_add_many_expires_as_of_its_time() -> None:
    w = SlidingWindow(max_age_ns=10)
    w.add_many([1.0], T0)
    w.add_many([2.0], T0 + 10)
    assert list(w.items()) == [(2.0, T0 + 10)]


def test_both_limits() -> None:
    w = SlidingWindow(max_count=2, max_age_ns=10)
    w.add_many([1.0, 2.0, 3.0], T0)
    assert list(w.items()) == [(2.0, T0), (3.0, T0)]
    w.add_many([4.0], T0 + 3)
    assert list(w.items()) == [(3.0, T0), (4.0, T0 + 3)]
    assert w.expire(T0 + 10) == 1
    assert list(w.items()) == [(4.0, T0 + 3)]
    w._check()


def test_time_must_not_go_backwards() -> None:
    w = SlidingWindow(max_age_ns=10)
    w.add_many([1.0], T0)
    w.expire(T0 + 5)
    with pytest.raises(ValueError, match="backwards"):
        w.add_many([2.0], T0 + 4)
    assert w.expire(T0 + 1) == 0
    w._check()


def test_negative_zero_is_stored_as_zero() -> None:
    w = SlidingWindow()
    w.add_many([-0.0], T0)
    w.add_many([-0.0, 1.0, -0.0], T0 + 1)
    w._check()
    assert not any(is_negative_zero(v) for v, _ in w.items())
    assert not any(is_negative_zero(v) for v in w.top_k(10))
    assert not is_negative_zero(w.median() or 0.0)


def test_window_extreme_values() -> None:
    w = SlidingWindow(max_count=4)
    w.add_many([-MAX, MIN_SUBNORMAL, MAX, MAX], T0)
    assert w.median() == MAX / 2  # mean of MIN_SUBNORMAL and MAX, correctly rounded
    w.add_many([MAX], T0 + 1)  # evicts -MAX: the middle two are MAX and MAX, whose sum overflows
    assert w.median() == MAX
    assert w.top_k(2) == [MAX, MAX]
    assert w.bottom_k(1) == [MIN_SUBNORMAL]
    w._check()


def test_remove_of_absent_value_raises_everywhere() -> None:
    with pytest.raises(ValueError, match="not in"):
        SortedFloats([1.0, 3.0]).remove(2.0)
    with pytest.raises(ValueError, match="not in"):
        MedianHeaps([1.0, 3.0]).remove(2.0)
    with pytest.raises(ValueError, match="not in"):
        MedianHeaps([1.0, 3.0]).remove(-5.0)


def test_items_round_trip_through_from_items() -> None:
    w = SlidingWindow(max_count=5, max_age_ns=100, load=2, fifo_chunk=2)
    w.add_many([3.0, 1.0], T0)
    w.add_many([2.0], T0 + 1)
    w.add_many([5.0, 4.0, 0.0], T0 + 2)
    items = list(w.items())
    restored = SlidingWindow.from_items(items, w.max_count, w.max_age_ns, load=2, fifo_chunk=2)
    restored._check()
    assert list(restored.items()) == items
    assert restored.median() == w.median()
    # Limits apply as of the newest item; the caller expires as of "now" afterwards.
    trimmed = SlidingWindow.from_items(items, max_count=2, max_age_ns=2)
    assert list(trimmed.items()) == [(4.0, T0 + 2), (0.0, T0 + 2)]
    aged = SlidingWindow.from_items(items, max_age_ns=2)
    assert list(aged.items()) == [(2.0, T0 + 1), (5.0, T0 + 2), (4.0, T0 + 2), (0.0, T0 + 2)]
    with pytest.raises(ValueError, match="decrease"):
        SlidingWindow.from_items([(1.0, T0 + 1), (2.0, T0)])


def test_state_round_trip() -> None:
    w = SlidingWindow(max_count=6, max_age_ns=100, load=2, fifo_chunk=2)
    w.add_many([3.0, -0.0, 1.0], T0)
    w.add_many([2.0], T0 + 1)
    w.add_many([5.0, 4.0, 0.5, 7.0], T0 + 2)  # evicts 3.0 and the 0.0
    state = w.state()
    assert isinstance(state, WindowState)
    assert [v for chunk in state.values for v in chunk] == [1.0, 2.0, 5.0, 4.0, 0.5, 7.0]
    assert [v for chunk in state.sorted_values for v in chunk] == [0.5, 1.0, 2.0, 4.0, 5.0, 7.0]
    assert all(c.typecode == "d" for c in state.values + state.sorted_values)
    assert (state.run_times.typecode, state.run_lengths.typecode) == ("q", "q")
    assert list(state.run_times) == [T0, T0 + 1, T0 + 2]
    assert list(state.run_lengths) == [1, 1, 4]

    restored = SlidingWindow.from_state(state, w.max_count, w.max_age_ns, load=2, fifo_chunk=2)
    restored._check()
    assert list(restored.items()) == list(w.items())
    assert restored.median() == w.median() == 3.0
    with pytest.raises(ValueError, match="backwards"):
        restored.add_many([1.0], T0 + 1)

    w.add_many([9.0], T0 + 3)  # the state is a copy
    assert list(state.run_lengths) == [1, 1, 4]
    assert len(restored) == 6

    # Tighter limits apply as of the newest arrival time.
    trimmed = SlidingWindow.from_state(state, max_count=3, max_age_ns=2)
    trimmed._check()
    assert list(trimmed.items()) == [(4.0, T0 + 2), (0.5, T0 + 2), (7.0, T0 + 2)]
    aged = SlidingWindow.from_state(state, max_age_ns=2)
    assert [t for _, t in aged.items()] == [T0 + 1] + [T0 + 2] * 4

    empty = SlidingWindow().state()
    assert SlidingWindow.from_state(empty).median() is None


def test_from_state_rejects_inconsistent_counts() -> None:
    good = SlidingWindow()
    good.add_many([1.0, 2.0], T0)
    state = good.state()
    short = WindowState(state.values, [array("d", [1.0])], state.run_times, state.run_lengths)
    with pytest.raises(ValueError, match="inconsistent"):
        SlidingWindow.from_state(short)
    runs = WindowState(state.values, state.sorted_values, array("q", [T0, T0 + 1]), array("q", [2]))
    with pytest.raises(ValueError, match="inconsistent"):
        SlidingWindow.from_state(runs)


def test_window_memory_is_raw_doubles() -> None:
    w = SlidingWindow()
    w.add_many([float(i) for i in range(100_000)], T0)
    # One run of arrival times for the whole batch.
    assert list(w._run_counts) == [100_000]
    assert all(c.typecode == "d" for c in w._values._chunks)


def test_next_expiry_is_when_the_oldest_value_leaves() -> None:
    assert SlidingWindow(max_count=3).next_expiry_ns() is None
    window = SlidingWindow(max_age_ns=100)
    assert window.next_expiry_ns() is None
    window.add_many([1.0], 1_000)
    window.add_many([2.0], 1_050)
    assert window.next_expiry_ns() == 1_100
    assert window.expire(1_099) == 0
    assert window.expire(1_100) == 1
    assert window.next_expiry_ns() == 1_150
    window.expire(1_150)
    assert window.next_expiry_ns() is None


@pytest.mark.parametrize("method", ["linear", "lower", "higher", "nearest"])
def test_quantiles_match_numpy_at_every_tie(method: str) -> None:
    import numpy as np

    for n in (1, 2, 3, 4, 5, 10, 11):
        values = sorted(float(v * v) for v in range(n))
        for q in [i / 40 for i in range(41)] + [1 / 3, 2 / 3, 0.999]:
            expected = float(np.quantile(np.array(values), q, method=method))  # type: ignore[call-overload]
            assert quantile_by_rank(values.__getitem__, n, q, method) == expected, (n, q)


def test_quantile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="q must be in"):
        quantile_by_rank([1.0].__getitem__, 1, 1.5, "linear")
    with pytest.raises(ValueError, match="q must be in"):
        quantile_by_rank([1.0].__getitem__, 1, math.nan, "linear")
    with pytest.raises(ValueError, match="unknown quantile method"):
        quantile_by_rank([1.0, 2.0].__getitem__, 2, 0.5, "midpoint")
    with pytest.raises(ValueError, match="no values"):
        quantile_by_rank([].__getitem__, 0, 0.5, "linear")
    assert SlidingWindow().quantile(0.5) is None


def test_linear_interpolation_between_the_extremes_stays_finite() -> None:
    big = 1.7976931348623157e308
    assert quantile_by_rank([-big, big].__getitem__, 2, 0.5, "linear") == 0.0
    assert quantile_by_rank([-big, big].__getitem__, 2, 0.25, "linear") == pytest.approx(-big / 2, rel=1e-15)


def test_exact_moments_survive_extremes_and_turnover() -> None:
    big, tiny = 1.7976931348623157e308, 5e-324
    moments = ExactMoments()
    moments.add([big, big, -big, tiny, 0.0])
    assert moments.mean() == pytest.approx(big / 5)
    moments.remove([big, -big])
    assert moments.mean() == (big + tiny) / 3
    assert moments.stddev() == pytest.approx(math.sqrt(2) / 3 * big)
    moments.remove([big, tiny, 0.0])
    assert (moments.count, moments.mean(), moments.stddev()) == (0, None, None)
    for _ in range(100):  # a window of one value turning over: nothing drifts
        moments.add([1e6 + 0.1])
        moments.remove([1e6 + 0.1])
    moments.add([3.0, 3.0])
    assert (moments.mean(), moments.stddev()) == (3.0, 0.0)
    moments._check([3.0, 3.0])


# --- Rank access, quantiles, min/max ----------------------------------------------------------------


def test_select_reads_through_the_change_log() -> None:
    """After the index is built, single adds and removals are logged, not rebuilt; a split, a merge or
    an overfull log drops the index and the next select rebuilds it."""
    rng = random.Random(7)
    model = sorted(float(rng.randrange(1000)) for _ in range(400))
    sf = SortedFloats(model, load=16)
    assert sf._offsets is None  # nothing built until a rank is read
    assert [sf.select(r) for r in range(len(model))] == model
    assert sf._offsets is not None and sf._log == []
    cap = sf._log_cap
    for step in range(3 * cap):
        if step % 3:
            v = float(rng.randrange(1000))
            sf.add(v)
            model.append(v)
            model.sort()
        else:
            v = model.pop(rng.randrange(len(model)))
            sf.remove(v)
        sf._check()
        rank = rng.randrange(len(model))
        assert sf.select(rank) == model[rank]
        if sf._log is not None:
            assert len(sf._log) <= cap
    assert [sf.select(r) for r in range(len(model))] == model
    sf.update([float(v) for v in range(0, 1000, 50)])  # a bulk update into many chunks
    model = sorted(model + [float(v) for v in range(0, 1000, 50)])
    sf._check()
    assert [sf.select(r) for r in range(len(model))] == model
    assert sf.pop_smallest(5) == model[:5]  # drops the index (chunk indices shift)
    assert sf._offsets is None
    assert sf.select(0) == model[5]
    sf._check()


def test_select_index_dropped_by_split_and_merge() -> None:
    sf = SortedFloats([float(v) for v in range(8)], load=2)  # chunks of 2..4
    assert sf.select(3) == 3.0
    sf.add(3.5)
    sf.add(3.25)  # overfills a chunk: split
    sf._check()
    assert sf.select(4) == 3.25
    for v in (0.0, 1.0, 2.0):  # underfills chunks: merges
        sf.remove(v)
        sf._check()
        assert [sf.select(r) for r in range(len(sf))] == list(sf)


def test_quantile_edge_cases() -> None:
    assert MedianHeaps().quantile(0.5) is None
    assert MedianHeaps().quantiles([0.1, 0.9]) is None
    one = MedianHeaps([4.5])
    for method in ("linear", "lower", "higher", "nearest"):
        assert one.quantiles([0.0, 0.3, 0.5, 1.0], method) == [4.5] * 4
    dup = MedianHeaps([2.0] * 5 + [7.0])
    assert dup.quantiles([0.0, 0.5, 0.8, 0.9, 1.0]) == [2.0, 2.0, 2.0, 4.5, 7.0]
    zeros = SlidingWindow()
    zeros.add_many([-0.0, -0.0, 1.0], T0)
    for q in (0.0, 0.25, 0.5):
        value = zeros.quantile(q)
        assert value == 0.0 and not is_negative_zero(value)
    assert zeros.min() == 0.0 and not is_negative_zero(zeros.min() or 1.0)
    assert (zeros.min(), zeros.max()) == (0.0, 1.0)
    assert SlidingWindow().min() is None and SlidingWindow().max() is None
    with pytest.raises(ValueError, match="empty"):
        MedianHeaps().min()
    with pytest.raises(ValueError, match="empty"):
        MedianHeaps().max()


@pytest.mark.parametrize("q", [-0.1, 1.0000001, math.nan, math.inf])
def test_quantile_outside_zero_one_raises_even_when_empty(q: float) -> None:
    for target in (MedianHeaps([1.0, 2.0]), MedianHeaps(), SlidingWindow()):
        with pytest.raises(ValueError, match="q must be in"):
            target.quantile(q)
        with pytest.raises(ValueError, match="q must be in"):
            target.quantiles([0.5, q])
    with pytest.raises(ValueError, match="unknown quantile method"):
        SlidingWindow().quantiles([0.5], "midpoint")


def test_quantiles_between_the_extremes_stay_finite_where_numpy_overflows() -> None:
    import numpy as np

    values = [-MAX, -MAX, MAX, MAX]
    w = SlidingWindow()
    w.add_many(values, T0)
    with np.errstate(all="ignore"):
        numpy_says = [float(np.quantile(np.array(values), q)) for q in (0.4, 0.5, 0.6)]
    assert all(math.isinf(v) for v in numpy_says)  # numpy: b - a overflows between -MAX and MAX
    assert w.quantile(0.5) == 0.0
    assert w.quantiles([0.0, 1.0]) == [-MAX, MAX]
    got = w.quantiles([i / 100 for i in range(101)])
    assert got is not None and all(map(math.isfinite, got))
    assert got == sorted(got)  # still monotone in q
    assert w.quantile(0.4) == pytest.approx(-0.6 * MAX, rel=1e-15)  # h = 1.2: -MAX * 0.8 + MAX * 0.2
    assert w.quantile(0.5, "nearest") == MAX  # h = 1.5: a tie, to the even index 2
    assert MedianHeaps([MAX, MAX]).quantile(0.3) == MAX  # same sign: b - a cannot overflow
    with np.errstate(all="ignore"):
        at_zero = float(np.quantile(np.array([-MAX, MAX]), 0.0))
    assert math.isnan(at_zero)  # numpy: -MAX + inf * 0
    assert MedianHeaps([-MAX, MAX]).quantile(0.0) == -MAX


def test_nearest_ties_round_to_even_like_numpy() -> None:
    import numpy as np

    values = [float(v) for v in range(5)]  # h = 4q: ties at q = 1/8, 3/8, 5/8, 7/8
    mh = MedianHeaps(values, load=2)
    for q in (0.125, 0.375, 0.625, 0.875):
        expected = float(np.quantile(np.array(values), q, method="nearest"))
        assert mh.quantile(q, "nearest") == expected == float(round(4 * q))


# --- Mean and standard deviation ------------------------------------------------------------------


def test_mean_and_stddev_edge_cases() -> None:
    w = SlidingWindow(max_count=3)
    assert (w.mean(), w.stddev()) == (None, None)
    w.add_many([5.0], T0)
    assert (w.mean(), w.stddev()) == (5.0, 0.0)
    w.add_many([-0.0, -0.0], T0 + 1)
    assert w.mean() == 5.0 / 3
    assert w.stddev() == math.sqrt(50.0 / 9)
    w.add_many([7.0, 7.0, 7.0], T0 + 2)
    assert (w.mean(), w.stddev()) == (7.0, 0.0)
    w._check()


def test_stddev_where_float_sums_overflow() -> None:
    """The sums are exact integers, so results that are doubles come out right even where Σx² (or Σx)
    would overflow a float: documented behaviour, numpy.std returns inf for these."""
    cases = [
        ([1e300, -1e300], 0.0, 1e300),
        ([MAX, MAX], MAX, 0.0),
        ([MAX, -MAX], 0.0, MAX),
        ([MAX, MAX, -MAX, -MAX], 0.0, MAX),
        ([1e300, 1e300, 1e300, -1e300], 5e299, math.sqrt(3) / 2 * 1e300),
        ([MIN_SUBNORMAL, 0.0], MIN_SUBNORMAL / 2, MIN_SUBNORMAL / 2),
    ]
    for values, mean, stddev in cases:
        w = SlidingWindow()
        w.add_many(values, T0)
        assert w.mean() == mean, values
        got = w.stddev()
        assert got is not None and abs(got - stddev) <= math.ulp(stddev), (values, got, stddev)


def test_exact_sums_are_lazy_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adds convert nothing until a read (or until _UNSEEN_MAX values go unread); values added and
    evicted between two reads are never converted; whole FIFO chunks leave the sums in O(1)."""
    from streamstats_server.structures import window as window_module

    converted: list[int] = []
    real = exact_sums

    def counting(values: array[float]) -> tuple[int, int]:
        converted.append(len(values))
        return real(values)

    monkeypatch.setattr(window_module, "exact_sums", counting)
    w = SlidingWindow(max_count=100, fifo_chunk=16)
    for i in range(5000):
        w.add_many([float(i)], T0 + i)
    w.add_many([float(i) for i in range(5000, 6000)], T0 + 5000)
    assert converted == []
    assert w.mean() == sum(range(5900, 6000)) / 100
    assert sum(converted) == 100
    converted.clear()
    for i in range(6000, 6050):
        w.add_many([float(i)], T0 + i)
    assert w.mean() == sum(range(5950, 6050)) / 100
    # The 50 new values, plus the popped part of the FIFO's first chunk (under 16); the rest of the
    # evicted values left in whole chunks.
    assert 50 <= sum(converted) < 50 + 16
    w._check()

    monkeypatch.setattr(window_module, "_UNSEEN_MAX", 64)
    converted.clear()
    big = SlidingWindow(fifo_chunk=16)
    for i in range(1000):
        big.add_many([float(i)], T0 + i)
        assert big._values.unsummed() <= 64
    assert 1000 - 65 <= sum(converted) <= 1000
    big._check()


def window_turning_over(kind: str, size: int, values: list[float]) -> SlidingWindow:
    """``values`` fed through a count or time window of ``size`` values in batches of varied sizes
    (single values included), reading the statistics now and then as a client would."""
    rng = random.Random(size)
    w = SlidingWindow(max_count=size) if kind == "count" else SlidingWindow(max_age_ns=size)
    i = 0
    now = T0
    while i < len(values):
        n = rng.choice([1, 1, 2, 7, 50, 333])
        batch = values[i : i + n]
        # A time window of `size` ns holding one value per ns: the batch arrives at its last value's ns.
        now = T0 + i + len(batch) - 1 if kind == "time" else now + 1
        w.add_many(batch, now)
        i += len(batch)
        if rng.random() < 0.05:
            w.mean()
    return w


def exact_stddev(values: list[float]) -> float:
    """The population standard deviation from exact rational arithmetic (one rounding in isqrt)."""
    n = len(values)
    mean = sum(map(Fraction, values), Fraction(0)) / n
    variance = sum(((Fraction(v) - mean) * (Fraction(v) - mean) for v in values), Fraction(0)) / n
    a, b = variance.numerator, variance.denominator
    return math.isqrt((a * b) << 400) / (b << 200)  # sqrt(a / b) = sqrt(a * b) / b


def assert_moments_after_turnover(w: SlidingWindow, values: list[float], *, numpy_too: bool = True) -> None:
    """The window holds the newest values; its mean is correctly rounded and its stddev within 2 ulps
    of the exact one, and both within 1e-9 (relative) of numpy's where numpy itself is that accurate."""
    import numpy as np

    w._check()
    live = values[len(values) - len(w) :]
    assert [v for v, _ in w.items()] == live
    mean, stddev = w.mean(), w.stddev()
    assert mean is not None and stddev is not None
    assert mean == float(sum(map(Fraction, live)) / len(live))
    expected = exact_stddev(live)
    assert abs(stddev - expected) <= 2 * math.ulp(expected), (stddev, expected)
    if numpy_too:
        reference = np.array(live)
        assert abs(mean - float(np.mean(reference))) <= 1e-9 * abs(mean)
        np_std = float(np.std(reference))
        assert abs(stddev - np_std) <= 1e-9 * np_std, (stddev, np_std)


@pytest.mark.parametrize("kind", ["count", "time"])
@pytest.mark.parametrize(
    "shape", ["1e9 + noise", "many magnitudes", "a burst of 1e15 passes through", "tiny noise on 1e15"]
)
def test_mean_and_stddev_after_100_turnovers_match_numpy(kind: str, shape: str) -> None:
    """100 * window_size values through the window: exact sums leave no drift behind."""
    size = 1000
    rng = random.Random(shape)
    total = 100 * size
    if shape == "1e9 + noise":
        values = [1e9 + rng.uniform(-1.0, 1.0) for _ in range(total)]
    elif shape == "many magnitudes":
        values = [rng.choice([-1.0, 1.0]) * 10.0 ** rng.uniform(-100, 100) for _ in range(total)]
    elif shape == "a burst of 1e15 passes through":
        values = [rng.gauss(1.0, 1e-3) for _ in range(total)]
        values[40 * size : 45 * size] = [1e15 * rng.random() for _ in range(5 * size)]
    else:
        # Spread of a few ulps around 1e15: numpy's own float sums are off by more than 1e-9 here, so
        # this one is checked against the exact values only.
        values = [1e15 + rng.choice([-0.125, 0.0, 0.125, 0.25]) for _ in range(total)]
    w = window_turning_over(kind, size, values)
    # A time window may keep a few more: a batch arrives at once, at the time of its last value.
    assert size <= len(w) < size + 333 if kind == "time" else len(w) == size
    assert_moments_after_turnover(w, values, numpy_too=shape != "tiny noise on 1e15")


@pytest.mark.parametrize("kind", ["count", "time"])
def test_moments_where_numpy_overflows_after_turnover(kind: str) -> None:
    """±1e300: Σx² overflows a double (numpy.std says inf); ours stays exact through turnover."""
    size = 200
    rng = random.Random(kind)
    values = [rng.choice([-1.0, 1.0]) * 1e300 * rng.uniform(0.5, 1.0) for _ in range(100 * size)]
    w = window_turning_over(kind, size, values)
    assert_moments_after_turnover(w, values, numpy_too=False)


def test_state_round_trip_keeps_the_statistics() -> None:
    w = SlidingWindow(max_count=50, load=4, fifo_chunk=8)
    rng = random.Random(3)
    for i in range(300):
        w.add_many([1e9 + rng.random() for _ in range(rng.choice([1, 3, 9]))], T0 + i)
        if i % 17 == 0:
            w.quantile(0.3)
            w.mean()
    restored = SlidingWindow.from_state(w.state(), 50, load=4, fifo_chunk=8)
    restored._check()
    qs = [0.0, 0.1, 0.5, 0.99, 1.0]
    for method in ("linear", "lower", "higher", "nearest"):
        assert restored.quantiles(qs, method) == w.quantiles(qs, method)
    assert (restored.mean(), restored.stddev(), restored.min(), restored.max()) == (
        w.mean(),
        w.stddev(),
        w.min(),
        w.max(),
    )


def test_stream_stats_is_one_snapshot_after_expiry() -> None:
    from streamstats_server.stream import Stream, WindowConfig

    stream = Stream("s", WindowConfig(window_size=0, window_duration_ns=10), T0)
    empty = stream.stats(T0, [0.5], "linear", 3)
    assert (empty.count, empty.min, empty.mean, empty.stddev, empty.median) == (0, None, None, None, None)
    assert (empty.quantiles, empty.top, empty.bottom) == ([], [], [])
    stream.add([100.0], T0)
    stream.add([4.0, 1.0, 3.0, 2.0], T0 + 5)
    stats = stream.stats(T0 + 10, [0.0, 0.5, 0.9, 1.0], "linear", 2)  # expires the 100.0 first
    assert (stats.count, stats.total_added) == (4, 5)
    assert (stats.min, stats.max, stats.mean, stats.median) == (1.0, 4.0, 2.5, 2.5)
    assert stats.stddev == math.sqrt(1.25)
    assert stats.quantiles == [(0.0, 1.0), (0.5, 2.5), (0.9, pytest.approx(3.7)), (1.0, 4.0)]
    assert (stats.top, stats.bottom) == ([4.0, 3.0], [1.0, 2.0])
    assert stream.stats(T0 + 10, [0.5], "nearest", 0).quantiles == [(0.5, 3.0)]  # h = 1.5: even index 2
    with pytest.raises(ValueError, match="unknown quantile method"):
        stream.stats(T0 + 10, [0.5], "midpoint", 0)
    gone = stream.stats(T0 + 15, [0.5], "linear", 2)
    assert (gone.count, gone.total_added, gone.quantiles, gone.mean) == (0, 5, [], None)
