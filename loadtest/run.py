"""Run the locust load test headless, in one command (``make loadtest``, ``make loadtest-host HOST=...``).

    python -m loadtest.run                          # starts streamstats-server --port 0 --in-memory itself
    python -m loadtest.run --host 127.0.0.1:50051   # against a running server
    python -m loadtest.run --workers 4              # a locust master and 4 workers on this machine
    python -m loadtest.run -- --streams 1000 --k 100 --only-summary   # anything after -- goes to locust

Writes to the results folder (default ./results): locust's CSVs (``locust_stats.csv``,
``locust_failures.csv``, ...), its HTML report (``report.html``), our µs table
(``locust_latency_us.csv``) and the logs of the server and workers it started. Exits with locust's exit
code (non-zero when any call failed).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LISTENING = "streamstats-server listening on "
STARTUP_TIMEOUT_S = 30.0


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.run",
        description="Run the streamstats locust load test headless. Arguments after -- go to locust "
        "(e.g. the load test's own options: --streams, --k, --batch-size; see the README).",
    )
    parser.add_argument("--host", help="HOST:PORT of a running server (default: start one on a free port)")
    parser.add_argument("-u", "--users", type=int, default=20, help="peak number of users (default 20)")
    parser.add_argument("-r", "--spawn-rate", type=float, default=10.0, help="users started per second")
    parser.add_argument("-t", "--run-time", default="30s", help="how long to run, e.g. 10s, 5m (default 30s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run a master and this many worker processes (default 0: one process)",
    )
    parser.add_argument(
        "--results", type=Path, default=Path("results"), help="report folder (default ./results)"
    )
    parser.add_argument(
        "--data-dir", help="the started server's data dir (default: --in-memory); ignored with --host"
    )
    own, rest = argv_split(argv)
    args = parser.parse_args(own)
    if args.users < 1 or args.spawn_rate <= 0 or args.workers < 0:
        parser.error("--users must be >= 1, --spawn-rate > 0 and --workers >= 0")
    return args, rest


def argv_split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our arguments, and locust's: those after the first "--"."""
    if "--" in argv:
        i = list(argv).index("--")
        return list(argv[:i]), list(argv[i + 1 :])
    return list(argv), []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Signal a child we started, wait for it, kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextmanager
def server(results: Path, data_dir: str | None) -> Iterator[str]:
    """Start streamstats-server on a free port; yield "HOST:PORT" once it listens; SIGTERM it after."""
    storage = ["--data-dir", data_dir] if data_dir else ["--in-memory"]
    log_path = results / "server.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamstats_server", "--host", "127.0.0.1", "--port", "0", *storage],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            line = _readline(proc.stdout, STARTUP_TIMEOUT_S)
            if not line.startswith(LISTENING):
                raise SystemExit(f"streamstats-server did not start (see {log_path}): {line.strip()!r}")
            address = line[len(LISTENING) :].strip()
            print(f"loadtest: started streamstats-server on {address} (log: {log_path})", flush=True)
            yield address
        finally:
            stop(proc)
            print(f"loadtest: streamstats-server stopped (exit code {proc.returncode})", flush=True)


def _readline(stream: IO[str], timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def locust_command(
    args: argparse.Namespace, host: str, rest: Sequence[str], *, master_port: int | None
) -> list[str]:
    results: Path = args.results
    command = [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
        *("-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time, "--host", host),
        *("--csv", str(results / "locust"), "--html", str(results / "report.html")),
    ]
    if master_port is not None:
        command += ["--master", "--expect-workers", str(args.workers), "--expect-workers-max-wait", "60"]
        command += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
    return [*command, *rest]


def worker_command(host: str, master_port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--host", host),
        *("--master-host", "127.0.0.1", "--master-port", str(master_port)),
    ]


def run(args: argparse.Namespace, rest: Sequence[str]) -> int:
    results: Path = args.results
    results.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        host = args.host or stack.enter_context(server(results, args.data_dir))
        master_port = free_port() if args.workers else None
        command = locust_command(args, host, rest, master_port=master_port)
        print("loadtest: " + " ".join(command), flush=True)
        master = subprocess.Popen(command, cwd=ROOT)
        workers: list[subprocess.Popen[Any]] = []
        try:
            for i in range(args.workers):
                assert master_port is not None
                log = stack.enter_context((results / f"worker-{i + 1}.log").open("w", encoding="utf-8"))
                workers.append(
                    subprocess.Popen(
                        worker_command(host, master_port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
                    )
                )
            if workers:
                print(f"loadtest: {len(workers)} workers started (logs: {results}/worker-N.log)", flush=True)
            code = master.wait()
        except KeyboardInterrupt:  # locust got the Ctrl-C too; let it write its reports
            code = master.wait()
        finally:
            stop(master, signal.SIGINT)
            # A master that ran tells its workers to quit; one that failed early may not have.
            deadline = time.monotonic() + (10 if master.returncode == 0 else 2)
            for worker in workers:
                try:
                    worker.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    stop(worker, signal.SIGTERM, timeout=5)
    print(f"loadtest: reports in {results}/ (locust exit code {code})", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(args, rest)


if __name__ == "__main__":
    sys.exit(main())
