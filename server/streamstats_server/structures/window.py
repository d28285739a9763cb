"""The live values of one stream: a FIFO in arrival order beside a MedianHeaps of the same values."""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Generic, TypeVar

from streamstats_server.structures.exact_moments import ExactMoments, exact_sums, exact_sums_slowly
from streamstats_server.structures.median_heaps import MedianHeaps
from streamstats_server.structures.quantiles import QUANTILE_METHODS, quantile_by_rank
from streamstats_server.structures.sorted_floats import DEFAULT_LOAD

__all__ = ["DEFAULT_FIFO_CHUNK", "QUANTILE_METHODS", "SlidingWindow", "WindowState", "quantile_by_rank"]

# The exact sums of the live values are brought up to date by a read (mean, stddev), or once this many
# values have been added since the last time: so a read converts at most this many new values (plus half
# a FIFO chunk of evicted ones), ~7 ms at ~0.2 µs per value, and a window smaller than this whose mean
# nobody reads never converts a value at all.
_UNSEEN_MAX = 32768


# 4096 doubles = 32 KiB per chunk: the per-chunk overhead (an array header and a deque slot) is
# negligible, and the unused tail of the newest chunk is bounded.
DEFAULT_FIFO_CHUNK = 4096

_N = TypeVar("_N", int, float)


