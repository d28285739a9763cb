"""Focused examples for the structures; tests/property/test_structures.py covers the rest."""

from __future__ import annotations

import math
import random
from array import array
from fractions import Fraction

import pytest

from streamstats_server.structures import MedianHeaps, SlidingWindow, SortedFloats, WindowState
from streamstats_server.structures.exact_moments import ExactMoments
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
