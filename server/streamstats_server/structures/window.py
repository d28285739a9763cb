"""The live values of one stream: a FIFO in arrival order beside a MedianHeaps of the same values."""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Generic, TypeVar

from streamstats_server.structures.exact_moments import ExactMoments
from streamstats_server.structures.median_heaps import MedianHeaps
from streamstats_server.structures.sorted_floats import DEFAULT_LOAD

__all__ = ["DEFAULT_FIFO_CHUNK", "QUANTILE_METHODS", "SlidingWindow", "WindowState", "quantile_by_rank"]

#: numpy.quantile's names for the definitions we offer.
QUANTILE_METHODS = ("linear", "lower", "higher", "nearest")

# Single values added or evicted wait (as raw doubles: 8 bytes each) before being folded into the
# exact sums in one C-speed batch: converting a value alone costs about twice as much. Bounded, so a
# read folds at most this many and an idle stream holds at most 2 x 2 KB of them.
_PENDING_MAX = 256


def quantile_by_rank(select: Callable[[int], float], n: int, q: float, method: str) -> float:
    """The q-quantile of n sorted values, ``select(i)`` giving the i-th smallest, exactly as
    ``numpy.quantile(values, q, method=method)`` computes it (method linear, lower, higher or nearest).

    The virtual index is ``h = (n - 1) * q`` in floating point, as numpy computes it; ``nearest``
    rounds a tie to the even index (numpy's ``around``); ``linear`` is numpy's ``_lerp``, whose form
    changes at t = 0.5 so that it is exact at both ends. Where ``b - a`` overflows (values near
    ±1.8e308 of opposite signs), numpy answers inf or nan; we interpolate as ``a * (1 - t) + b * t``,
    which stays finite. Raises ValueError for q outside [0, 1] (or NaN) or an unknown method.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    if n < 1:
        raise ValueError("the quantile of no values")
    h = (n - 1) * q
    below = math.floor(h)
    if method == "lower":
        return select(below)
    if method == "higher":
        return select(math.ceil(h))
    if method == "nearest":
        return select(round(h))  # round() breaks ties to even, as numpy.around does
    if method != "linear":
        raise ValueError(f"unknown quantile method {method!r}; use one of {', '.join(QUANTILE_METHODS)}")
    a = select(below)
    t = h - below
    if not t:
        return a
    b = select(below + 1)
    diff = b - a
    if math.isinf(diff):
        return a * (1.0 - t) + b * t
    return a + diff * t if t < 0.5 else b - diff * (1.0 - t)


# 4096 doubles = 32 KiB per chunk: the per-chunk overhead (an array header and a deque slot) is
# negligible, and the unused tail of the newest chunk is bounded.
DEFAULT_FIFO_CHUNK = 4096

_N = TypeVar("_N", int, float)


class _ChunkedFifo(Generic[_N]):
    """A FIFO of numbers stored raw in fixed-size ``array`` chunks.

    Invariants (checked by ``_check``):

    * every chunk is non-empty; every chunk but the last holds exactly ``chunk_size`` items, the
      last at most ``chunk_size`` (new items go at its end);
    * ``0 <= _head < len(_chunks[0])``: the items of the first chunk before ``_head`` are already
      popped (a chunk is dropped as soon as it is fully popped, so no chunk is ever all dead);
    * ``_head == 0`` when there are no chunks;
    * ``_len`` is the number of live items.
    """

    __slots__ = ("_chunk_size", "_chunks", "_head", "_len", "_typecode")

    def __init__(self, typecode: str, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self._typecode = typecode
        self._chunk_size = chunk_size
        self._chunks: deque[array[_N]] = deque()
        self._head = 0
        self._len = 0

    def __len__(self) -> int:
        """O(1)."""
        return self._len

    def __iter__(self) -> Iterator[_N]:
        """Oldest first. O(1) per item."""
        for i, chunk in enumerate(self._chunks):
            yield from (chunk[self._head :] if i == 0 else chunk)

    def copy_chunks(self) -> list[array[_N]]:
        """The live items, oldest first, as copies of the chunks (concatenate them). O(n) memcpy."""
        return [chunk[self._head :] if i == 0 else chunk[:] for i, chunk in enumerate(self._chunks)]

    def to_array(self) -> array[_N]:
        """The live items, oldest first, in one new array. O(n) memcpy."""
        out = self._new_chunk()
        for chunk in self.copy_chunks():
            out.extend(chunk)
        return out

    def _new_chunk(self, items: Iterable[_N] = ()) -> array[_N]:
        return array(self._typecode, items)

    def append(self, item: _N) -> None:
        """Add at the back. O(1)."""
        chunks = self._chunks
        if not chunks or len(chunks[-1]) == self._chunk_size:
            chunks.append(self._new_chunk())
        chunks[-1].append(item)
        self._len += 1

    def extend(self, items: array[_N]) -> None:
        """Add all of ``items`` at the back, in order. O(len(items))."""
        chunks, size = self._chunks, self._chunk_size
        start = 0
        if chunks and len(chunks[-1]) < size:
            start = size - len(chunks[-1])
            chunks[-1].extend(items[:start])
        for i in range(start, len(items), size):
            chunks.append(items[i : i + size])
        self._len += len(items)

    def first(self) -> _N:
        """The oldest item. O(1). IndexError when empty."""
        return self._chunks[0][self._head]

    def set_first(self, item: _N) -> None:
        """Overwrite the oldest item. O(1). IndexError when empty."""
        self._chunks[0][self._head] = item

    def last(self) -> _N:
        """The newest item. O(1). IndexError when empty."""
        return self._chunks[-1][-1]

    def set_last(self, item: _N) -> None:
        """Overwrite the newest item. O(1). IndexError when empty."""
        self._chunks[-1][-1] = item

    def popleft(self) -> _N:
        """Remove and return the oldest item. O(1). IndexError when empty."""
        if not self._len:
            raise IndexError("popleft() from an empty FIFO")
        chunk = self._chunks[0]
        item = chunk[self._head]
        self._head += 1
        self._len -= 1
        if self._head == len(chunk):
            self._chunks.popleft()
            self._head = 0
        return item

    def popleft_many(self, n: int) -> array[_N]:
        """Remove and return the ``n`` oldest items, oldest first. O(n). ValueError if fewer."""
        if not 0 <= n <= self._len:
            raise ValueError(f"cannot pop {n} of {self._len} items")
        chunks = self._chunks
        out = self._new_chunk()
        self._len -= n
        while n:
            chunk = chunks[0]
            take = min(n, len(chunk) - self._head)
            out.extend(chunk[self._head : self._head + take])
            self._head += take
            n -= take
            if self._head == len(chunk):
                chunks.popleft()
                self._head = 0
        return out

    def _check(self) -> None:
        chunks = self._chunks
        if not chunks:
            if self._head or self._len:
                raise AssertionError(f"no chunks but head={self._head}, len={self._len}")
            return
        for i, chunk in enumerate(chunks):
            if chunk.typecode != self._typecode:
                raise AssertionError(f"chunk {i} has typecode {chunk.typecode!r}")
            if not chunk or len(chunk) > self._chunk_size:
                raise AssertionError(f"chunk {i} has {len(chunk)} items")
            if i < len(chunks) - 1 and len(chunk) != self._chunk_size:
                raise AssertionError(f"inner chunk {i} has {len(chunk)} != {self._chunk_size} items")
        if not 0 <= self._head < len(chunks[0]):
            raise AssertionError(f"head {self._head} outside the first chunk of {len(chunks[0])}")
        live = sum(len(c) for c in chunks) - self._head
        if live != self._len:
            raise AssertionError(f"_len is {self._len} but the chunks hold {live} live items")


@dataclass(frozen=True, slots=True)
class WindowState:
    """A window's contents as raw arrays, for checkpoints: writing or loading it creates no
    per-value Python objects.

    * ``values``: the live values, oldest first, as ``array('d')`` chunks to be concatenated;
    * ``sorted_values``: the same multiset in ascending order, as ``array('d')`` chunks, so that
      loading needs no sort;
    * ``run_times`` and ``run_lengths``: ``array('q')``s, oldest first: ``run_lengths[i]``
      consecutive values (in ``values`` order) arrived at ``run_times[i]`` ns.
    """

    values: list[array[float]]
    sorted_values: list[array[float]]
    run_times: array[int]
    run_lengths: array[int]


class SlidingWindow:
    """The live values of one stream, bounded by count and/or age, with median and top/bottom-k.

    ``_values`` keeps the values in arrival order (a FIFO of ``array('d')`` chunks) so the oldest
    can be found and evicted; ``_heaps`` keeps the same values ordered for the queries.  Arrival
    times are run-length encoded in two parallel FIFOs, ``_run_times`` and ``_run_counts``: all the
    values of one ``add_many`` share one time, so a batch costs 16 bytes in total, while single
    adds at distinct times cost 16 bytes each.  A large window thus costs about 16 bytes per value:
    8 in the FIFO and 8 in the halves.

    Time is an int of nanoseconds supplied by the caller, never read from a clock here.  The caller
    must pass non-decreasing times: ``add_many`` raises ValueError for a time older than the latest
    one seen by ``add_many`` or ``expire``, and ``expire`` with an older time expires nothing.

    A limit of 0 means unlimited.  A value is live while ``now_ns - arrival_ns < max_age_ns``.

    Invariants (checked by ``_check``):

    * the FIFO, the run counts and the heaps hold the same number of values, and the FIFO and the
      heaps hold the same multiset;
    * run times strictly increase and run counts are positive (a run is extended, not repeated,
      when values arrive at the time of the newest run);
    * no value is ``-0.0`` (it is normalised to ``0.0`` on the way in);
    * ``_moments`` plus the pending single values hold the exact sums of the live values;
    * ``len <= max_count`` when ``max_count`` is set, and when ``max_age_ns`` is set every value is
      younger than ``max_age_ns`` at ``_now_ns``, the latest time seen by ``add_many``/``expire``;
    * the FIFOs and the heaps satisfy their own invariants.
    """

    __slots__ = (
        "_fifo_chunk",
        "_heaps",
        "_load",
        "_max_age_ns",
        "_max_count",
        "_moments",
        "_now_ns",
        "_pending_in",
        "_pending_out",
        "_run_counts",
        "_run_times",
        "_values",
    )

    def __init__(
        self,
        max_count: int = 0,
        max_age_ns: int = 0,
        *,
        load: int = DEFAULT_LOAD,
        fifo_chunk: int = DEFAULT_FIFO_CHUNK,
    ) -> None:
        """An empty window. ``load`` and ``fifo_chunk`` size the internal chunks (tests make them
        tiny). Raises ValueError for a negative limit."""
        if max_count < 0:
            raise ValueError(f"max_count must be >= 0 (0 = unlimited), got {max_count}")
        if max_age_ns < 0:
            raise ValueError(f"max_age_ns must be >= 0 (0 = unlimited), got {max_age_ns}")
        self._max_count = max_count
        self._max_age_ns = max_age_ns
        self._load = load
        self._fifo_chunk = fifo_chunk
        self._values: _ChunkedFifo[float] = _ChunkedFifo("d", fifo_chunk)
        self._run_times: _ChunkedFifo[int] = _ChunkedFifo("q", fifo_chunk)
        self._run_counts: _ChunkedFifo[int] = _ChunkedFifo("q", fifo_chunk)
        self._heaps = MedianHeaps(load=load)
        self._now_ns: int | None = None
        self._moments = ExactMoments()
        self._pending_in = array("d")  # single values added, not yet in _moments
        self._pending_out = array("d")  # single values evicted, not yet out of _moments

    @classmethod
    def from_items(
        cls,
        items: Iterable[tuple[float, int]],
        max_count: int = 0,
        max_age_ns: int = 0,
        *,
        load: int = DEFAULT_LOAD,
        fifo_chunk: int = DEFAULT_FIFO_CHUNK,
    ) -> SlidingWindow:
        """A window holding ``items`` ((value, arrival_ns) pairs, oldest first, as ``items()``
        yields them), after applying the limits as of the newest arrival time.

        O(n log n): the heaps are built in one bulk update.  The caller should ``expire(now_ns)``
        before querying.  Raises ValueError if the arrival times decrease.
        """
        window = cls(max_count, max_age_ns, load=load, fifo_chunk=fifo_chunk)
        values = array("d")
        times, counts = window._run_times, window._run_counts
        for value, arrival_ns in items:
            if times and arrival_ns == times.last():
                counts.set_last(counts.last() + 1)
            elif times and arrival_ns < times.last():
                raise ValueError(f"arrival times decrease: {arrival_ns} after {times.last()}")
            else:
                times.append(arrival_ns)
                counts.append(1)
            values.append(value + 0.0)
        if not values:
            return window
        newest = window._now_ns = times.last()
        # Drop what the limits exclude before building the heaps, rather than inserting and
        # evicting it.
        excess = len(values) - max_count if max_count else 0
        if max_age_ns:
            expired = 0
            for arrival_ns, count in zip(times, counts, strict=True):
                if newest - arrival_ns < max_age_ns:
                    break
                expired += count
            excess = max(excess, expired)
        if excess > 0:
            window._drop_runs(excess)
            values = values[excess:]
        window._values.extend(values)
        window._heaps.update(values)
        window._moments.add(values)
        return window

    @classmethod
    def from_state(
        cls,
        state: WindowState,
        max_count: int = 0,
        max_age_ns: int = 0,
        *,
        load: int = DEFAULT_LOAD,
        fifo_chunk: int = DEFAULT_FIFO_CHUNK,
    ) -> SlidingWindow:
        """A window holding what ``state()`` returned, with the limits applied as of its newest
        arrival time (a no-op for a state taken from a window with the same limits).

        O(n) memcpy when no limit cuts anything: the FIFO is filled from ``values`` and the halves
        are slices of ``sorted_values``.  The state is trusted (a checkpoint is checksummed): only
        the counts are checked, with ValueError if they disagree; ``_check`` verifies the rest.
        The caller should ``expire(now_ns)`` before querying.
        """
        window = cls(max_count, max_age_ns, load=load, fifo_chunk=fifo_chunk)
        values = array("d")
        for chunk in state.values:
            values.extend(chunk)
        ordered = array("d")
        for chunk in state.sorted_values:
            ordered.extend(chunk)
        if len(ordered) != len(values) or sum(state.run_lengths) != len(values):
            raise ValueError(
                f"inconsistent window state: {len(values)} values, {len(ordered)} sorted values, "
                f"{sum(state.run_lengths)} in runs"
            )
        if len(state.run_times) != len(state.run_lengths):
            raise ValueError(
                f"inconsistent window state: {len(state.run_times)} run times, "
                f"{len(state.run_lengths)} run lengths"
            )
        if not values:
            return window
        window._values.extend(values)
        window._run_times.extend(state.run_times)
        window._run_counts.extend(state.run_lengths)
        window._heaps = MedianHeaps.from_sorted(ordered, load=load)
        window._moments.add(values)
        newest = window._now_ns = state.run_times[-1]
        if max_count and len(values) > max_count:
            window._evict(len(values) - max_count)
        window.expire(newest)
        return window

    def state(self) -> WindowState:
        """The contents as a ``WindowState`` of fresh copies, which later changes to the window do
        not affect.  O(n) memcpy, no per-value Python objects."""
        return WindowState(
            values=self._values.copy_chunks(),
            sorted_values=self._heaps.copy_chunks(),
            run_times=self._run_times.to_array(),
            run_lengths=self._run_counts.to_array(),
        )

    @property
    def max_count(self) -> int:
        """The count limit (0 = unlimited)."""
        return self._max_count

    @property
    def latest_ns(self) -> int:
        """The latest time seen by ``add_many``/``expire`` (0 before any); later calls must not pass
        an older time. O(1)."""
        return self._now_ns or 0

    @property
    def max_age_ns(self) -> int:
        """The age limit in nanoseconds (0 = unlimited)."""
        return self._max_age_ns

    def next_expiry_ns(self) -> int | None:
        """When the oldest live value leaves the window (``expire`` at this time removes it); None
        without an age limit or when empty. O(1)."""
        if not self._max_age_ns or not self._run_times:
            return None
        return self._run_times.first() + self._max_age_ns

    def __len__(self) -> int:
        """Number of live values. O(1)."""
        return len(self._values)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(len={len(self)}, max_count={self._max_count}, "
            f"max_age_ns={self._max_age_ns})"
        )

    def add_many(self, values: Sequence[float], now_ns: int) -> None:
        """Append ``values`` in order, all arriving at ``now_ns``, then evict the oldest values
        beyond ``max_count``, then expire by age as of ``now_ns``.

        The values must be finite (the caller validates them).  ``-0.0`` is stored as ``0.0`` so
        that a replay of the same inputs always yields the same outputs (otherwise which zero comes
        out of a query would depend on the history).  Of a batch longer than ``max_count`` only the
        last ``max_count`` values are stored at all.  Raises ValueError if ``now_ns`` is older than
        the latest time seen by ``add_many`` or ``expire``.

        O(m log n) for m values (bulk insertion), plus O(log n) per evicted or expired value.
        """
        if self._now_ns is not None and now_ns < self._now_ns:
            raise ValueError(f"time went backwards: {now_ns} < {self._now_ns}")
        self._now_ns = now_ns
        max_count = self._max_count
        n = len(values)
        if n == 1:
            # The common case of one value per call, without the batch machinery.
            value = values[0] + 0.0
            self._values.append(value)
            self._add_run(now_ns, 1)
            self._heaps.add(value)
            self._pending_in.append(value)
            if len(self._pending_in) >= _PENDING_MAX:
                self._fold()
        elif n:
            if max_count and n >= max_count:
                # The batch alone fills the window: everything older goes, so start afresh
                # instead of evicting the old values one by one.
                values = values[n - max_count :]
                self._clear()
            batch = array("d", values)
            if 0.0 in batch:  # also true for -0.0; the scan runs in C
                batch = array("d", [v + 0.0 for v in batch])
            self._values.extend(batch)
            self._add_run(now_ns, len(batch))
            self._heaps.update(batch)
            self._moments.add(batch)
        if max_count:
            excess = len(self._values) - max_count
            if excess > 0:
                self._evict(excess)
        if self._max_age_ns:
            self.expire(now_ns)

    def expire(self, now_ns: int) -> int:
        """Remove the values with ``now_ns - arrival_ns >= max_age_ns``, oldest first, and return
        how many were removed.  O(1) when nothing expires, O(log n) per removed value.

        A no-op without an age limit.  ``now_ns`` must not be older than in earlier calls; if it
        is, nothing expires.
        """
        if self._now_ns is None or now_ns > self._now_ns:
            self._now_ns = now_ns
        if not self._max_age_ns:
            return 0
        times, counts = self._run_times, self._run_counts
        cutoff = now_ns - self._max_age_ns  # expired iff arrival_ns <= cutoff
        expired = 0
        while times and times.first() <= cutoff:
            times.popleft()
            expired += counts.popleft()
        if expired:
            self._remove_oldest(expired)
        return expired

    def median(self) -> float | None:
        """The median of the live values, None when empty. O(1). See ``MedianHeaps.median``."""
        return self._heaps.median()

    def min(self) -> float | None:
        """The smallest live value, None when empty. O(1)."""
        return self._heaps.min() if len(self._values) else None

    def max(self) -> float | None:
        """The largest live value, None when empty. O(1)."""
        return self._heaps.max() if len(self._values) else None

    def mean(self) -> float | None:
        """The mean of the live values (correctly rounded from exact sums), None when empty.
        O(1) (folding at most ``_PENDING_MAX`` pending single values)."""
        self._fold()
        return self._moments.mean()

    def stddev(self) -> float | None:
        """The population standard deviation of the live values (numpy.std, ddof=0) from exact
        sums, so it never drifts however often the window turns over; None when empty. O(1)."""
        self._fold()
        return self._moments.stddev()

    def select(self, rank: int) -> float:
        """The live value at 0-based ``rank`` in ascending order. See ``SortedFloats.select``."""
        return self._heaps.select(rank)

    def quantile(self, q: float, method: str = "linear") -> float | None:
        """The exact q-quantile of the live values by numpy's ``method`` (see ``quantile_by_rank``),
        None when empty. O(log n) per rank read (see ``SortedFloats.select``)."""
        n = len(self._values)
        if not n:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"q must be in [0, 1], got {q!r}")
            return None
        return quantile_by_rank(self._heaps.select, n, q, method)

    def top_k(self, k: int) -> list[float]:
        """The ``min(k, len)`` largest live values, largest first. O(k + log n).
        Raises ValueError if ``k`` is negative."""
        return self._heaps.top_k(k)

    def bottom_k(self, k: int) -> list[float]:
        """The ``min(k, len)`` smallest live values, smallest first. O(k + log n).
        Raises ValueError if ``k`` is negative."""
        return self._heaps.bottom_k(k)

    def items(self) -> Iterator[tuple[float, int]]:
        """(value, arrival_ns) pairs, oldest first. O(1) per item.
        The window must not change during the iteration."""
        values = iter(self._values)
        for arrival_ns, count in zip(self._run_times, self._run_counts, strict=True):
            for _ in range(count):
                yield next(values), arrival_ns

    def _clear(self) -> None:
        """Forget every value and arrival time (the limits and the latest time stay)."""
        self._values = _ChunkedFifo("d", self._fifo_chunk)
        self._run_times = _ChunkedFifo("q", self._fifo_chunk)
        self._run_counts = _ChunkedFifo("q", self._fifo_chunk)
        self._heaps = MedianHeaps(load=self._load)
        self._moments.clear()
        del self._pending_in[:]
        del self._pending_out[:]

    def _add_run(self, now_ns: int, count: int) -> None:
        """Record that ``count`` values arrived at ``now_ns`` (the newest time)."""
        times, counts = self._run_times, self._run_counts
        if times and times.last() == now_ns:
            counts.set_last(counts.last() + count)
        else:
            times.append(now_ns)
            counts.append(count)

    def _evict(self, n: int) -> None:
        """Remove the ``n`` oldest values (runs included)."""
        self._drop_runs(n)
        self._remove_oldest(n)

    def _drop_runs(self, n: int) -> None:
        """Remove ``n`` values' worth of arrival times from the front of the runs."""
        times, counts = self._run_times, self._run_counts
        while n:
            count = counts.first()
            if count > n:
                counts.set_first(count - n)
                return
            n -= count
            times.popleft()
            counts.popleft()

    def _remove_oldest(self, n: int) -> None:
        """Remove the ``n`` oldest values from the FIFO and the heaps (the runs are done already)."""
        if n == 1:
            value = self._values.popleft()
            self._heaps.remove(value)
            self._pending_out.append(value)
            if len(self._pending_out) >= _PENDING_MAX:
                self._fold()
            return
        heaps = self._heaps
        gone = self._values.popleft_many(n)
        for value in gone:
            heaps.remove(value)
        self._moments.remove(gone)

    def _fold(self) -> None:
        """Fold the single values waiting in the pending lists into the exact sums."""
        if self._pending_in:
            self._moments.add(self._pending_in)
            del self._pending_in[:]
        if self._pending_out:
            self._moments.remove(self._pending_out)
            del self._pending_out[:]

    def _check(self) -> None:
        """Assert every invariant listed in the class docstring. O(n log n); for tests."""
        self._fold()
        self._moments._check(list(self._values))
        self._values._check()
        self._run_times._check()
        self._run_counts._check()
        self._heaps._check()
        times = list(self._run_times)
        counts = list(self._run_counts)
        if len(times) != len(counts):
            raise AssertionError(f"{len(times)} run times but {len(counts)} run counts")
        if any(c <= 0 for c in counts):
            raise AssertionError(f"non-positive run count in {counts}")
        if any(a >= b for a, b in pairwise(times)):
            raise AssertionError(f"run times do not strictly increase: {times}")
        values = list(self._values)
        if sum(counts) != len(values) or len(self._heaps) != len(values):
            raise AssertionError(
                f"{len(values)} values, {sum(counts)} in runs, {len(self._heaps)} in the heaps"
            )
        if any(math.copysign(1.0, v) < 0 and v == 0.0 for v in values):
            raise AssertionError("a -0.0 was stored")
        if sorted(values) != list(self._heaps):
            raise AssertionError("the FIFO and the heaps hold different values")
        if self._max_count and len(values) > self._max_count:
            raise AssertionError(f"{len(values)} values exceed max_count {self._max_count}")
        if self._max_age_ns and times:
            if self._now_ns is None:
                raise AssertionError("values are stored but no time was ever seen")
            if self._now_ns - times[0] >= self._max_age_ns:
                raise AssertionError(f"values from {times[0]} are expired at {self._now_ns}")
