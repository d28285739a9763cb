"""A sorted multiset of floats stored as raw doubles in chunks."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from itertools import accumulate, chain, repeat

__all__ = ["DEFAULT_LOAD", "SortedFloats"]

# Chosen by measurement (bench/structures_cost.py): inserting into a chunk is a bisect (about
# log2(2 * load) float comparisons) plus a memmove of up to 2 * load doubles; at 1e6 values, loads
# from 500 to 2000 cost about the same and larger loads start paying for the memmove.
DEFAULT_LOAD = 1000

# When a bulk update brings at most 1/_MERGE_RATIO of a chunk's length into that chunk, inserting
# the values one by one (bisect + memmove, both in C) beats rebuilding the chunk, which turns every
# double of the chunk into a float object and back.
_MERGE_RATIO = 16

# Below this many values a bulk update is a loop of add(): sorting and grouping cost more than they save.
_BULK_MIN = 8

# The rank index's change log holds at least this many entries before it is dropped (see _log_cap).
_LOG_MIN = 32


def _float_chunk(values: Iterable[float] = ()) -> array[float]:
    return array("d", values)


class SortedFloats:
    """A sorted multiset of floats, 8 bytes per value.

    The values live in ``_chunks``, a list of ``array('d')``; a Python float object would cost
    24 bytes plus an 8-byte list slot, this costs 8 bytes plus about 6% of array growth slack.
    ``_maxes[i]`` caches the last (largest) value of ``_chunks[i]`` so that ``bisect`` on
    ``_maxes`` finds the chunk a value belongs to without touching the chunks.

    The values must not be NaN (NaN is unordered and would break every invariant below); the
    caller guarantees it, nothing here checks it on the hot path.  Infinities keep the order
    intact, although the service only stores finite values.

    Invariants (checked by ``_check``):

    * ``len(_chunks) == len(_maxes)``; the empty multiset has no chunks at all;
    * every chunk is a non-empty ``array('d')`` sorted in non-decreasing order;
    * ``_chunks[i][-1] <= _chunks[i + 1][0]`` (the concatenation is sorted);
    * ``_maxes[i] == _chunks[i][-1]``;
    * every chunk holds at most ``2 * load`` values, and when there is more than one chunk at
      least ``load // 2``; this bounds every in-chunk memmove and keeps the chunk count at most
      ``2 * n / load + 1``;
    * ``_len`` is the total number of values;
    * the rank index: either ``_offsets``, ``_log`` and ``_sorted_log`` are all None (no index), or
      ``_offsets`` has one entry per chunk and, with ``D(k)`` the number of ``_log`` entries ``j <= k``
      minus the number of entries ``~j`` with ``j <= k``, ``_offsets[k] + D(k)`` is the number of values
      in chunks ``0..k``.  ``_offsets`` is the running totals of the chunk lengths when the index was
      built, and each entry of ``_log`` records one value added to chunk ``j`` (``j``) or removed from
      it (``~j``) since; ``len(_log) <= _log_cap``; ``_sorted_log`` is a sorted copy of a prefix of
      ``_log`` (brought up to date by the next rank read).

    The rank index costs nothing until the first ``select``. After that a single add or removal
    appends one int to ``_log``; anything that changes the list of chunks (a split, a merge, bulk
    removals) or overfills the log drops the index, and the next ``select`` rebuilds it at C speed in
    O(n / load). So a ``select`` is O(log n) (a few bisects) plus, at most once per ``_log_cap``
    changes or per chunk split/merge, that rebuild.

    Mutating the multiset while iterating over it gives unspecified results.
    """

    __slots__ = (
        "_chunks",
        "_half",
        "_len",
        "_load",
        "_log",
        "_log_cap",
        "_maxes",
        "_offsets",
        "_sorted_log",
        "_twice",
    )

    def __init__(self, values: Iterable[float] = (), *, load: int = DEFAULT_LOAD) -> None:
        """Build from ``values`` (any order) with chunks of about ``load`` values.

        O(n log n). ``load`` must be at least 2; tests use tiny loads to exercise splits and merges.
        """
        if load < 2:
            raise ValueError(f"load must be at least 2, got {load}")
        self._load = load
        self._half = load // 2
        self._twice = 2 * load
        self._chunks: list[array[float]] = []
        self._maxes: list[float] = []
        self._len = 0
        self._offsets: list[int] | None = None
        self._log: list[int] | None = None
        self._sorted_log: list[int] | None = None
        self._log_cap = _LOG_MIN
        self.update(values)

    @classmethod
    def from_sorted(cls, values: array[float], *, load: int = DEFAULT_LOAD) -> SortedFloats:
        """Build from ``values`` that are already in ascending order, without sorting or creating
        float objects: O(n) memcpy.  The order is trusted, not checked (``_check`` would catch it)."""
        sf = cls(load=load)
        if values:
            sf._chunks = sf._cut(values)
            sf._maxes = [c[-1] for c in sf._chunks]
            sf._len = len(values)
        return sf

    def __len__(self) -> int:
        """Number of values, counting duplicates. O(1)."""
        return self._len

    def __iter__(self) -> Iterator[float]:
        """Iterate in ascending order. O(1) per value."""
        return chain.from_iterable(self._chunks)

    def __repr__(self) -> str:
        if not self._len:
            return f"{type(self).__name__}(len=0)"
        return f"{type(self).__name__}(len={self._len}, min={self.min()!r}, max={self.max()!r})"

    @property
    def load(self) -> int:
        """The target chunk length."""
        return self._load

    def copy_chunks(self) -> list[array[float]]:
        """The values in ascending order, as copies of the internal chunks (concatenate them).
        O(n) memcpy, no float objects."""
        return [chunk[:] for chunk in self._chunks]

    def add(self, value: float) -> None:
        """Insert one value. O(log n) amortised: a bisect on the chunk maxima, one in the chunk,
        and a memmove of at most ``2 * load`` doubles."""
        maxes = self._maxes
        if not maxes:
            self._chunks.append(_float_chunk((value,)))
            maxes.append(self._chunks[0][-1])
            self._len = 1
            self._offsets = self._log = self._sorted_log = None
            return
        i = bisect_left(maxes, value)
        if i == len(maxes):
            i -= 1
            chunk = self._chunks[i]
            chunk.append(value)
            maxes[i] = chunk[-1]
        else:
            chunk = self._chunks[i]
            chunk.insert(bisect_right(chunk, value), value)
        self._len += 1
        log = self._log
        if log is not None:  # the rank index is in use: record the change (see the class docstring)
            log.append(i)
            if len(log) > self._log_cap:
                self._offsets = self._log = self._sorted_log = None
        if len(chunk) > self._twice:
            self._split(i)

    def update(self, values: Iterable[float]) -> None:
        """Insert many values (any order).

        O(m log m) to sort the m new values, then each chunk that receives values is either
        rebuilt by a merge (O(load + its share)) or, if it receives only a few, gets them by
        bisect-and-insert; chunks that receive nothing are not touched.  Filling an empty multiset
        is one sort and one slicing pass.
        """
        batch = sorted(values)
        n = len(batch)
        if n < _BULK_MIN:
            for v in batch:
                self.add(v)
            return
        chunks = self._chunks
        if not chunks:
            self._chunks = self._cut(batch)
            self._maxes = [c[-1] for c in self._chunks]
            self._len = n
            self._offsets = self._log = self._sorted_log = None
            return
        maxes = self._maxes
        last = len(chunks) - 1
        log = self._log
        if log is not None and len(log) + n > self._log_cap:
            self._offsets = self._log = self._sorted_log = log = None
        # Splits are applied after the loop so that the indices of _maxes stay valid during it.
        splits: list[tuple[int, list[array[float]]]] = []
        pos = 0
        while pos < n:
            # Same placement rule as add(): the first chunk whose max is >= the value, else the last.
            i = bisect_left(maxes, batch[pos], 0, last)
            end = n if i == last else bisect_right(batch, maxes[i], pos)
            chunk = chunks[i]
            if (end - pos) * _MERGE_RATIO <= len(chunk):
                for k in range(pos, end):
                    v = batch[k]
                    chunk.insert(bisect_right(chunk, v), v)
            else:
                merged = chunk.tolist()
                merged += batch[pos:end]
                merged.sort()  # two sorted runs: timsort merges them in linear time
                chunk = chunks[i] = _float_chunk(merged)
            maxes[i] = chunk[-1]
            if len(chunk) > self._twice:
                splits.append((i, self._cut(chunk)))
            if log is not None:
                log.extend(repeat(i, end - pos))
            pos = end
        for i, pieces in reversed(splits):
            chunks[i : i + 1] = pieces
            maxes[i : i + 1] = [c[-1] for c in pieces]
        self._len += n
        if splits:
            self._offsets = self._log = self._sorted_log = None

    def remove(self, value: float) -> None:
        """Remove one value equal to ``value``; raise ValueError if there is none.

        O(log n) amortised.  ``0.0`` and ``-0.0`` are equal, so either may be removed for the other.
        """
        maxes = self._maxes
        i = bisect_left(maxes, value)
        if i == len(maxes):
            raise ValueError(f"{value!r} is not in the multiset")
        chunk = self._chunks[i]
        j = bisect_left(chunk, value)
        # j < len(chunk) because chunk[-1] == maxes[i] >= value.
        if chunk[j] != value:
            raise ValueError(f"{value!r} is not in the multiset")
        del chunk[j]
        self._len -= 1
        log = self._log
        if log is not None:
            log.append(~i)
            if len(log) > self._log_cap:
                self._offsets = self._log = self._sorted_log = None
        if len(chunk) >= self._half:  # the usual case, inlined: _repair is a call
            maxes[i] = chunk[-1]
        else:
            self._repair(i)

    def min(self) -> float:
        """The smallest value. O(1). Raises ValueError when empty (like the builtin ``min``)."""
        if not self._len:
            raise ValueError("min() of an empty SortedFloats")
        return self._chunks[0][0]

    def max(self) -> float:
        """The largest value. O(1). Raises ValueError when empty (like the builtin ``max``)."""
        if not self._len:
            raise ValueError("max() of an empty SortedFloats")
        return self._maxes[-1]

    def pop_min(self) -> float:
        """Remove and return the smallest value. O(load) memmove, O(1) otherwise.
        Raises IndexError when empty (like ``list.pop``)."""
        if not self._len:
            raise IndexError("pop_min() from an empty SortedFloats")
        chunk = self._chunks[0]
        value = chunk[0]
        del chunk[0]
        self._len -= 1
        log = self._log
        if log is not None:
            log.append(-1)  # ~0: one value left chunk 0
            if len(log) > self._log_cap:
                self._offsets = self._log = self._sorted_log = None
        if len(chunk) < self._half:  # otherwise the chunk and its max are still fine
            self._repair(0)
        return value

    def pop_max(self) -> float:
        """Remove and return the largest value. O(1) amortised.
        Raises IndexError when empty (like ``list.pop``)."""
        if not self._len:
            raise IndexError("pop_max() from an empty SortedFloats")
        chunk = self._chunks[-1]
        value = chunk.pop()
        self._len -= 1
        log = self._log
        if log is not None:
            log.append(-len(self._chunks))  # ~(index of the last chunk)
            if len(log) > self._log_cap:
                self._offsets = self._log = self._sorted_log = None
        if len(chunk) >= self._half:
            self._maxes[-1] = chunk[-1]
        else:
            self._repair(len(self._chunks) - 1)
        return value

    def select(self, rank: int) -> float:
        """The value at 0-based ``rank`` in ascending order (``rank`` from 0 to ``len - 1``).

        O(log n): a bisect on the chunk offsets, corrected by the logged changes since the index was
        built (see the class docstring). The first call after a change of the chunk list rebuilds the
        index at C speed in O(n / load) (~10 µs per 1e6 values). Raises IndexError outside 0..len-1.
        """
        if not 0 <= rank < self._len:
            raise IndexError(f"rank {rank} outside 0..{self._len - 1}")
        offsets = self._offsets
        if offsets is None:
            offsets = self._build_index()
        if not self._log:
            i = bisect_right(offsets, rank)
            return self._chunks[i][rank - offsets[i - 1] if i else rank]
        i, before = self._locate(rank, offsets)
        return self._chunks[i][rank - before]

    def _build_index(self) -> list[int]:
        """Build the rank index from the chunk lengths (C speed, O(n / load)) and return its offsets."""
        offsets = self._offsets = list(accumulate(map(len, self._chunks)))
        self._log = []
        self._sorted_log = []
        # The log may hold this many changes: a select scans at most about 2 * cap / (load / 2) + 2
        # chunks (the offsets grow by at least load // 2 per chunk), and replaying the log is never
        # dearer than a rebuild.
        self._log_cap = max(_LOG_MIN, min(len(offsets) // 4, 4 * self._half))
        return offsets

    def _locate(self, rank: int, offsets: list[int]) -> tuple[int, int]:
        """(chunk index, number of values before that chunk) for ``rank``, with a non-empty log.

        With ``D(k)`` the net logged change of chunks ``0..k``, the true running total is
        ``T(k) = offsets[k] + D(k)``, and ``offsets[k] - removed <= T(k) <= offsets[k] + added``; so the
        chunk holding ``rank`` (the first k with ``T(k) > rank``) is at or after the first k with
        ``offsets[k] > rank - added`` and at or before the first k with ``offsets[k] > rank + removed``:
        usually the same chunk, at most ``(added + removed) / (load // 2) + 1`` apart. ``D(k)`` is two
        bisects on the sorted log: entries ``~j`` (removals) are negative and sort first.
        """
        log, ordered = self._log, self._sorted_log
        assert log is not None and ordered is not None
        if len(ordered) < len(log):
            fresh = log[len(ordered) :]
            if len(fresh) <= 8:
                for entry in fresh:
                    insort(ordered, entry)
            else:
                ordered += fresh
                ordered.sort()  # timsort merges the sorted run with the new tail
        removed = bisect_left(ordered, 0)
        twice = removed + removed
        # T(k) = offsets[k] + bisect_right(ordered, k, removed) + bisect_left(ordered, ~k, 0, removed) - twice
        k = bisect_right(offsets, rank - (len(ordered) - removed))
        # T(last) > rank: offsets[last] > rank + removed, or last is the last chunk (T = len > rank).
        last = min(bisect_right(offsets, rank + removed, k), len(offsets) - 1)
        while k < last and (
            offsets[k] + bisect_right(ordered, k, removed) + bisect_left(ordered, ~k, 0, removed) - twice
            <= rank
        ):
            k += 1
        if not k:
            return 0, 0
        j = k - 1
        before = offsets[j] + bisect_right(ordered, j, removed) + bisect_left(ordered, ~j, 0, removed)
        return k, before - twice

    def smallest(self, k: int) -> list[float]:
        """The ``min(k, len)`` smallest values, ascending. O(k) (only the chunks holding them are
        read). Raises ValueError if ``k`` is negative."""
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        out: list[float] = []
        for chunk in self._chunks:
            need = k - len(out)
            if need <= 0:
                break
            out.extend(chunk[:need])
        return out

    def largest(self, k: int) -> list[float]:
        """The ``min(k, len)`` largest values, descending. O(k) (only the chunks holding them are
        read). Raises ValueError if ``k`` is negative."""
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        out: list[float] = []
        for chunk in reversed(self._chunks):
            need = k - len(out)
            if need <= 0:
                break
            out.extend(reversed(chunk[-need:]))
        return out

    def pop_smallest(self, k: int) -> list[float]:
        """Remove and return the ``min(k, len)`` smallest values, ascending.

        O(k + n / load): whole chunks are dropped without looking at their values one by one.
        Raises ValueError if ``k`` is negative."""
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        k = min(k, self._len)
        chunks = self._chunks
        out: list[float] = []
        whole = 0
        while whole < len(chunks) and len(out) + len(chunks[whole]) <= k:
            out.extend(chunks[whole])
            whole += 1
        del chunks[:whole]
        del self._maxes[:whole]
        self._len -= k
        self._offsets = self._log = self._sorted_log = None
        need = k - len(out)
        if need:
            chunk = chunks[0]
            out.extend(chunk[:need])
            del chunk[:need]
            self._repair(0)
        return out

    def pop_largest(self, k: int) -> list[float]:
        """Remove and return the ``min(k, len)`` largest values, descending.

        O(k): whole chunks are dropped from the end without looking at their values one by one.
        Raises ValueError if ``k`` is negative."""
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        k = min(k, self._len)
        chunks = self._chunks
        out: list[float] = []
        while chunks and len(out) + len(chunks[-1]) <= k:
            out.extend(reversed(chunks.pop()))
            self._maxes.pop()
        self._len -= k
        self._offsets = self._log = self._sorted_log = None
        need = k - len(out)
        if need:
            chunk = chunks[-1]
            out.extend(reversed(chunk[-need:]))
            del chunk[-need:]
            self._repair(len(chunks) - 1)
        return out

    def _cut(self, values: list[float] | array[float]) -> list[array[float]]:
        """Cut sorted ``values`` (at least one) into chunks of ``load`` to ``2 * load`` values,
        or a single chunk if there are at most ``2 * load``."""
        n = len(values)
        pieces = max(1, n // self._load)
        size, extra = divmod(n, pieces)
        out: list[array[float]] = []
        start = 0
        for p in range(pieces):
            stop = start + size + (p < extra)
            out.append(_float_chunk(values[start:stop]))
            start = stop
        return out

    def _split(self, i: int) -> None:
        """Split the overfull chunk ``i`` in two halves (each at least ``load``)."""
        chunk = self._chunks[i]
        right = chunk[len(chunk) // 2 :]
        del chunk[len(chunk) // 2 :]
        self._offsets = self._log = self._sorted_log = None  # the chunk list changes
        self._chunks.insert(i + 1, right)
        self._maxes[i] = chunk[-1]
        self._maxes.insert(i + 1, right[-1])

    def _repair(self, i: int) -> None:
        """Restore the invariants after values were removed from chunk ``i``."""
        chunks, maxes = self._chunks, self._maxes
        chunk = chunks[i]
        if len(chunk) >= self._half or len(chunks) == 1:
            if chunk:
                maxes[i] = chunk[-1]
            else:
                # Only reachable with a single chunk (the lower bound is at least 1): now empty.
                del chunks[i]
                del maxes[i]
                self._offsets = self._log = self._sorted_log = None
            return
        # Underfull: merge with a neighbour (which holds at least load // 2 values, so the result
        # does too), and split again if that overfills it.
        self._offsets = self._log = self._sorted_log = None  # the chunk list (or a boundary) changes
        j = i - 1 if i else i
        left = chunks[j]
        left.extend(chunks[j + 1])
        if len(left) > self._twice:
            right = left[len(left) // 2 :]
            del left[len(left) // 2 :]
            chunks[j + 1] = right
            maxes[j + 1] = right[-1]
        else:
            del chunks[j + 1]
            del maxes[j + 1]
        maxes[j] = left[-1]

    def _check(self) -> None:
        """Assert every invariant listed in the class docstring. O(n); for tests."""
        chunks, maxes = self._chunks, self._maxes
        if self._load < 2 or self._half != self._load // 2 or self._twice != 2 * self._load:
            raise AssertionError(f"bad load parameters {self._load}, {self._half}, {self._twice}")
        if len(chunks) != len(maxes):
            raise AssertionError(f"{len(chunks)} chunks but {len(maxes)} maxes")
        total = 0
        previous = -math.inf
        for i, chunk in enumerate(chunks):
            if not isinstance(chunk, array) or chunk.typecode != "d":
                raise AssertionError(f"chunk {i} is not an array('d'): {type(chunk)!r}")
            if not chunk:
                raise AssertionError(f"chunk {i} is empty")
            if len(chunk) > self._twice:
                raise AssertionError(f"chunk {i} has {len(chunk)} > 2 * load values")
            if len(chunks) > 1 and len(chunk) < self._half:
                raise AssertionError(f"chunk {i} has {len(chunk)} < load // 2 values")
            for v in chunk:
                if math.isnan(v):
                    raise AssertionError(f"chunk {i} holds NaN")
                if v < previous:
                    raise AssertionError(f"chunk {i} is out of order: {v!r} after {previous!r}")
                previous = v
            if maxes[i] != chunk[-1]:
                raise AssertionError(f"maxes[{i}] = {maxes[i]!r} but the chunk ends with {chunk[-1]!r}")
            total += len(chunk)
        if total != self._len:
            raise AssertionError(f"_len is {self._len} but the chunks hold {total} values")
        self._check_index()

    def _check_index(self) -> None:
        offsets, log, ordered = self._offsets, self._log, self._sorted_log
        if offsets is None:
            if log is not None or ordered is not None:
                raise AssertionError("a rank-index log without offsets")
            return
        if log is None or ordered is None:
            raise AssertionError("rank-index offsets without a log")
        if len(offsets) != len(self._chunks):
            raise AssertionError(f"{len(offsets)} offsets for {len(self._chunks)} chunks")
        if len(log) > self._log_cap:
            raise AssertionError(f"log of {len(log)} entries over its cap {self._log_cap}")
        if ordered != sorted(log[: len(ordered)]):
            raise AssertionError("the sorted log is not a sorted prefix of the log")
        net = [0] * len(offsets)
        for entry in log:
            if entry >= 0:
                net[entry] += 1
            else:
                net[~entry] -= 1
        expected = list(accumulate(map(len, self._chunks)))
        if [o + d for o, d in zip(offsets, accumulate(net), strict=True)] != expected:
            raise AssertionError(f"rank index {offsets} + log {log} disagrees with the chunks {expected}")
