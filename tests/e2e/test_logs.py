"""Log lines: one per failed call and lifecycle event; human or JSON; never a token."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server import __version__
from tests.conftest import TEST_CONFIG, ThreadedServer
from tests.e2e.forgetful_fs import ForgetfulFileSystem
from tests.e2e.program import SERVER, program_environment, server_process

T = 10.0
SECRET = "log-secret-0123456789abcdef"


def test_json_logs(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[token]]\nname = "reader"\nsecret = "{SECRET}"\nscopes = ["read"]\n')
    args = ("--log-format", "json", "--auth-tokens", str(tokens), "--metrics-port", "0", "--max-streams", "9")
    with server_process(*args, data_dir=tmp_path / "data") as program:
        with grpc.insecure_channel(program.address) as channel:
            stub = pb_grpc.StreamStatsStub(channel)
            metadata = (("authorization", f"Bearer {SECRET}"),)
            stub.ListStreams(pb.ListStreamsRequest(), timeout=T, metadata=metadata)  # fine: no line
            with pytest.raises(grpc.RpcError):  # PERMISSION_DENIED: a read token adding
                stub.AddNum(pb.AddNumRequest(stream="s", value=1.0), timeout=T, metadata=metadata)
            with pytest.raises(grpc.RpcError):  # UNAUTHENTICATED: a wrong token
                stub.FindMedian(
                    pb.FindMedianRequest(stream="s"),
                    timeout=T,
                    metadata=(("authorization", "Bearer nope-" + SECRET[::-1]),),
                )
            with pytest.raises(grpc.RpcError):  # NOT_FOUND
                stub.FindMedian(pb.FindMedianRequest(stream="s"), timeout=T, metadata=metadata)
        assert program.terminate() == 0
        text = program.stderr()
    records = [json.loads(line) for line in text.splitlines()]  # every line is a JSON object
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    for record in records:  # RFC 3339, in UTC
        assert datetime.datetime.fromisoformat(record["time"]).utcoffset() == datetime.timedelta(0)
    events = [r["event"] for r in records if "event" in r]
    assert events == ["starting", "recovered", "metrics_listening", "listening", "stopping", "stopped"]
    starting = records[0]
    assert (starting["version"], starting["fsync"], starting["tls"]) == (__version__, "always", "off")
    assert (starting["tokens"], starting["max_streams"]) == (True, 9)
    failed = [r for r in records if "grpc_code" in r]
    assert [(r["grpc_method"], r["grpc_code"], r["level"]) for r in failed] == [
        ("AddNum", "PERMISSION_DENIED", "INFO"),
        ("FindMedian", "UNAUTHENTICATED", "INFO"),
        ("FindMedian", "NOT_FOUND", "INFO"),
    ]
    assert "'reader' lacks scope 'write'" in failed[0]["error"]
    assert all(r["peer"].startswith("ipv4:127.0.0.1:") and r["duration_ms"] >= 0 for r in failed)
    assert SECRET not in text and SECRET[::-1] not in text


def test_json_logs_say_why_the_program_cannot_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SERVER, "--port", "0", "--in-memory", "--log-format", "json", "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=program_environment(),
        )
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [r.get("event") for r in records] == ["starting", "failed"]
    assert f"cannot serve metrics on 127.0.0.1:{port}" in records[-1]["message"]


def test_human_logs() -> None:
    with server_process() as program:
        with grpc.insecure_channel(program.address) as channel:
            stub = pb_grpc.StreamStatsStub(channel)
            with pytest.raises(grpc.RpcError):
                stub.TopK(pb.TopKRequest(stream="s", k=0), timeout=T)
        assert program.terminate() == 0
        lines = program.stderr().splitlines()
    failures = [line for line in lines if " failed: " in line]
    assert len(failures) == 1
    assert "INFO streamstats.calls: streamstats.v1.StreamStats/TopK failed: INVALID_ARGUMENT: " in failures[0]
    assert any(
        f"INFO streamstats.server: starting streamstats-server {__version__}: " in line for line in lines
    )
    assert any("listening on 127.0.0.1:" in line for line in lines)
    assert any(line.endswith("streamstats.server: stopped") for line in lines)


def test_failures_of_ours_are_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamstats.calls")
    fs = ForgetfulFileSystem()
    server = ThreadedServer(replace(TEST_CONFIG, data_dir=str(tmp_path / "data")), fs=fs)
    address = server.start()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.StreamStatsStub(channel)
            stub.AddNum(pb.AddNumRequest(stream="s", value=1.0), timeout=T)
            fs.cut()  # the disk is gone: storage fails every write from now on
            with pytest.raises(grpc.RpcError) as refused:
                stub.AddNum(pb.AddNumRequest(stream="s", value=2.0), timeout=T)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        with contextlib.suppress(Exception):  # closing the log fails too, as it would
            server.stop()  # (and every call's line is written by then)
    failed = [r for r in caplog.records if r.name == "streamstats.calls"]
    assert [(r.levelno, r.__dict__["grpc_code"]) for r in failed] == [(logging.WARNING, "UNAVAILABLE")]
    assert "storage failed" in failed[0].getMessage()
