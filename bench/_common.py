"""What the benchmark scripts share: starting a pinned server, core pinning, and rewriting their
section of docs/BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


SERVER_CORE, CLIENT_CORE = 0, 1
_LISTENING = "streamstats-server listening on "


@dataclass(frozen=True)
class RunningServer:
    address: str
    pid: int
    startup_seconds: float  # from spawn to the "listening" line (recovery included)


@contextlib.contextmanager
def streamstats_server(*flags: str) -> Iterator[RunningServer]:
    """A `streamstats-server --port 0` subprocess pinned to SERVER_CORE; stopped (SIGTERM) on exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamstats_server", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        pin(proc.pid, SERVER_CORE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(_LISTENING):
            raise RuntimeError(f"server did not start: {line!r}")
        yield RunningServer(line[len(_LISTENING) :].strip(), proc.pid, time.perf_counter() - started)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
