"""Log lines: one per failed call and lifecycle event; human or JSON; never a token."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.e2e.program import server_process

T = 10.0
SECRET = "log-secret-0123456789abcdef"


def test_json_logs(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[token]]\nname = "reader"\nsecret = "{SECRET}"\nscopes = ["read"]\n')
    with server_process("--log-format", "json", "--auth-tokens", str(tokens)) as program:
        with grpc.insecure_channel(program.address) as channel:
            stub = pb_grpc.StreamStatsStub(channel)
            metadata = (("authorization", f"Bearer {SECRET}"),)
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
    events = [r["event"] for r in records if "event" in r]
    assert events == ["starting", "listening", "stopping", "stopped"]
    failed = [r for r in records if "grpc_code" in r]
    assert [(r["grpc_method"], r["grpc_code"], r["level"]) for r in failed] == [
        ("AddNum", "PERMISSION_DENIED", "INFO"),
        ("FindMedian", "UNAUTHENTICATED", "INFO"),
        ("FindMedian", "NOT_FOUND", "INFO"),
    ]
    assert "'reader' lacks scope 'write'" in failed[0]["error"]
    assert all(r["peer"].startswith("ipv4:127.0.0.1:") and r["duration_ms"] >= 0 for r in failed)
    assert SECRET not in text and SECRET[::-1] not in text


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
    assert any("listening on 127.0.0.1:" in line for line in lines)
    assert any(line.endswith("streamstats.server: stopped") for line in lines)
