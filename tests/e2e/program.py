"""Start the streamstats-server program as a user runs it: a real process on 127.0.0.1, port 0.

Every process started here is killed (if still running) and reaped when its ``with`` block ends, and
one that never prints its address is killed after ``START_TIMEOUT`` seconds, so no test can leave a
server behind or hang waiting for one. The server's stderr (its log) goes to a file, not a pipe: a
chatty server (a checkpoint logs a line) can never block on a full pipe nobody reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER = [sys.executable, "-m", "streamstats_server"]
LISTENING = "streamstats-server listening on "
METRICS = "streamstats-server metrics on "  # the second stdout line, with --metrics-port
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def program_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any STREAMSTATS_* variable, plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSTATS_")}
    environ.update(env or {})
    return environ


@dataclass
class ServerProcess:
    """A started server: its process, the address it printed, and its log so far."""

    proc: subprocess.Popen[str]
    address: str
    log_path: Path

    def stderr(self) -> str:
        """Everything the server has written to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        """SIGTERM (a clean stop); returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL (kill -9): no cleanup at all in the server."""
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)

    def stdout_line(self, timeout: float = START_TIMEOUT) -> str:
        """The next line the server prints on stdout (after the address: the metrics URL, with
        --metrics-port); kills the server if none comes within ``timeout`` seconds."""
        assert self.proc.stdout is not None
        watchdog = threading.Timer(timeout, self.proc.kill)
        watchdog.start()
        try:
            return self.proc.stdout.readline()
        finally:
            watchdog.cancel()


@contextmanager
def server_process(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = "",
) -> Iterator[ServerProcess]:
    """Start the program on 127.0.0.1 port 0 with ``args`` and yield it once it prints its address.

    ``data_dir`` is passed as ``--data-dir`` (the default ``""`` keeps everything in memory); None
    passes no ``--data-dir`` at all. Flags in ``args`` come after it and so win.
    """
    data_args = [] if data_dir is None else ["--data-dir", os.fspath(data_dir)]
    with tempfile.TemporaryDirectory(prefix="streamstats-log-") as log_dir:
        log_path = Path(log_dir) / "stderr.log"
        # Append mode: the child's writes always go to the end, whatever we read meanwhile.
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [*SERVER, "--host", "127.0.0.1", "--port", "0", *data_args, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                env=program_environment(env),
                cwd=cwd,
            )
        watchdog = threading.Timer(START_TIMEOUT, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            watchdog.cancel()
            assert line.startswith(LISTENING), (line, log_path.read_text(errors="replace"))
            yield ServerProcess(proc, line[len(LISTENING) :].strip(), log_path)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
            if proc.stdout is not None:
                proc.stdout.close()


@contextmanager
def running(*args: str, env: Mapping[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the program on port 0 (in memory) and yield it with the address it printed; kill it if
    still running."""
    with server_process(*args, env=env) as server:
        yield server.proc, server.address
