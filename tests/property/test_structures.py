"""Stateful property tests: each structure against a naive model, with _check() after every step.

Chunk sizes are made tiny (load=2..16, FIFO chunks of 1..5) so that a few dozen values already
split, merge and drop chunks.  Values are drawn mostly from small pools so that duplicates (also of
the median boundary) are the rule, mixed with arbitrary finite floats and the extremes.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from streamstats_server.structures import MedianHeaps, SlidingWindow, SortedFloats
from streamstats_server.structures import window as window_module
from streamstats_server.structures.quantiles import QUANTILE_METHODS

MAX = 1.7976931348623157e308
MIN_SUBNORMAL = 5e-324
EXTREMES = [MAX, -MAX, MIN_SUBNORMAL, -MIN_SUBNORMAL, 2.2250738585072014e-308, 1e308, -1e308, 0.0, -0.0]

values = st.one_of(
    st.integers(-3, 3).map(float),  # many duplicates
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.0, 2.5, -7.25, 1e-300]),
    st.sampled_from(EXTREMES),
    st.floats(allow_nan=False, allow_infinity=False),
)
batches = st.lists(values, max_size=60)
# Batches of huge values put two huge values of one sign in the middle, where a + b overflows.
huge = st.one_of(
    st.sampled_from([MAX, -MAX, 1e308, -1e308, 1.5e308]),
    st.floats(min_value=1e307, max_value=MAX),
    st.floats(min_value=-MAX, max_value=-1e307),
)
huge_batches = st.lists(huge, min_size=1, max_size=30)
loads = st.sampled_from([2, 3, 4, 8, 16])
ks = st.integers(0, 80)

# max_examples runs of up to stateful_step_count steps per machine: about 25 s in all on 2 cores.
MACHINE_SETTINGS = settings(max_examples=200, stateful_step_count=50, deadline=None)
WINDOW_SETTINGS = settings(MACHINE_SETTINGS, max_examples=400)  # the most moving parts


def reference_median(ordered: list[float]) -> float | None:
    """The correctly rounded median of a sorted list, computed exactly."""
    n = len(ordered)
    if not n:
        return None
    if n % 2:
        return ordered[n // 2]
    return float((Fraction(ordered[n // 2 - 1]) + Fraction(ordered[n // 2])) / 2)


def exact_mean(values: list[float]) -> float:
    """The mean, correctly rounded (Fraction arithmetic is exact)."""
    return float(sum(map(Fraction, values)) / len(values))


def exact_stddev(values: list[float]) -> float:
    """sqrt of the exact population variance, rounded twice at most (see assert_close_ulps)."""
    n = len(values)
    mean = sum(map(Fraction, values)) / n
    variance = Fraction(sum(((Fraction(v) - mean) ** 2 for v in values), Fraction(0))) / n
    try:
        return math.sqrt(float(variance))
    except OverflowError:
        # sqrt(a / b) = sqrt(a * b) / b, with both scaled so the integer square root loses nothing.
        a, b = variance.numerator, variance.denominator
        return math.isqrt((a * b) << 400) / (b << 200)


def assert_close_ulps(got: float | None, expected: float, ulps: int = 2) -> None:
    assert got is not None
    assert abs(got - expected) <= ulps * math.ulp(expected), (got, expected)


def assert_quantile(got: float | None, ordered: list[float], q: float, method: str) -> None:
    """Bit-identical to numpy.quantile (0.0 == -0.0); where numpy's interpolation overflows (inf/nan
    between finite values of opposite signs near ±1.8e308), ours must lie between the two neighbours."""
    with np.errstate(all="ignore"):  # numpy's overflow near ±1.8e308 is the case handled below
        expected = float(np.quantile(np.array(ordered), q, method=method))  # type: ignore[call-overload]
    assert got is not None
    if math.isfinite(expected):
        assert got == expected, (got, expected, q, method)
    else:
        # numpy interpolates between ordered[i] and ordered[i + 1] even at t = 0 (inf * 0 = nan).
        i = math.floor((len(ordered) - 1) * q)
        low, high = ordered[i], ordered[min(i + 1, len(ordered) - 1)]
        assert math.isinf(high - low)  # the only case where numpy leaves the finite doubles
        assert low <= got <= high, (got, low, high, q)


def same_floats(got: list[float], expected: list[float]) -> bool:
    """Element-wise ``==``, without the identity shortcut of list equality (which would let a NaN
    object equal itself); note that 0.0 == -0.0."""
    return len(got) == len(expected) and all(g == e for g, e in zip(got, expected, strict=True))


class SortedFloatsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: list[float] = []
        self.sf = SortedFloats(load=2)

    @initialize(load=loads, initial=batches)
    def start(self, load: int, initial: list[float]) -> None:
        self.sf = SortedFloats(initial, load=load)
        self.model = sorted(initial)

    @rule(v=values)
    def add(self, v: float) -> None:
        self.sf.add(v)
        self.model.append(v)
        self.model.sort()

    @rule(batch=batches)
    def update(self, batch: list[float]) -> None:
        self.sf.update(batch)
        self.model = sorted(self.model + batch)

    @rule(batch=st.lists(values, min_size=100, max_size=300))
    def update_big(self, batch: list[float]) -> None:
        self.update(batch)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove_present(self, data: st.DataObject) -> None:
        v = data.draw(st.sampled_from(self.model))
        self.sf.remove(v)
        self.model.remove(v)

    @rule(v=values)
    def remove_maybe_absent(self, v: float) -> None:
        if v in self.model:
            self.sf.remove(v)
            self.model.remove(v)
        else:
            with pytest.raises(ValueError, match="not in"):
                self.sf.remove(v)

    @rule()
    def pop_min(self) -> None:
        if self.model:
            assert self.sf.pop_min() == self.model.pop(0)
        else:
            with pytest.raises(IndexError):
                self.sf.pop_min()

    @rule()
    def pop_max(self) -> None:
        if self.model:
            assert self.sf.pop_max() == self.model.pop()
        else:
            with pytest.raises(IndexError):
                self.sf.pop_max()

    @rule(k=ks)
    def pop_smallest(self, k: int) -> None:
        assert same_floats(self.sf.pop_smallest(k), self.model[:k])
        del self.model[:k]

    @rule(k=ks)
    def pop_largest(self, k: int) -> None:
        assert same_floats(self.sf.pop_largest(k), self.model[::-1][:k])
        del self.model[len(self.model) - min(k, len(self.model)) :]

    @rule(data=st.data())
    def select(self, data: st.DataObject) -> None:
        if not self.model:
            with pytest.raises(IndexError):
                self.sf.select(0)
            return
        for rank in data.draw(st.lists(st.integers(0, len(self.model) - 1), min_size=1, max_size=5)):
            assert same_floats([self.sf.select(rank)], [self.model[rank]])
        with pytest.raises(IndexError):
            self.sf.select(len(self.model))
        with pytest.raises(IndexError):
            self.sf.select(-1)

    @rule()
    def select_every_rank(self) -> None:
        # Builds the rank index or reads through its change log, which later steps then extend.
        assert same_floats([self.sf.select(r) for r in range(len(self.model))], self.model)

    @rule(k=ks)
    def smallest_largest(self, k: int) -> None:
        assert same_floats(self.sf.smallest(k), self.model[:k])
        assert same_floats(self.sf.largest(k), self.model[::-1][:k])

    @invariant()
    def agrees_with_model(self) -> None:
        self.sf._check()
        assert len(self.sf) == len(self.model)
        assert same_floats(list(self.sf), self.model)
        if self.model:
            assert self.sf.min() == self.model[0]
            assert self.sf.max() == self.model[-1]
        else:
            with pytest.raises(ValueError, match="empty"):
                self.sf.min()
            with pytest.raises(ValueError, match="empty"):
                self.sf.max()


class MedianHeapsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: list[float] = []
        self.mh = MedianHeaps(load=2)

    @initialize(load=loads, initial=batches)
    def start(self, load: int, initial: list[float]) -> None:
        self.mh = MedianHeaps(initial, load=load)
        self.model = sorted(initial)

    @rule(v=values)
    def add(self, v: float) -> None:
        self.mh.add(v)
        self.model.append(v)
        self.model.sort()

    @rule(batch=batches)
    def update(self, batch: list[float]) -> None:
        self.mh.update(batch)
        self.model = sorted(self.model + batch)

    @rule(batch=st.lists(values, min_size=100, max_size=300))
    def update_big(self, batch: list[float]) -> None:
        self.update(batch)

    @rule(batch=huge_batches)
    def update_huge(self, batch: list[float]) -> None:
        self.update(batch)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove_present(self, data: st.DataObject) -> None:
        v = data.draw(st.sampled_from(self.model))
        self.mh.remove(v)
        self.model.remove(v)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove_boundary(self, data: st.DataObject) -> None:
        # The value at or next to the middle, which often has duplicates in both halves.
        n = len(self.model)
        middle = sorted({max(0, n // 2 - 1), n // 2, min(n - 1, n // 2 + 1)})
        v = self.model[data.draw(st.sampled_from(middle))]
        self.mh.remove(v)
        self.model.remove(v)

    @rule(v=values)
    def remove_maybe_absent(self, v: float) -> None:
        if v in self.model:
            self.mh.remove(v)
            self.model.remove(v)
        else:
            with pytest.raises(ValueError, match="not in"):
                self.mh.remove(v)

    @rule(k=ks)
    def top_bottom(self, k: int) -> None:
        assert same_floats(self.mh.top_k(k), self.model[::-1][:k])
        assert same_floats(self.mh.bottom_k(k), self.model[:k])

    @rule(k=st.integers(-5, -1))
    def negative_k(self, k: int) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            self.mh.top_k(k)
        with pytest.raises(ValueError, match="non-negative"):
            self.mh.bottom_k(k)

    @rule(
        qs=st.lists(st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 1.0, 0.25, 0.75])), max_size=4),
        method=st.sampled_from(QUANTILE_METHODS),
    )
    def quantiles(self, qs: list[float], method: str) -> None:
        got = self.mh.quantiles(qs, method)
        if not self.model:
            assert got is None
            assert self.mh.quantile(0.5, method) is None
            return
        assert got is not None and len(got) == len(qs)
        for q, value in zip(qs, got, strict=True):
            assert_quantile(value, self.model, q, method)
            assert self.mh.quantile(q, method) == value

    @rule()
    def select_every_rank(self) -> None:
        assert same_floats([self.mh.select(r) for r in range(len(self.model))], self.model)
        with pytest.raises(IndexError):
            self.mh.select(len(self.model))
        with pytest.raises(IndexError):
            self.mh.select(-1)

    @invariant()
    def agrees_with_model(self) -> None:
        self.mh._check()
        assert len(self.mh) == len(self.model)
        assert self.mh.median() == reference_median(self.model)
        if self.model:
            assert (self.mh.min(), self.mh.max()) == (self.model[0], self.model[-1])


T0 = 1_700_000_000_000_000_000  # a realistic epoch time in ns: far beyond 2**53, so not a double
UNSEEN_MAX = window_module._UNSEEN_MAX


class SlidingWindowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.model: list[tuple[float, int]] = []
        self.w = SlidingWindow()
        self.load, self.fifo_chunk = 2, 1
        self.latest: int | None = None  # the latest time the window has seen

    @initialize(
        max_count=st.sampled_from([0, 1, 2, 5, 13, 40]),
        max_age_ns=st.sampled_from([0, 1, 3, 10, 1000]),
        load=loads,
        fifo_chunk=st.sampled_from([1, 2, 3, 5, 4096]),
        unseen_max=st.sampled_from([0, 1, 7, 32768]),
    )
    def start(self, max_count: int, max_age_ns: int, load: int, fifo_chunk: int, unseen_max: int) -> None:
        # How many values may go unread before an add brings the exact sums up to date itself.
        window_module._UNSEEN_MAX = unseen_max
        self.w = SlidingWindow(max_count, max_age_ns, load=load, fifo_chunk=fifo_chunk)
        self.load, self.fifo_chunk = load, fifo_chunk

    def teardown(self) -> None:
        window_module._UNSEEN_MAX = UNSEEN_MAX

    def _model_expire(self) -> int:
        before = len(self.model)
        max_age = self.w.max_age_ns
        if max_age:
            self.model = [(v, t) for v, t in self.model if self.now - t < max_age]
        return before - len(self.model)

    @rule(batch=batches, dt=st.one_of(st.just(0), st.integers(0, 12)))
    def add_many(self, batch: list[float], dt: int) -> None:
        self.now += dt
        self.latest = self.now
        self.w.add_many(batch, self.now)
        self.model.extend((v + 0.0, self.now) for v in batch)
        if self.w.max_count:
            self.model = self.model[-self.w.max_count :]
        self._model_expire()

    @rule(batch=huge_batches, dt=st.integers(0, 3))
    def add_huge(self, batch: list[float], dt: int) -> None:
        self.add_many(batch, dt)

    @rule(v=values, dt=st.integers(0, 3))
    def add_one(self, v: float, dt: int) -> None:
        self.add_many([v], dt)

    @rule(
        batch=st.lists(st.floats(-4.0, 4.0).map(lambda noise: 1e9 + noise), min_size=1, max_size=30),
        dt=st.integers(0, 3),
    )
    def add_clustered(self, batch: list[float], dt: int) -> None:
        # |mean| >> stddev: where E[x²] - mean² in floats would cancel catastrophically.
        self.add_many(batch, dt)

    @rule(dt=st.integers(0, 15))
    def expire(self, dt: int) -> None:
        self.now += dt
        self.latest = self.now
        removed = self.w.expire(self.now)
        assert removed == self._model_expire()

    @precondition(lambda self: self.latest is not None)
    @rule(dt=st.integers(1, 5), batch=batches)
    def time_goes_back(self, dt: int, batch: list[float]) -> None:
        assert self.latest is not None
        past = self.latest - dt
        with pytest.raises(ValueError, match="backwards"):
            self.w.add_many(batch, past)
        assert self.w.expire(past) == 0

    @rule()
    def restore(self) -> None:
        w = self.w
        self.w = SlidingWindow.from_items(
            w.items(), w.max_count, w.max_age_ns, load=self.load, fifo_chunk=self.fifo_chunk
        )
        # The restored window only knows the times of its items.
        self.latest = self.model[-1][1] if self.model else None

    @rule()
    def restore_from_state(self) -> None:
        w = self.w
        state = w.state()
        self.w = SlidingWindow.from_state(
            state, w.max_count, w.max_age_ns, load=self.load, fifo_chunk=self.fifo_chunk
        )
        self.latest = self.model[-1][1] if self.model else None
        # The state is a copy: changing the old window leaves the new one alone.
        w.add_many([1.0, 2.0], self.now)
        assert sum(len(c) for c in state.values) == len(self.model)

    @rule(k=ks)
    def queries(self, k: int) -> None:
        ordered = sorted(v for v, _ in self.model)
        assert self.w.median() == reference_median(ordered)
        assert same_floats(self.w.top_k(k), ordered[::-1][:k])
        assert same_floats(self.w.bottom_k(k), ordered[:k])

    @rule(qs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4), method=st.sampled_from(QUANTILE_METHODS))
    def statistics(self, qs: list[float], method: str) -> None:
        live = [v for v, _ in self.model]
        if not live:
            assert (self.w.mean(), self.w.stddev(), self.w.min(), self.w.max()) == (None,) * 4
            assert self.w.quantile(0.5, method) is None
            assert self.w.quantiles(qs, method) is None
            return
        assert (self.w.min(), self.w.max()) == (min(live), max(live))
        assert self.w.mean() == exact_mean(live)
        assert_close_ulps(self.w.stddev(), exact_stddev(live))
        ordered = sorted(live)
        got = self.w.quantiles(qs, method)
        assert got is not None
        for q, value in zip(qs, got, strict=True):
            assert_quantile(value, ordered, q, method)
            assert self.w.quantile(q, method) == value

    @invariant()
    def agrees_with_model(self) -> None:
        self.w._check()  # does not bring the exact sums up to date: the lazy states are checked too
        assert len(self.w) == len(self.model)
        assert list(self.w.items()) == self.model
        assert all(math.copysign(1.0, v) > 0 for v, _ in self.w.items() if v == 0.0)


TestSortedFloats = SortedFloatsMachine.TestCase
TestSortedFloats.settings = MACHINE_SETTINGS
TestMedianHeaps = MedianHeapsMachine.TestCase
TestMedianHeaps.settings = MACHINE_SETTINGS
TestSlidingWindow = SlidingWindowMachine.TestCase
TestSlidingWindow.settings = WINDOW_SETTINGS


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.tuples(values, st.integers(0, 4)), max_size=80),
    max_count=st.sampled_from([0, 1, 3, 20]),
    max_age_ns=st.sampled_from([0, 1, 4, 50]),
    fifo_chunk=st.sampled_from([1, 3, 4096]),
)
def test_from_items_matches_replay(
    items: list[tuple[float, int]], max_count: int, max_age_ns: int, fifo_chunk: int
) -> None:
    """Restoring a window from items equals replaying them one batch per distinct time."""
    timed: list[tuple[float, int]] = []
    now = T0
    for v, dt in items:
        now += dt
        timed.append((v, now))
    restored = SlidingWindow.from_items(timed, max_count, max_age_ns, load=3, fifo_chunk=fifo_chunk)
    restored._check()
    replayed = SlidingWindow(max_count, max_age_ns, load=3, fifo_chunk=fifo_chunk)
    i = 0
    while i < len(timed):
        j = i
        while j < len(timed) and timed[j][1] == timed[i][1]:
            j += 1
        replayed.add_many([v for v, _ in timed[i:j]], timed[i][1])
        i = j
    assert list(restored.items()) == list(replayed.items())
    assert restored.median() == replayed.median()
