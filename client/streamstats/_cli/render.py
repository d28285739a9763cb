"""How results look: aligned tables and lines for humans, one JSON document for scripts."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from typing import Any, TextIO

from streamstats import AddResult, Stats, Stream

SPARK = "▁▂▃▄▅▆▇█"


def number(value: float | None) -> str:
    """A value as a human reads it: integers without ``.0``, others with up to 6 significant digits."""
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def duration(delta: datetime.timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns aligned; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )


STREAM_HEADER = ("NAME", "COUNT", "TOTAL ADDED", "WINDOW SIZE", "WINDOW DURATION", "CREATED")


def stream_row(stream: Stream) -> tuple[str, ...]:
    return (
        stream.name,
        str(stream.count),
        str(stream.total_added),
        str(stream.config.window_size or "-"),
        duration(stream.config.window_duration),
        stream.create_time.isoformat(timespec="seconds"),
    )


def stream_json(stream: Stream) -> dict[str, Any]:
    return {
        "name": stream.name,
        "count": stream.count,
        "total_added": stream.total_added,
        "window_size": stream.config.window_size,
        "window_duration_seconds": (
            stream.config.window_duration.total_seconds() if stream.config.window_duration else None
        ),
        "create_time": stream.create_time.isoformat(),
    }


def add_json(result: AddResult) -> dict[str, Any]:
    return {"count": result.count, "total_added": result.total_added}


def stats_json(stats: Stats) -> dict[str, Any]:
    return {
        "count": stats.count,
        "total_added": stats.total_added,
        "min": stats.min,
        "max": stats.max,
        "mean": stats.mean,
        "stddev": stats.stddev,
        "median": stats.median,
        "quantiles": {repr(q): v for q, v in stats.quantiles.items()},
        "top": stats.top,
        "bottom": stats.bottom,
        "time": stats.time.isoformat(),
    }


def quantile_label(q: float) -> str:
    """0.99 -> "p99", 0.5 -> "p50", 0.999 -> "p99.9"."""
    return f"p{q * 100:.10g}"


def stats_lines(stats: Stats) -> list[str]:
    lines = [f"count        {stats.count}   (total added {stats.total_added})"]
    if not stats.count:
        return [*lines, "(no live values)"]
    lines += [
        f"min / max    {number(stats.min)} / {number(stats.max)}",
        f"mean         {number(stats.mean)}   (stddev {number(stats.stddev)})",
        f"median       {number(stats.median)}",
    ]
    lines += [f"{quantile_label(q):<12} {number(v)}" for q, v in stats.quantiles.items()]
    if stats.top:
        lines.append(f"top          {' '.join(map(number, stats.top))}")
    if stats.bottom:
        lines.append(f"bottom       {' '.join(map(number, stats.bottom))}")
    return lines


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled between their min and max."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = high - low
    if not span:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * len(SPARK)))] for v in values)


def dump_json(document: object, out: TextIO) -> None:
    out.write(json.dumps(document) + "\n")