class _ChunkedFifo(Generic[_N]):
    """A FIFO of numbers stored raw in fixed-size ``array`` chunks, which can also keep the exact Σx
    and Σx² of its live items, brought up to date lazily by ``sync`` (for doubles: the window's values).

    ``_sums[j] = [lo, hi, total, squares]`` holds the ``exact_sums`` of ``_chunks[j][lo:hi]`` for each
    of the first ``len(_sums)`` chunks, and ``_moments`` their totals; both are None until the first
    ``sync`` (so a FIFO never synced, like the window's arrival times, carries nothing). Appending
    converts nothing; ``sync`` converts every live item not yet summed and takes the popped items of the
    first chunk back out, after which ``_moments`` holds exactly the sums of the live items. A chunk that
    is popped entirely takes its sums out in O(1). So each item is converted once if it is still live at
    a sync (~0.2 µs), and at most once more if it is popped from a partly popped first chunk; items
    appended and popped between two syncs are never converted. Memory: one small list per chunk.

    (One class rather than a summing subclass: the window calls these methods on its values and on its
    arrival times, and on CPython a call site that sees two classes misses its attribute caches, which
    cost ~0.5 µs per single add.)

    Invariants (checked by ``_check``):

    * every chunk is non-empty; every chunk but the last holds exactly ``chunk_size`` items, the
      last at most ``chunk_size`` (new items go at its end);
    * ``0 <= _head < len(_chunks[0])``: the items of the first chunk before ``_head`` are already
      popped (a chunk is dropped as soon as it is fully popped, so no chunk is ever all dead);
    * ``_head == 0`` when there are no chunks;
    * ``_len`` is the number of live items;
    * ``_sums`` and ``_moments`` are both None or both set; ``len(_sums) <= len(_chunks)``; each entry
      holds the exact sums of ``chunk[lo:hi]`` with ``0 <= lo <= hi <= len(chunk)``; ``lo == 0``
      except in the first chunk, where ``lo <= _head``; every entry but the last has
      ``hi == len(chunk)``; ``_moments`` is the total of the entries (its count: the total of ``hi - lo``).
    """

    __slots__ = ("_chunk_size", "_chunks", "_head", "_len", "_moments", "_sums", "_typecode")

    def __init__(self, typecode: str, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self._typecode = typecode
        self._chunk_size = chunk_size
        self._chunks: deque[array[_N]] = deque()
        self._head = 0
        self._len = 0
        self._sums: deque[list[int]] | None = None
        self._moments: ExactMoments | None = None

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
            self._drop_first()
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
                self._drop_first()
        return out

    def _drop_first(self) -> None:
        """Drop the first chunk, all of whose items have been popped (and its sums, if any)."""
        self._chunks.popleft()
        self._head = 0
        if self._sums:
            lo, hi, total, squares = self._sums.popleft()
            assert self._moments is not None
            self._moments.add_sums(lo - hi, -total, -squares)

    def sync(self) -> ExactMoments:
        """Bring the exact sums up to date and return them: the sums of the live items. O(items appended
        since the last sync that are still live + at most half a chunk of popped ones) conversions, O(1)
        if none."""
        chunks, sums, moments = self._chunks, self._sums, self._moments
        if sums is None or moments is None:
            sums = self._sums = deque()
            moments = self._moments = ExactMoments()
        if sums:
            first = sums[0]
            lo, hi = first[0], first[1]
            head = self._head
            if lo < head:
                # Take the popped items out of the first chunk's sums, or sum its live part afresh if
                # that is shorter: either way at most half a chunk.
                cut = min(head, hi)
                if cut - lo <= hi - cut:
                    total, squares = exact_sums(chunks[0][lo:cut])
                    total, squares = first[2] - total, first[3] - squares
                else:
                    total, squares = exact_sums(chunks[0][cut:hi])
                moments.add_sums(lo - cut, total - first[2], squares - first[3])
                sums[0] = [head, max(hi, head), total, squares]
        for j in range(max(0, len(sums) - 1), len(chunks)):
            chunk = chunks[j]
            if j < len(sums):
                entry = sums[j]
            else:
                start = self._head if j == 0 else 0
                entry = [start, start, 0, 0]
                sums.append(entry)
            hi = entry[1]
            if hi < len(chunk):
                total, squares = exact_sums(chunk[hi:])
                entry[1] = len(chunk)
                entry[2] += total
                entry[3] += squares
                moments.add_sums(len(chunk) - hi, total, squares)
        return moments

    def unsummed(self) -> int:
        """How many live items are not in the sums (the newest ones). O(1)."""
        sums, moments = self._sums, self._moments
        if not sums or moments is None:
            return self._len
        lo, hi = sums[0][0], sums[0][1]
        popped = max(0, min(self._head, hi) - lo)  # popped from the first chunk but still summed
        return self._len - (moments.count - popped)

    def _check(self) -> None:
        chunks = self._chunks
        self._check_sums()
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

    def _check_sums(self) -> None:
        sums, moments, chunks = self._sums, self._moments, self._chunks
        if sums is None or moments is None:
            if sums is not None or moments is not None:
                raise AssertionError("sum entries without moments, or moments without entries")
            return
        if len(sums) > len(chunks):
            raise AssertionError(f"{len(sums)} sum entries for {len(chunks)} chunks")
        count = total = squares = 0
        for j, (entry, chunk) in enumerate(zip(sums, chunks, strict=False)):  # sums cover a prefix
            lo, hi, t, q = entry
            if not 0 <= lo <= hi <= len(chunk):
                raise AssertionError(f"sum entry {j} covers [{lo}, {hi}) of a chunk of {len(chunk)}")
            if (j and lo) or (not j and lo > self._head):
                raise AssertionError(f"sum entry {j} starts at {lo} (head {self._head})")
            if j < len(sums) - 1 and hi != len(chunk):
                raise AssertionError(f"sum entry {j} stops at {hi} of {len(chunk)} but is not the last")
            if (t, q) != exact_sums_slowly(chunk[lo:hi]):
                raise AssertionError(f"sum entry {j} does not hold the exact sums of chunk[{lo}:{hi}]")
            count += hi - lo
            total += t
            squares += q
        if (moments.count, moments._sum, moments._squares) != (count, total, squares):
            raise AssertionError(f"moments cover {moments.count} items, the entries {count}, or sums differ")


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
    * the FIFO's exact sums lack at most ``_unseen <= _UNSEEN_MAX`` live values (the newest), so a
      ``mean``/``stddev`` converts at most that many (see ``_ChunkedFifo``);
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
        "_now_ns",
        "_run_counts",
        "_run_times",
        "_unseen",
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
        self._unseen = 0  # values added since the exact sums were last brought up to date

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
        window._saw(len(values))
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
        are slices of ``sorted_values``. The exact sums are rebuilt from the live values (O(n)
        conversions, ~0.2 µs each) when there are more than ``_UNSEEN_MAX``, else by the first read.
        The state is trusted (a checkpoint is checksummed): only the counts are checked, with
        ValueError if they disagree; ``_check`` verifies the rest. The caller should ``expire(now_ns)``
        before querying.
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
        newest = window._now_ns = state.run_times[-1]
        if max_count and len(values) > max_count:
            window._evict(len(values) - max_count)
        window.expire(newest)
        window._saw(len(window))
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

        O(m log n) for m values (bulk insertion), plus O(log n) per evicted or expired value. The
        exact sums for ``mean``/``stddev`` are not updated here but by the next read, or here once
        ``_UNSEEN_MAX`` values have gone unread (then ~0.2 µs per value still live).
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
            self._unseen += 1
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
            self._unseen += len(batch)
        if max_count:
            excess = len(self._values) - max_count
            if excess > 0:
                self._evict(excess)
        if self._max_age_ns:
            self.expire(now_ns)
        if self._unseen > _UNSEEN_MAX:
            self._sync()

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
        """The mean of the live values, correctly rounded from their exact sum; None when empty.

        O(1) bigint arithmetic, after converting the live values added since the last read (at most
        ``_UNSEEN_MAX``) and the popped values of the FIFO's first chunk (see ``_ChunkedFifo``).
        """
        return self._sync().mean()

    def stddev(self) -> float | None:
        """The population standard deviation of the live values (numpy.std, ddof=0), from exact sums:
        the exact variance rounded once, then its square root; it never drifts however often the
        window turns over, and it is finite and right when intermediate float sums would overflow
        (values near ±1.8e308). None when empty. Cost as for ``mean``."""
        return self._sync().stddev()

    def select(self, rank: int) -> float:
        """The live value at 0-based ``rank`` in ascending order. See ``SortedFloats.select``."""
        return self._heaps.select(rank)

    def quantile(self, q: float, method: str = "linear") -> float | None:
        """The exact q-quantile of the live values, bit-identical to ``numpy.quantile(values, q,
        method=method)`` (see ``quantile_by_rank``); None when empty. Two O(log n) rank reads.
        Raises ValueError for q outside [0, 1] (or NaN) or an unknown method, even when empty."""
        return self._heaps.quantile(q, method)

    def quantiles(self, qs: Sequence[float], method: str = "linear") -> list[float] | None:
        """``quantile(q, method)`` for each q in ``qs``, in order; None when empty. O(len(qs) log n).
        Raises ValueError as ``quantile`` does, before reading anything."""
        return self._heaps.quantiles(qs, method)

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
        self._run_times = _ChunkedFifo("q", self._fifo_chunk)
        self._run_counts = _ChunkedFifo("q", self._fifo_chunk)
        self._heaps = MedianHeaps(load=self._load)
        self._values = _ChunkedFifo("d", self._fifo_chunk)
        self._unseen = 0

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
            self._heaps.remove(self._values.popleft())
            return
        heaps = self._heaps
        for value in self._values.popleft_many(n):
            heaps.remove(value)

    def _saw(self, n: int) -> None:
        """Count ``n`` values added without their sums; sync when too many have gone unseen."""
        self._unseen += n
        if self._unseen > _UNSEEN_MAX:
            self._sync()

    def _sync(self) -> ExactMoments:
        """Bring the exact sums up to date with the live values and return them (see
        ``_ChunkedFifo.sync``)."""
        self._unseen = 0
        return self._values.sync()

    def _check(self) -> None:
        """Assert every invariant listed in the class docstring. O(n log n); for tests. Does not
        change anything (in particular it does not sync the sums)."""
        self._values._check()
        if not self._values.unsummed() <= self._unseen <= _UNSEEN_MAX:
            raise AssertionError(
                f"{self._values.unsummed()} live values unsummed, {self._unseen} counted as unseen"
            )
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
