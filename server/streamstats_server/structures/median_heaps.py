"""The running median of a multiset of floats, by the two-heap algorithm."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

from streamstats_server.structures.quantiles import check_quantile_args, quantile_by_rank
from streamstats_server.structures.sorted_floats import DEFAULT_LOAD, SortedFloats

__all__ = ["MedianHeaps"]


class MedianHeaps:
    """A multiset of floats split in two halves so that the median is always at hand.

    ``_lower`` holds the smaller half and is used as a max-heap (its top is ``_lower.max()``),
    ``_upper`` holds the larger half and is used as a min-heap (its top is ``_upper.min()``).
    Each half is a ``SortedFloats`` rather than a binary heap because a sliding window must delete
    arbitrary values and top-k must read values in order, which a heap cannot do by itself.

    Values must not be NaN (see ``SortedFloats``).

    Invariants (checked by ``_check``), restored after every insertion and every removal:

    * ``len(_lower) - len(_upper)`` is 0 or 1, so the median is ``_lower.max()`` for an odd count
      and the mean of ``_lower.max()`` and ``_upper.min()`` for an even count;
    * when both are non-empty, ``_lower.max() <= _upper.min()``;
    * both halves satisfy their own invariants.
    """

    __slots__ = ("_lower", "_upper")

    # The hot paths (add, remove, median) read the halves' _len, _maxes and _chunks directly: the
    # equivalent public calls (len(), max(), min()) are Python-level calls that cost as much as the
    # rest of the operation.  Those attributes are part of SortedFloats' documented invariants.

    def __init__(self, values: Iterable[float] = (), *, load: int = DEFAULT_LOAD) -> None:
        """Build from ``values`` (any order). O(n log n). ``load`` is passed to both halves."""
        self._lower = SortedFloats(load=load)
        self._upper = SortedFloats(load=load)
        self.update(values)

    @classmethod
    def from_sorted(cls, values: array[float], *, load: int = DEFAULT_LOAD) -> MedianHeaps:
        """Build from ``values`` that are already in ascending order: the halves are slices.
        O(n) memcpy.  The order is trusted, not checked (``_check`` would catch it)."""
        mh = cls(load=load)
        cut = (len(values) + 1) // 2
        mh._lower = SortedFloats.from_sorted(values[:cut], load=load)
        mh._upper = SortedFloats.from_sorted(values[cut:], load=load)
        return mh

    def __len__(self) -> int:
        """Number of values, counting duplicates. O(1)."""
        return len(self._lower) + len(self._upper)

    def copy_chunks(self) -> list[array[float]]:
        """All values in ascending order, as copies of the halves' chunks (concatenate them).
        O(n) memcpy, no float objects."""
        return self._lower.copy_chunks() + self._upper.copy_chunks()

    def __iter__(self) -> Iterator[float]:
        """Iterate in ascending order. O(1) per value."""
        return chain(self._lower, self._upper)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, median={self.median()!r})"

    def add(self, value: float) -> None:
        """Insert one value. O(log n) amortised.

        Decides up front which value ends in which half, so that at most one value crosses over
        and no separate rebalancing pass is needed.
        """
        # _len is read directly: SortedFloats.__len__ is a Python-level call on the hottest path.
        lower, upper = self._lower, self._upper
        if lower._len > upper._len:
            # The new value must end up in the upper half: it goes there itself, or pushes up
            # the lower maximum if it is smaller.
            if value >= lower._maxes[-1]:
                upper.add(value)
            else:
                upper.add(lower.pop_max())
                lower.add(value)
        elif not upper._len or value <= upper._chunks[0][0]:
            lower.add(value)
        else:
            # The new value belongs high but the lower half must grow: the upper minimum moves down.
            lower.add(upper.pop_min())
            upper.add(value)

    def update(self, values: Iterable[float]) -> None:
        """Insert many values (any order).

        O(m log m + the cost of ``SortedFloats.update`` on each half): the batch is sorted once,
        cut at the current lower maximum, each part is bulk-inserted into its half, and the halves
        are then evened out by moving a run of values across in one bulk pop and one bulk update.
        """
        batch = sorted(values)
        if not batch:
            return
        lower = self._lower
        # An empty lower half means both are empty: cut the sorted batch in the middle.
        cut = bisect_right(batch, lower.max()) if lower else (len(batch) + 1) // 2
        lower.update(batch[:cut])
        self._upper.update(batch[cut:])
        self._rebalance()

    def remove(self, value: float) -> None:
        """Remove one value equal to ``value``; raise ValueError if there is none. O(log n) amortised.

        A value below ``_lower.max()`` can only be in the lower half, and a value equal to it is in
        the lower half for sure (it is that maximum), so duplicates of the boundary are always
        found; anything larger can only be in the upper half.
        """
        lower, upper = self._lower, self._upper
        if lower._len and value <= lower._maxes[-1]:
            lower.remove(value)
            if lower._len < upper._len:
                lower.add(upper.pop_min())
        else:
            upper.remove(value)
            if lower._len > upper._len + 1:
                upper.add(lower.pop_max())

    def median(self) -> float | None:
        """The median, or None when empty. O(1).

        For an even count it is the mean of the two middle values, correctly rounded: ``(a + b) / 2``
        rounds once (the sum is exact whenever halving it could round), and when the sum overflows
        both values are large enough for ``a / 2`` and ``b / 2`` to be exact.
        """
        lower, upper = self._lower, self._upper
        if lower._len > upper._len:
            return lower._maxes[-1]
        if not lower._len:
            return None
        a = lower._maxes[-1]
        b = upper._chunks[0][0]
        m = (a + b) / 2
        if math.isinf(m):
            m = a / 2 + b / 2
        return m

    def select(self, rank: int) -> float:
        """The value at 0-based ``rank`` in ascending order: in the lower half for the first
        ``len(lower)`` ranks, else in the upper one. O(log n) (see ``SortedFloats.select``).
        Raises IndexError outside 0..len-1."""
        below = self._lower._len
        if 0 <= rank < below:
            return self._lower.select(rank)
        if rank < 0:
            raise IndexError(f"rank {rank} outside 0..{len(self) - 1}")
        return self._upper.select(rank - below)

    def quantile(self, q: float, method: str = "linear") -> float | None:
        """The exact q-quantile, bit-identical to ``numpy.quantile(values, q, method=method)`` for
        method linear, lower, higher or nearest (see ``quantile_by_rank``); None when empty.
        At most two O(log n) rank reads. Raises ValueError for q outside [0, 1] (or NaN) or an unknown
        method, also when empty."""
        n = len(self)
        if not n:
            check_quantile_args((q,), method)
            return None
        return quantile_by_rank(self.select, n, q, method)  # which checks q and method itself

    def quantiles(self, qs: Sequence[float], method: str = "linear") -> list[float] | None:
        """``quantile(q, method)`` for each q in ``qs``, in order; None when empty. O(len(qs) log n).
        Raises ValueError as ``quantile`` does, before reading anything."""
        check_quantile_args(qs, method)
        n = len(self)
        if not n:
            return None
        select = self.select
        return [quantile_by_rank(select, n, q, method) for q in qs]

    def min(self) -> float:
        """The smallest value. O(1). Raises ValueError when empty."""
        return self._lower.min()

    def max(self) -> float:
        """The largest value. O(1). Raises ValueError when empty."""
        return self._upper.max() if self._upper._len else self._lower.max()

    def top_k(self, k: int) -> list[float]:
        """The ``min(k, len)`` largest values, largest first. O(k + log n).
        Raises ValueError if ``k`` is negative."""
        out = self._upper.largest(k)
        if len(out) < k:
            out.extend(self._lower.largest(k - len(out)))
        return out

    def bottom_k(self, k: int) -> list[float]:
        """The ``min(k, len)`` smallest values, smallest first. O(k + log n).
        Raises ValueError if ``k`` is negative."""
        out = self._lower.smallest(k)
        if len(out) < k:
            out.extend(self._upper.smallest(k - len(out)))
        return out

    def _rebalance(self) -> None:
        """Even out the halves after a bulk update: afterwards the lower one holds ``ceil(n / 2)``
        values.  (``add`` and ``remove`` rebalance inline: at most one value moves there.)

        Moving the largest lower values up (or the smallest upper values down) keeps
        ``max(lower) <= min(upper)``.  A single value moves by pop/add, a run by a bulk pop and a
        bulk update.
        """
        lower, upper = self._lower, self._upper
        excess = len(lower) - len(upper)
        if excess > 1:
            moves = excess // 2
            if moves == 1:
                upper.add(lower.pop_max())
            else:
                upper.update(lower.pop_largest(moves))
        elif excess < 0:
            moves = (1 - excess) // 2
            if moves == 1:
                lower.add(upper.pop_min())
            else:
                lower.update(upper.pop_smallest(moves))

    def _check(self) -> None:
        """Assert every invariant listed in the class docstring. O(n); for tests."""
        lower, upper = self._lower, self._upper
        lower._check()
        upper._check()
        if len(lower) - len(upper) not in (0, 1):
            raise AssertionError(f"unbalanced halves: {len(lower)} low, {len(upper)} high")
        if lower and upper and lower.max() > upper.min():
            raise AssertionError(f"halves overlap: max(lower) {lower.max()!r} > min(upper) {upper.min()!r}")
