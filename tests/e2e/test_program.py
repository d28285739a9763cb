"""The streamstats-server program as a user runs it: a real process, flags, env vars, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import grpc
import pytest

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.e2e.program import SERVER, running


def test_prints_the_real_port_serves_and_exits_zero_on_sigterm() -> None:
    with running() as (proc, address):
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.StreamStatsStub(channel)
            stub.AddNums(pb.AddNumsRequest(stream="s", values=[1.0, 2.0, 3.0]), timeout=10)
            assert stub.FindMedian(pb.FindMedianRequest(stream="s"), timeout=10).median == 2.0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sigint_exits_zero() -> None:
    with running() as (proc, _):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_sigterm_lets_a_call_in_flight_finish() -> None:
    with running("--grace-seconds", "20") as (proc, address), grpc.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        stub.GetStream  # noqa: B018 -- channel warm-up is the next call
        stub.AddNums(pb.AddNumsRequest(stream="warm", values=[0.0]), timeout=10)
        sent_first = False

        def messages() -> Iterator[pb.AddNumsRequest]:
            nonlocal sent_first
            yield pb.AddNumsRequest(stream="inflight", values=[1.0] * 1000)
            sent_first = True
            time.sleep(0.5)  # the call is open on the server when the signal arrives
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            yield pb.AddNumsRequest(stream="inflight", values=[2.0] * 1000)

        response = stub.StreamNums(messages(), timeout=30)
        assert sent_first
        assert response.values_added == 2000
        assert proc.wait(timeout=30) == 0


def test_flags_come_from_the_environment_and_the_command_line_wins() -> None:
    with (
        running(env={"STREAMSTATS_MAX_K": "3"}) as (_, address),
        grpc.insecure_channel(address) as channel,
    ):
        stub = pb_grpc.StreamStatsStub(channel)
        stub.AddNums(pb.AddNumsRequest(stream="s", values=[1.0, 2.0, 3.0, 4.0]), timeout=10)
        assert len(stub.TopK(pb.TopKRequest(stream="s", k=3), timeout=10).values) == 3
        with pytest.raises(grpc.RpcError) as info:
            stub.TopK(pb.TopKRequest(stream="s", k=4), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with (
        running("--max-k", "4", env={"STREAMSTATS_MAX_K": "3"}) as (_, address),
        grpc.insecure_channel(address) as channel,
    ):
        stub = pb_grpc.StreamStatsStub(channel)
        stub.AddNums(pb.AddNumsRequest(stream="s", values=[1.0, 2.0, 3.0, 4.0]), timeout=10)
        assert len(stub.TopK(pb.TopKRequest(stream="s", k=4), timeout=10).values) == 4


def test_port_from_the_environment_and_a_busy_port_is_a_clear_error() -> None:
    with running() as (_, address):
        port = address.rsplit(":", 1)[1]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSTATS_")}
        environ["STREAMSTATS_PORT"] = port
        done = subprocess.run(
            [*SERVER, "--data-dir", ""], capture_output=True, text=True, env=environ, timeout=30, check=False
        )
        assert done.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_bad_flag_values_are_rejected_by_name() -> None:
    done = subprocess.run([*SERVER, "--max-k", "0"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "--max-k" in done.stderr and "at least 1" in done.stderr


def test_help_names_every_flag_and_its_variable() -> None:
    done = subprocess.run([*SERVER, "--help"], capture_output=True, text=True, timeout=30, check=True)
    for flag in ("--host", "--port", "--data-dir", "--max-k", "--max-message-bytes"):
        env = "STREAMSTATS_" + flag[2:].replace("-", "_").upper()
        assert flag in done.stdout and env in done.stdout
