"""Exact running sums of a multiset of doubles, for a mean and a standard deviation that never drift."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import repeat
from operator import mul

__all__ = ["ExactMoments", "exact_sums", "exact_sums_slowly"]

# Every finite double is an integer multiple of 2**-1074; scaling by 2**_SCALE (a little more, so the
# fast path's conservative exponent bound always fits) makes every value an integer.
_SCALE = 1126

# Up to this many values, converting one by one beats the fast path's fixed cost (~1.2 µs).
_FEW = 4


def exact_sums(values: Sequence[float]) -> tuple[int, int]:
    """(Σx, Σx²) of finite ``values`` exactly, as integers scaled by 2**_SCALE and 2**(2*_SCALE).

    Fast path (~200 ns per value): multiply the whole batch by one power of two that turns every value
    into an integer (exact: only the exponent changes), convert and sum at C speed. A batch whose
    magnitudes span too many binary orders for one such power (or holds subnormals) goes value by value
    (~1 µs per value).
    """
    if len(values) <= _FEW:
        return exact_sums_slowly(values)
    low, high = min(values), max(values)
    if low > 0.0:  # all positive (latencies, sizes): the magnitudes' range without another pass
        smallest, largest = low, high
    elif high < 0.0:
        smallest, largest = -high, -low
    else:
        largest = max(-low, high)
        if not largest:
            return 0, 0
        smallest = min(filter(None, map(abs, values)))
    # x = m * 2**(e - 53) with a 53-bit m, so x * 2**(53 - e) is an integer for every x >= smallest.
    shift = 53 - math.frexp(smallest)[1]
    if shift > 1023 or math.frexp(largest)[1] + shift > 1023:
        return exact_sums_slowly(values)
    ints = list(map(int, map(mul, values, repeat(2.0**shift))))
    rest = _SCALE - shift
    return sum(ints) << rest, sum(map(mul, ints, ints)) << (2 * rest)


def exact_sums_slowly(values: Sequence[float]) -> tuple[int, int]:
    """Like ``exact_sums``, one value at a time: the reference for tests, and the path for wide spans."""
    total = squares = 0
    for x in values:
        numerator, denominator = x.as_integer_ratio()
        rest = _SCALE - (denominator.bit_length() - 1)
        total += numerator << rest
        squares += (numerator * numerator) << (2 * rest)
    return total, squares


class ExactMoments:
    """Σx and Σx² of a multiset, exactly, as Python integers (scaled): adding and removing any
    sequence of values leaves no error behind, so after any number of window turnovers the mean and
    the population standard deviation are correctly rounded from the exact values.

    Plain float running sums drift as values come and go, and ``E[x²] - mean²`` cancels
    catastrophically when the spread is tiny next to the mean; exact sums have neither problem.

    Invariants (checked by ``_check`` against a recomputation): ``count``, ``_sum`` and ``_squares``
    are the count, the scaled sum and the scaled sum of squares of the values added minus those removed.
    Costs: add/remove O(m) at C speed for a batch of m values (about 0.2 µs per value), O(1) to add or
    remove sums computed by ``exact_sums``, O(1) bigint arithmetic (~2-5 µs) to read.
    """

    __slots__ = ("_squares", "_sum", "count")

    def __init__(self) -> None:
        self.count = 0
        self._sum = 0
        self._squares = 0

    def add(self, values: Sequence[float]) -> None:
        """Add finite values. O(m) at C speed."""
        total, squares = exact_sums(values)
        self.add_sums(len(values), total, squares)

    def remove(self, values: Sequence[float]) -> None:
        """Remove values that were added (the caller guarantees it). O(m) at C speed."""
        total, squares = exact_sums(values)
        self.add_sums(-len(values), -total, -squares)

    def add_sums(self, count: int, total: int, squares: int) -> None:
        """Add ``count`` values whose ``exact_sums`` are (total, squares); negate all three to remove
        them. O(1)."""
        self.count += count
        self._sum += total
        self._squares += squares

    def clear(self) -> None:
        self.count = self._sum = self._squares = 0

    def mean(self) -> float | None:
        """The mean, correctly rounded; None when empty. O(1)."""
        if not self.count:
            return None
        # int / int is correctly rounded in Python, however large the integers.
        return self._sum / (self.count << _SCALE)

    def stddev(self) -> float | None:
        """The population standard deviation (ddof=0); None when empty. O(1).

        The variance ``(nΣx² - (Σx)²) / n²`` is computed exactly and rounded once, then the square
        root rounds once more: within one ulp or so of the true value.
        """
        n = self.count
        if not n:
            return None
        spread = n * self._squares - self._sum * self._sum
        try:
            return math.sqrt(spread / ((n * n) << (2 * _SCALE)))
        except OverflowError:  # the variance of values near 1e308 is no double, the deviation is
            return math.isqrt(spread) / (n << _SCALE)

    def _check(self, values: Sequence[float]) -> None:
        """Assert the sums are exactly those of ``values`` (the live values). O(n); for tests."""
        total, squares = exact_sums_slowly(values)
        if (self.count, self._sum, self._squares) != (len(values), total, squares):
            raise AssertionError(
                f"exact moments out of step: count {self.count} vs {len(values)}, sums differ: "
                f"{self._sum != total}, squares differ: {self._squares != squares}"
            )
