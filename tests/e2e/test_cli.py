"""The ``streamstats`` command line, run as a user runs it (a real process) against a real server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

import streamstats
from tests.conftest import ServerFactory
from tests.e2e.pki import Pki, make_pki
from tests.e2e.program import program_environment

CLI = [sys.executable, "-m", "streamstats"]
TIMEOUT = 60
TOKEN = "cli-token-0123456789abcdef"


@pytest.fixture
def storage_mode() -> str:
    return "memory"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def run(
    *args: str, stdin: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``streamstats ARGS`` in a fresh process, with no STREAMSTATS_* variable but those in ``env``."""
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=program_environment(env),
    )


def cli(address: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run("--host", address, *args, stdin=stdin)


def ok(address: str, *args: str, stdin: str = "") -> str:
    result = cli(address, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The promise for every failure: one line on stderr, ``streamstats: ...`` (no traceback, and
    none of grpc's own log lines)."""
    assert result.stderr.startswith("streamstats: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


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
    # Options may also follow the command.
    assert [s["name"] for s in json.loads(ok(server_address, "list", "--prefix", "w", "--json"))] == ["web"]
    assert json.loads(ok(server_address, "--json", "get", "web"))["count"] == 0
    assert ok(server_address, "delete", "web") == "deleted web\n"
    missing = cli(server_address, "get", "web")
    assert missing.returncode == 3
    assert missing.stderr == "streamstats: stream 'web' not found\n"
    assert cli(server_address, "delete", "web").returncode == 3


def test_list_follows_pages(server_address: str) -> None:
    names = [f"p-{i:03}" for i in range(250)]  # the server's default page is 100 streams
    with streamstats.Client(server_address) as client:
        for name in names:
            client.create_stream(name)
    assert [s["name"] for s in json.loads(ok(server_address, "--json", "list", "--prefix", "p-"))] == names
    assert len(ok(server_address, "list").splitlines()) == 1 + len(names)


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
    assert json.loads(ok(server_address, "--json", "add", "neg", "-5", "-2.5", "1e3")) == {
        "stream": "neg",
        "added": 3,
        "count": 3,
        "total_added": 3,
    }
    assert ok(server_address, "--json", "median", "neg") == '{"stream": "neg", "median": -2.5}\n'
    ok(server_address, "create", "empty")
    assert ok(server_address, "median", "empty") == "(no live values)\n"
    assert ok(server_address, "top", "empty") == ""


def test_add_from_stdin_in_batches_and_bad_lines(server_address: str) -> None:
    lines = "\n".join(str(i) for i in range(2500)) + "\n\nnot-a-number\n  7  \n\xff\xfe\n1e999\n"
    result = subprocess.run(
        [*CLI, "--host", server_address, "add", "in", "-"],
        input=lines.encode("latin-1"),  # \xff\xfe: a line that is not even UTF-8
        capture_output=True,
        timeout=TIMEOUT,
        env=program_environment(),
    )
    # Bad lines are reported with their numbers and skipped, blank ones ignored; the exit code tells.
    assert result.returncode == 1
    errors = result.stderr.decode().splitlines()
    assert errors[0] == "streamstats: line 2502: 'not-a-number' is not a finite number; skipped"
    assert errors[1].startswith("streamstats: line 2504: ")
    assert errors[2] == "streamstats: line 2505: '1e999' is not a finite number; skipped"
    assert len(errors) == 3
    assert result.stdout.decode() == "added 2501 to in; skipped 3 bad lines\n"
    with streamstats.Client(server_address) as client:
        assert client.get_stream("in").total_added == 2501
        assert client.top_k("in", 2) == [2499.0, 2498.0]
    clean = json.loads(ok(server_address, "--json", "add", "in", "-", stdin="1\n2\n"))
    assert clean == {"stream": "in", "added": 2, "skipped": 0}


def test_stdin_values_arrive_while_the_pipe_stays_open(server_address: str) -> None:
    """``tail -f log | streamstats add name -``: values show up before the input ends."""
    proc = subprocess.Popen(
        [*CLI, "--host", server_address, "add", "tail", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=program_environment(),
    )
    try:
        assert proc.stdin is not None
        with streamstats.Client(server_address) as client:
            for expected in (2, 3):
                proc.stdin.write("1.5\n2.5\n" if expected == 2 else "9\n")
                proc.stdin.flush()
                wait_for_total(client, "tail", expected)
        proc.stdin.close()
        assert proc.wait(TIMEOUT) == 0
        assert proc.stdout is not None and proc.stderr is not None
        assert (proc.stdout.read(), proc.stderr.read()) == ("added 3 to tail\n", "")
    finally:
        proc.kill()
        proc.wait()


def wait_for_total(client: streamstats.Client, stream: str, total: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            if client.get_stream(stream).total_added == total:
                return
        except streamstats.StreamNotFound:
            pass
        assert time.monotonic() < deadline, f"{stream} never reached {total} values"
        time.sleep(0.05)


def test_exit_codes_and_one_line_errors(server_factory: ServerFactory) -> None:
    address = server_factory(max_streams=1, max_values=1500)
    ok(address, "create", "one")
    exhausted = cli(address, "create", "two")
    assert exhausted.returncode == 1
    assert one_error_line(exhausted).startswith("streamstats: cannot create stream 'two'")
    assert "--max-streams=1" in exhausted.stderr
    # A refusal in the middle of stdin says what did arrive before it.
    refused = cli(address, "add", "one", "-", stdin="1\n" * 2500)
    assert refused.returncode == 1 and "--max-values=1500" in one_error_line(refused)
    assert refused.stderr.endswith("(1000 earlier values from stdin were added)\n")
    assert refused.stdout == ""

    for usage in (
        cli(address, "top"),
        cli(address, "top", "one", "-k", "many"),
        cli(address, "add", "one", "1", "-"),
        cli(address, "create", "x", "--window-duration", "soon"),
        cli(address, "frobnicate"),
    ):
        assert usage.returncode == 2, usage.stderr
    assert "usage:" in cli(address, "top").stderr

    unreachable = cli("127.0.0.1:1", "add", "x", "1")  # a write: not retried, so this is quick
    assert unreachable.returncode == 5
    assert one_error_line(unreachable).startswith("streamstats: cannot reach the server at 127.0.0.1:1: ")

    # A server that accepts the connection and never answers: the deadline, from the environment.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent_address = "{}:{}".format(*silent.getsockname())
        slow = run("median", "x", env={"STREAMSTATS_SERVER": silent_address, "STREAMSTATS_TIMEOUT": "300ms"})
    assert slow.returncode == 5
    assert one_error_line(slow) == f"streamstats: no answer from {silent_address} within 0.3s (--timeout)\n"


def test_environment_variables_and_tokens(server_factory: ServerFactory, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[token]]\nname = "cli"\nsecret = "{TOKEN}"\nscopes = ["read", "write"]\n')
    address = server_factory(auth_tokens=str(tokens))
    denied = cli(address, "add", "e", "1")
    assert denied.returncode == 4 and "requires a token" in one_error_line(denied)
    env = {"STREAMSTATS_SERVER": address, "STREAMSTATS_TOKEN": TOKEN}
    result = run("add", "e", "1", "2", env=env)
    assert (result.returncode, result.stdout) == (0, "added 2 to e: 2 live, 2 in total\n"), result.stderr
    forbidden = run("delete", "e", env=env)
    assert forbidden.returncode == 4 and "lacks scope 'admin'" in one_error_line(forbidden)
    assert TOKEN not in forbidden.stderr
    # An option beats its variable.
    wrong = run("--token", "not-the-token-0123456789", "median", "e", env=env)
    assert wrong.returncode == 4 and "not-the-token" not in one_error_line(wrong)


def test_tls_mutual_tls_and_tokens(server_factory: ServerFactory, pki: Pki, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[token]]\nname = "cli"\nsecret = "{TOKEN}"\nscopes = ["read", "write", "admin"]\n')
    address = server_factory(
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca),
        auth_tokens=str(tokens),
    )
    files = ("--ca", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key))
    assert ok(address, *files, "--token", TOKEN, "add", "s", "4", "2") == "added 2 to s: 2 live, 2 in total\n"
    env = {
        "STREAMSTATS_SERVER": address,
        "STREAMSTATS_CA": str(pki.ca),
        "STREAMSTATS_CERT": str(pki.client_cert),
        "STREAMSTATS_KEY": str(pki.client_key),
        "STREAMSTATS_TOKEN": TOKEN,
    }
    assert run("median", "s", env=env).stdout == "3\n"

    # Failures to connect are shown with writes (add), which are not retried, to keep this quick.
    no_cert = run("add", "s", "1", env={**env, "STREAMSTATS_CERT": "", "STREAMSTATS_KEY": ""})
    assert no_cert.returncode == 5 and "client certificate" in one_error_line(no_cert)
    wrong_ca = run("add", "s", "1", env={**env, "STREAMSTATS_CA": str(pki.other_ca)})
    assert wrong_ca.returncode == 5 and "CERTIFICATE_VERIFY_FAILED" in one_error_line(wrong_ca)
    plaintext = cli(address, "--token", TOKEN, "add", "s", "1")
    assert plaintext.returncode == 5 and "require TLS" in one_error_line(plaintext)
    no_token = run("median", "s", env={**env, "STREAMSTATS_TOKEN": ""})
    assert no_token.returncode == 4 and "requires a token" in one_error_line(no_token)

    missing = tmp_path / "missing.pem"
    bad_file = run("--ca", str(missing), "median", "s", env=env)
    assert (bad_file.returncode, bad_file.stderr) == (2, f"streamstats: --ca {missing}: no such file\n")
    half = run("--key", "", "median", "s", env=env)
    assert (half.returncode, half.stderr) == (
        2,
        "streamstats: --cert and --key go together (mutual TLS): give both or neither\n",
    )


def test_a_closed_stdout_ends_quietly(server_address: str) -> None:
    """``streamstats top big -k 10000 | head -1``: the reader leaves early; no traceback, exit 0."""
    with streamstats.Client(server_address) as client:
        client.add_many("big", [1e9 + i for i in range(10_000)])  # ~110 KB of output: more than a pipe holds
    proc = subprocess.Popen(
        [*CLI, "--host", server_address, "top", "big", "-k", "10000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=program_environment(),
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"1000009999\n"
        proc.stdout.close()
        assert proc.wait(TIMEOUT) == 0
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()


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
