"""Exact quantiles by rank, with numpy.quantile's definitions."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

__all__ = ["QUANTILE_METHODS", "check_quantile_args", "quantile_by_rank"]

#: numpy.quantile's names for the definitions we offer.
QUANTILE_METHODS = ("linear", "lower", "higher", "nearest")


def check_quantile_args(qs: Iterable[float], method: str) -> None:
    """Raise ValueError for a q outside [0, 1] (or NaN) or an unknown method."""
    if method not in QUANTILE_METHODS:
        raise ValueError(f"unknown quantile method {method!r}; use one of {', '.join(QUANTILE_METHODS)}")
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")


def quantile_by_rank(select: Callable[[int], float], n: int, q: float, method: str) -> float:
    """The q-quantile of n sorted values, ``select(i)`` giving the i-th smallest, exactly as
    ``numpy.quantile(values, q, method=method)`` computes it (method linear, lower, higher or nearest).

    At most two ``select`` calls. The virtual index is ``h = (n - 1) * q`` in floating point, as numpy
    computes it; ``lower``/``higher`` take its floor/ceiling; ``nearest`` rounds a tie to the even index
    (numpy's ``around``, like Python's ``round``); ``linear`` is numpy's ``_lerp`` with
    ``t = h - floor(h)``: ``a + (b - a) * t`` for t < 0.5, else ``b - (b - a) * (1 - t)``, so the result
    is bit-identical to numpy's, exact at both ends and monotone in q. q = 0 and q = 1 give the minimum
    and the maximum.

    Where ``b - a`` overflows (finite neighbours of opposite signs more than 1.8e308 apart), numpy answers
    ±inf (or nan at t = 0); we answer ``a * (1 - t) + b * t`` instead, which cannot overflow (its two
    terms have opposite signs) and lies between a and b. Raises ValueError for q outside [0, 1] (or NaN),
    an unknown method, or n < 1.
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
    if not t:  # also h = n - 1 (q = 1), where numpy interpolates between the last value and itself
        return a
    b = select(below + 1)
    diff = b - a
    if math.isinf(diff):
        return a * (1.0 - t) + b * t
    return a + diff * t if t < 0.5 else b - diff * (1.0 - t)
