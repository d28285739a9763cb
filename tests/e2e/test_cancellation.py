"""A cancelled write is either applied in full or not at all, and never overlaps the next call."""

from __future__ import annotations

import time

import grpc

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc

T = 30.0


def test_a_big_batch_cancelled_while_applied_never_overlaps_the_next_call(server_address: str) -> None:
    # Over OFFLOAD_VALUES, the batch is applied in a worker thread; cancelling the call must not let
    # the next call on the stream run while that thread is still adding.
    big = [float(i) for i in range(600_000)]
    with grpc.insecure_channel(
        server_address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        for delay in (0.05, 0.15, 0.3):
            name = f"big-{delay}"
            stub.CreateStream(pb.CreateStreamRequest(name=name), timeout=T)
            future = stub.AddNums.future(pb.AddNumsRequest(stream=name, values=big), timeout=T)
            time.sleep(delay)  # not an assertion on time: only a spread of moments to cancel at
            future.cancel()  # type: ignore[no-untyped-call]
            after = stub.AddNums(pb.AddNumsRequest(stream=name, values=[1.0, 2.0, 3.0, 4.0, 5.0]), timeout=T)
            # Either the big batch was applied before these 5, whole, or not at all: never in part.
            assert (after.count, after.total_added) in ((5, 5), (600_005, 600_005)), (delay, after)
            stream = stub.GetStream(pb.GetStreamRequest(name=name), timeout=T)
            assert stream.count == stream.total_added == after.count
