"""Checks of request fields. Each raises InvalidArgument naming the field and the value."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from streamstats_server.errors import InvalidArgument

MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9_.:/\-]{1,128}")


def check_name(field: str, name: str) -> str:
    """A stream name: 1 to 128 characters, each an ASCII letter or digit or one of ``_ . : / -``."""
    if _NAME.fullmatch(name) is None:
        if not name:
            raise InvalidArgument(field, name, "must not be empty")
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidArgument(
                field, name, f"must be at most {MAX_NAME_LENGTH} characters, not {len(name)}"
            )
        bad = next(c for c in name if _NAME.fullmatch(c) is None)
        raise InvalidArgument(
            field, name, f"character {bad!r} not allowed (use ASCII letters, digits and _ . : / -)"
        )
    return name


def check_values(field: str, values: Sequence[float]) -> None:
    """Every value finite. O(n) in C on the happy path; finds the first bad index otherwise."""
    if all(map(math.isfinite, values)):
        return
    index, bad = next((i, v) for i, v in enumerate(values) if not math.isfinite(v))
    name = field if len(values) == 1 and field == "value" else f"{field}[{index}]"
    raise InvalidArgument(name, bad, "must be a finite number (NaN and infinities are rejected)")


def check_k(k: int, max_k: int) -> int:
    """k between 1 and the server's max k."""
    if not 1 <= k <= max_k:
        raise InvalidArgument("k", k, f"must be between 1 and {max_k} (the server's --max-k)")
    return k


def check_page_size(page_size: int, default: int, maximum: int) -> int:
    """0 means the default, above the maximum is clamped, negative is an error."""
    if page_size < 0:
        raise InvalidArgument("page_size", page_size, "must not be negative")
    if page_size == 0:
        return default
    return min(page_size, maximum)


MAX_QUANTILES = 100


def check_quantiles(field: str, quantiles: Sequence[float]) -> list[float]:
    """At most MAX_QUANTILES values of q, each in [0, 1] (NaN is not)."""
    if len(quantiles) > MAX_QUANTILES:
        raise InvalidArgument(field, f"{len(quantiles)} quantiles", f"at most {MAX_QUANTILES} per call")
    for index, q in enumerate(quantiles):
        if not 0.0 <= q <= 1.0:
            raise InvalidArgument(f"{field}[{index}]", q, "must be between 0 and 1")
    return list(quantiles)


def check_optional_k(field: str, k: int, max_k: int) -> int:
    """0 (none) up to the server's max k."""
    if k > max_k:
        raise InvalidArgument(field, k, f"must be between 0 and {max_k} (the server's --max-k)")
    return k
