"""Raw generated stubs over a real channel: how any gRPC client (not our SDK) sees the service."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from streamstats.v1 import streamstats_pb2_grpc as pb_grpc


@pytest.fixture
def channel(server_address: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server_address) as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.StreamStatsStub:
    return pb_grpc.StreamStatsStub(channel)
