"""The ``streamstats`` command line, run as a user runs it (a real process) against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

import streamstats
from tests.conftest import ServerFactory
from tests.e2e.program import program_environment

CLI = [sys.executable, "-m", "streamstats"]
TIMEOUT = 60


@pytest.fixture
def storage_mode() -> str:
    return "memory"


def cli(
    address: str, *args: str, stdin: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--host", address, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=program_environment(env),
    )


def ok(address: str, *args: str, stdin: str = "") -> str:
    result = cli(address, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_streams_create_get_list_delete(server_address: str) -> None:
    created = json.loads(
        ok(server_address, "--json", "create", "api", "--window-size", "100", "--window-duration", "5m")
    )
    assert (created["name"], created["window_size"], created["window_duration_seconds"]) == (
        "api",
        100,
        300.0,
    )
    ok(server_address, "create", "web")
    table = ok(server_address, "list").splitlines()
    assert table[0].split()[:3] == ["NAME", "COUNT", "TOTAL"]
    assert [line.split()[0] for line in table[1:]] == ["api", "web"]
    assert "5m" in table[1]
    assert [s["name"] for s in json.loads(ok(server_address, "--json", "list", "--prefix", "w"))] == ["web"]
    assert json.loads(ok(server_address, "--json", "get", "web"))["count"] == 0
    assert ok(server_address, "delete", "web") == "deleted web\n"
    missing = cli(server_address, "get", "web")
    assert missing.returncode == 3
    assert missing.stderr == "streamstats: stream 'web' not found\n"


def test_add_and_query(server_address: str) -> None:
    assert ok(server_address, "add", "lat", "5", "1", "9", "3", "7") == "added 5 to lat: 5 live, 5 in total\n"
    assert ok(server_address, "median", "lat") == "5\n"
    assert ok(server_address, "top", "lat", "-k", "2") == "9\n7\n"
    assert ok(server_address, "bottom", "lat", "-k", "2") == "1\n3\n"
    assert json.loads(ok(server_address, "--json", "top", "lat", "-k", "1")) == {
        "stream": "lat",
        "values": [9.0],
    }
    stats = json.loads(ok(server_address, "--json", "stats", "lat", "-q", "p50", "-q", "0.75", "-k", "1"))
    assert (stats["count"], stats["median"], stats["quantiles"], stats["top"]) == (
        5,
        5.0,
        {"0.5": 5.0, "0.75": 7.0},
        [9.0],
    )
    human = ok(server_address, "stats", "lat", "-q", "99%")
    assert "median       5" in human and "p99" in human
    bad = cli(server_address, "add", "lat", "4", "NaN")
    assert (bad.returncode, bad.stderr) == (
        1,
        "streamstats: value 2 'NaN' is not a finite number; nothing was added\n",
    )
    assert ok(server_address, "median", "lat") == "5\n"  # nothing of the bad call was applied


def test_add_from_stdin_in_batches_and_bad_lines(server_address: str) -> None:
    lines = "\n".join(str(i) for i in range(2500)) + "\n\nnot-a-number\n7\n"
    result = cli(server_address, "add", "in", "-", stdin=lines)
    assert result.returncode == 1  # a bad line: reported, skipped, and the exit code says so
    assert "line 2502: 'not-a-number' is not a finite number; skipped" in result.stderr
    assert result.stdout == "added 2501 to in; skipped 1 bad lines\n"
    with streamstats.Client(server_address) as client:
        assert client.get_stream("in").total_added == 2501


def test_stdin_values_arrive_while_the_pipe_stays_open(server_address: str) -> None:
    """``tail -f log | streamstats add name -``: values show up before the input ends."""
    proc = subprocess.Popen(
        [*CLI, "--host", server_address, "add", "tail", "-", "--flush", "0.1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=program_environment(),
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write("1.5\n2.5\n")
        proc.stdin.flush()
        with streamstats.Client(server_address) as client:
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    if client.get_stream("tail").total_added == 2:
                        break
                except streamstats.StreamNotFound:
                    pass
                assert time.monotonic() < deadline, "the values never arrived"
                time.sleep(0.05)
        proc.stdin.close()
        assert proc.wait(TIMEOUT) == 0
    finally:
        proc.kill()
        proc.wait()


def test_exit_codes_and_one_line_errors(server_factory: ServerFactory) -> None:
    address = server_factory(max_streams=1)
    ok(address, "create", "one")
    exhausted = cli(address, "create", "two")
    assert exhausted.returncode == 1
    assert (
        exhausted.stderr.startswith("streamstats: cannot create stream 'two'")
        and "--max-streams=1" in exhausted.stderr
    )
    usage = cli(address, "top")
    assert usage.returncode == 2 and "usage:" in usage.stderr
    unreachable = cli("127.0.0.1:1", "--timeout", "2s", "median", "x")
    assert unreachable.returncode == 5
    assert unreachable.stderr.startswith("streamstats: cannot reach the server at 127.0.0.1:1")
    assert len(unreachable.stderr.splitlines()) == 1 and "Traceback" not in unreachable.stderr


def test_environment_variables_and_tokens(server_factory: ServerFactory, tmp_path: Path) -> None:
    token = "cli-token-0123456789abcdef"
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[token]]\nname = "cli"\nsecret = "{token}"\nscopes = ["read", "write"]\n')
    address = server_factory(auth_tokens=str(tokens))
    denied = cli(address, "add", "e", "1")
    assert denied.returncode == 4 and "requires a token" in denied.stderr
    env = {"STREAMSTATS_SERVER": address, "STREAMSTATS_TOKEN": token}
    result = subprocess.run(
        [*CLI, "add", "e", "1", "2"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=program_environment(env),
    )
    assert result.returncode == 0, result.stderr
    forbidden = subprocess.run(
        [*CLI, "delete", "e"], capture_output=True, text=True, timeout=TIMEOUT, env=program_environment(env)
    )
    assert forbidden.returncode == 4 and "lacks scope 'admin'" in forbidden.stderr
    assert token not in forbidden.stderr


def test_watch_prints_json_lines_and_stops_on_ctrl_c(server_address: str) -> None:
    ok(server_address, "add", "w", "1", "2", "3")
    proc = subprocess.Popen(
        [*CLI, "--host", server_address, "--json", "watch", "w", "--interval", "50ms", "-q", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=program_environment(),
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert (first["count"], first["median"], first["changes"]) == (3, 2.0, 0)
        ok(server_address, "add", "w", "10")
        second = json.loads(proc.stdout.readline())
        assert (second["count"], second["changes"]) == (4, 1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT) == 130
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.wait()


def test_python_dash_m_and_the_console_script_agree() -> None:
    script = Path(sys.executable).with_name("streamstats")
    if not script.exists():
        pytest.skip("the console script is not installed next to this interpreter")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=TIMEOUT, env=dict(os.environ)
    )
    assert result.returncode == 0 and "exit codes" in result.stdout
