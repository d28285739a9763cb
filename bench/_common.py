"""What the benchmark scripts share: core pinning and rewriting their section of docs/BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
_HEADER = (
    "# streamstats benchmarks\n\nResults of the scripts in `bench/`, run on purpose (never in the tests).\n"
)


def pin(pid: int, core: int) -> None:
    """Keep a process on one core (server and load generator on separate cores); best effort."""
    cores = os.cpu_count() or 1
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(pid, {core % cores})


def write_section(begin: str, end: str, section: str) -> None:
    """Replace the text between the markers ``begin`` and ``end`` (or append it) in docs/BENCHMARKS.md."""
    text = DOC.read_text() if DOC.exists() else _HEADER
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)
