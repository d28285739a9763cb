"""A mergeable log-linear histogram of non-negative integers (HdrHistogram's bucket layout).

Locust keeps response times under 100 ms at whole-millisecond resolution, and a streamstats call takes
well under a millisecond, so the load test records every call's latency in nanoseconds here instead.

Layout, with ``b = sub_bucket_bits``: values below ``2**b`` each have their own bucket (exact). Every
power-of-two range ``[2**m, 2**(m+1))`` above that is cut into ``2**b`` equal buckets of width
``2**(m-b)``. A bucket's midpoint is therefore within ``2**-(b+1)`` of any value in it, relative to the
value: 0.39 % for the default ``b = 7`` (128 buckets per doubling), whatever the magnitude. Counts are
kept sparsely (only buckets that were hit), so the range is unbounded and two histograms with the same
``b`` merge by adding counts. ``to_wire``/``from_wire`` turn one into plain lists and ints (JSON and
msgpack safe: no integer map keys) for locust's worker -> master reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DEFAULT_SUB_BUCKET_BITS = 7


class LogLinearHistogram:
    """Counts of non-negative integers; percentiles within ``relative_error`` of the exact ones."""

    __slots__ = ("_counts", "_sub_bits", "count", "max", "min", "total")

    def __init__(self, sub_bucket_bits: int = DEFAULT_SUB_BUCKET_BITS) -> None:
        if not 1 <= sub_bucket_bits <= 20:
            raise ValueError(f"sub_bucket_bits must be 1..20, got {sub_bucket_bits}")
        self._sub_bits = sub_bucket_bits
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    @property
    def sub_bucket_bits(self) -> int:
        return self._sub_bits

    @property
    def relative_error(self) -> float:
        """The most a reported percentile can differ from the exact one, relative to the exact one."""
        return 2.0 ** -(self._sub_bits + 1)

    # -- buckets ---------------------------------------------------------------------------------------

    def bucket_index(self, value: int) -> int:
        bits = self._sub_bits
        if value < (1 << bits):
            return value
        shift = value.bit_length() - 1 - bits  # the top bit is at position bits + shift
        return ((shift + 1) << bits) + (value >> shift) - (1 << bits)

    def bucket_bounds(self, index: int) -> tuple[int, int]:
        """The smallest and largest value (inclusive) that fall into bucket ``index``."""
        bits = self._sub_bits
        if index < (1 << bits):
            return index, index
        group, sub = divmod(index, 1 << bits)
        shift = group - 1
        low = ((1 << bits) + sub) << shift
        return low, low + (1 << shift) - 1

    # -- recording -------------------------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        if value < 0:
            raise ValueError(f"cannot record a negative value: {value}")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        index = self.bucket_index(value)
        self._counts[index] = self._counts.get(index, 0) + count
        if self.count == 0:
            self.min = self.max = value
        else:
            self.min = min(self.min, value)
            self.max = max(self.max, value)
        self.count += count
        self.total += value * count

    def record_many(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: LogLinearHistogram) -> None:
        """Add every count of ``other`` (same ``sub_bucket_bits``) into this histogram."""
        if other._sub_bits != self._sub_bits:
            raise ValueError(f"cannot merge sub_bucket_bits {other._sub_bits} into {self._sub_bits}")
        if other.count == 0:
            return
        for index, n in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + n
        if self.count == 0:
            self.min, self.max = other.min, other.max
        else:
            self.min = min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def clear(self) -> None:
        self._counts.clear()
        self.count = self.total = self.min = self.max = 0

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, percent: float) -> float:
        return self.percentiles([percent])[0]

    def percentiles(self, percents: Sequence[float]) -> list[float]:
        """Nearest-rank percentiles: for p, the value of rank ceil(p/100 * count) (at least 1).

        Rank 1 and rank ``count`` are the exact min and max; any other is its bucket's midpoint,
        clamped to [min, max]. 0.0 for each when the histogram is empty.
        """
        for percent in percents:
            if not 0.0 <= percent <= 100.0:
                raise ValueError(f"percentile must be within 0..100, got {percent}")
        if self.count == 0:
            return [0.0 for _ in percents]
        ranks = [max(1, math.ceil(percent / 100.0 * self.count)) for percent in percents]
        wanted = sorted(set(ranks))
        found: dict[int, float] = {}
        cumulative = 0
        position = 0
        for index in sorted(self._counts):
            cumulative += self._counts[index]
            while position < len(wanted) and wanted[position] <= cumulative:
                rank = wanted[position]
                if rank == 1:
                    found[rank] = float(self.min)
                elif rank >= self.count:
                    found[rank] = float(self.max)
                else:
                    low, high = self.bucket_bounds(index)
                    found[rank] = min(max((low + high) / 2.0, float(self.min)), float(self.max))
                position += 1
            if position == len(wanted):
                break
        return [found[rank] for rank in ranks]

    # -- wire format -----------------------------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        return {
            "sub_bucket_bits": self._sub_bits,
            "counts": [[index, n] for index, n in sorted(self._counts.items())],
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> LogLinearHistogram:
        histogram = cls(int(data["sub_bucket_bits"]))
        for index, n in data["counts"]:
            histogram._counts[int(index)] = int(n)
        histogram.count = int(data["count"])
        histogram.total = int(data["total"])
        histogram.min = int(data["min"])
        histogram.max = int(data["max"])
        if sum(histogram._counts.values()) != histogram.count:
            raise ValueError("histogram counts do not add up to its count")
        return histogram
