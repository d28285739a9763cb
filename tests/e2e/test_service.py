"""The API contract of issue 2, line by line, through raw generated stubs over a real channel."""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Callable
from functools import partial

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.e2e.calls import error_of

T = 10.0  # every call has a deadline


def details(err: grpc.Call) -> str:
    return err.details() or ""


def assert_invalid(call: Callable[[], object], *fragments: str) -> None:
    err = error_of(call)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    for fragment in fragments:
        assert fragment in details(err), (fragment, err.details())


def add(stub: pb_grpc.StreamStatsStub, name: str, values: list[float]) -> pb.AddNumsResponse:
    response: pb.AddNumsResponse = stub.AddNums(pb.AddNumsRequest(stream=name, values=values), timeout=T)
    return response


def get(stub: pb_grpc.StreamStatsStub, name: str) -> pb.Stream:
    stream: pb.Stream = stub.GetStream(pb.GetStreamRequest(name=name), timeout=T)
    return stream


# --- CreateStream / GetStream ---------------------------------------------------------------------


def test_create_returns_the_empty_stream(stub: pb_grpc.StreamStatsStub) -> None:
    before = time.time_ns()
    config = pb.StreamConfig(window_size=5, window_duration=duration_pb2.Duration(seconds=60))
    created = stub.CreateStream(pb.CreateStreamRequest(name="latency.api", config=config), timeout=T)
    assert created.name == "latency.api"
    assert created.config == config
    assert (created.count, created.total_added) == (0, 0)
    assert before <= created.create_time.ToNanoseconds() <= time.time_ns()
    assert get(stub, "latency.api") == created


def test_create_again_same_config_is_ok_other_config_already_exists(stub: pb_grpc.StreamStatsStub) -> None:
    request = pb.CreateStreamRequest(name="s", config=pb.StreamConfig(window_size=3))
    first = stub.CreateStream(request, timeout=T)
    add(stub, "s", [1.0])
    again = stub.CreateStream(request, timeout=T)
    assert again.create_time == first.create_time
    assert again.total_added == 1  # returned as it is, not emptied
    other = pb.CreateStreamRequest(name="s", config=pb.StreamConfig(window_size=4))
    err = error_of(lambda: stub.CreateStream(other, timeout=T))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "'s'" in details(err) and "window_size=3" in details(err) and "window_size=4" in details(err)
    assert get(stub, "s").config.window_size == 3


def test_zero_duration_is_the_same_config_as_unset(stub: pb_grpc.StreamStatsStub) -> None:
    stub.CreateStream(pb.CreateStreamRequest(name="s"), timeout=T)
    zero = pb.StreamConfig(window_duration=duration_pb2.Duration(seconds=0))
    assert stub.CreateStream(pb.CreateStreamRequest(name="s", config=zero), timeout=T).name == "s"


def test_negative_window_duration_is_invalid(stub: pb_grpc.StreamStatsStub) -> None:
    config = pb.StreamConfig(window_duration=duration_pb2.Duration(seconds=-1))
    assert_invalid(
        lambda: stub.CreateStream(pb.CreateStreamRequest(name="s", config=config), timeout=T),
        "config.window_duration",
        "-1s",
    )
    assert error_of(lambda: get(stub, "s")).code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "must not be empty"),
        ("x" * 129, "at most 128"),
        ("has space", "' '"),
        ("naïve", "'ï'"),
        ("semi;colon", "';'"),
    ],
)
def test_bad_names_are_invalid_everywhere(stub: pb_grpc.StreamStatsStub, name: str, fragment: str) -> None:
    assert_invalid(lambda: stub.CreateStream(pb.CreateStreamRequest(name=name), timeout=T), "name", fragment)
    assert_invalid(lambda: get(stub, name), "name", fragment)
    assert_invalid(lambda: add(stub, name, [1.0]), "stream", fragment)
    assert_invalid(lambda: stub.AddNum(pb.AddNumRequest(stream=name, value=1.0), timeout=T), "stream")
    assert_invalid(lambda: stub.FindMedian(pb.FindMedianRequest(stream=name), timeout=T), "stream")
    assert_invalid(lambda: stub.TopK(pb.TopKRequest(stream=name, k=1), timeout=T), "stream")
    assert_invalid(lambda: stub.BottomK(pb.BottomKRequest(stream=name, k=1), timeout=T), "stream")
    assert_invalid(lambda: stub.DeleteStream(pb.DeleteStreamRequest(name=name), timeout=T), "name")
    assert stub.ListStreams(pb.ListStreamsRequest(), timeout=T).streams == []


def test_every_allowed_character_and_128_long_names(stub: pb_grpc.StreamStatsStub) -> None:
    allowed = "abcXYZ019_.:/-"
    longest = "a" * 128
    for name in (allowed, longest):
        assert stub.CreateStream(pb.CreateStreamRequest(name=name), timeout=T).name == name


def test_get_missing_is_not_found(stub: pb_grpc.StreamStatsStub) -> None:
    err = error_of(lambda: get(stub, "nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "'nope'" in details(err)


# --- ListStreams -------------------------------------------------------------------------------------


def names(response: pb.ListStreamsResponse) -> list[str]:
    return [s.name for s in response.streams]


def test_list_is_ordered_by_name_and_filtered_by_prefix(stub: pb_grpc.StreamStatsStub) -> None:
    for name in ["b", "a/2", "a/10", "a/1", "c"]:
        add(stub, name, [1.0, 2.0])
    everything = stub.ListStreams(pb.ListStreamsRequest(), timeout=T)
    assert names(everything) == ["a/1", "a/10", "a/2", "b", "c"]
    assert everything.next_page_token == ""
    assert all(s.count == 2 and s.total_added == 2 for s in everything.streams)
    prefixed = stub.ListStreams(pb.ListStreamsRequest(prefix="a/"), timeout=T)
    assert names(prefixed) == ["a/1", "a/10", "a/2"]
    assert stub.ListStreams(pb.ListStreamsRequest(prefix="zz"), timeout=T).streams == []


def test_list_pages_through_with_tokens(stub: pb_grpc.StreamStatsStub) -> None:
    wanted = sorted(f"p/{i:03d}" for i in range(7))
    for name in [*wanted, "q/0", "o/0"]:
        stub.CreateStream(pb.CreateStreamRequest(name=name), timeout=T)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = stub.ListStreams(pb.ListStreamsRequest(prefix="p/", page_size=3, page_token=token), timeout=T)
        pages += 1
        seen += names(page)
        token = page.next_page_token
        if not token:
            break
    assert seen == wanted
    assert pages == 3


def test_page_size_default_and_clamp(stub: pb_grpc.StreamStatsStub) -> None:
    for i in range(1005):
        stub.CreateStream(pb.CreateStreamRequest(name=f"s{i:04d}"), timeout=T)
    default = stub.ListStreams(pb.ListStreamsRequest(page_size=0), timeout=T)
    assert len(default.streams) == 100 and default.next_page_token
    clamped = stub.ListStreams(pb.ListStreamsRequest(page_size=5000), timeout=T)
    assert len(clamped.streams) == 1000 and clamped.next_page_token
    rest = stub.ListStreams(
        pb.ListStreamsRequest(page_size=5000, page_token=clamped.next_page_token), timeout=T
    )
    assert names(rest) == [f"s{i:04d}" for i in range(1000, 1005)]
    assert rest.next_page_token == ""


def test_negative_page_size_and_malformed_token_are_invalid(stub: pb_grpc.StreamStatsStub) -> None:
    assert_invalid(
        lambda: stub.ListStreams(pb.ListStreamsRequest(page_size=-1), timeout=T), "page_size", "-1"
    )
    for token in ["garbage!", base64.urlsafe_b64encode(b"other:abc").decode(), "YWZ0ZXI6"]:
        assert_invalid(
            partial(stub.ListStreams, pb.ListStreamsRequest(page_token=token), timeout=T),
            "page_token",
        )


# --- DeleteStream ------------------------------------------------------------------------------------


def test_delete_removes_everything_and_frees_the_name(stub: pb_grpc.StreamStatsStub) -> None:
    add(stub, "d", [5.0, 6.0, 7.0])
    stub.DeleteStream(pb.DeleteStreamRequest(name="d"), timeout=T)
    assert error_of(lambda: get(stub, "d")).code() == grpc.StatusCode.NOT_FOUND
    err = error_of(lambda: stub.DeleteStream(pb.DeleteStreamRequest(name="d"), timeout=T))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    reused = stub.CreateStream(
        pb.CreateStreamRequest(name="d", config=pb.StreamConfig(window_size=2)), timeout=T
    )
    assert (reused.count, reused.total_added, reused.config.window_size) == (0, 0, 2)
    assert not stub.FindMedian(pb.FindMedianRequest(stream="d"), timeout=T).HasField("median")


# --- AddNum / AddNums / StreamNums -------------------------------------------------------------------


def test_add_creates_with_default_config_and_counts(stub: pb_grpc.StreamStatsStub) -> None:
    first = stub.AddNum(pb.AddNumRequest(stream="new", value=2.5), timeout=T)
    assert (first.count, first.total_added) == (1, 1)
    batch = add(stub, "new", [1.0, 2.0, 3.0])
    assert (batch.count, batch.total_added) == (4, 4)
    stream = get(stub, "new")
    assert stream.config == pb.StreamConfig()
    assert (stream.count, stream.total_added) == (4, 4)


def test_empty_batch_adds_nothing_but_creates(stub: pb_grpc.StreamStatsStub) -> None:
    response = add(stub, "empty", [])
    assert (response.count, response.total_added) == (0, 0)
    assert get(stub, "empty").total_added == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected_and_change_nothing(stub: pb_grpc.StreamStatsStub, bad: float) -> None:
    assert_invalid(
        lambda: stub.AddNum(pb.AddNumRequest(stream="v", value=bad), timeout=T), "value", repr(bad)
    )
    assert error_of(lambda: get(stub, "v")).code() == grpc.StatusCode.NOT_FOUND  # not even created
    add(stub, "v", [1.0])
    assert_invalid(lambda: add(stub, "v", [2.0, 3.0, bad, 4.0]), "values[2]", repr(bad))
    stream = get(stub, "v")
    assert (stream.count, stream.total_added) == (1, 1)


def test_stream_nums_applies_each_message_atomically(stub: pb_grpc.StreamStatsStub) -> None:
    messages = [
        pb.AddNumsRequest(stream="a", values=[1.0, 2.0]),
        pb.AddNumsRequest(stream="b", values=[10.0]),
        pb.AddNumsRequest(stream="a", values=[3.0]),
    ]
    response = stub.StreamNums(iter(messages), timeout=T)
    assert response.values_added == 4
    assert get(stub, "a").count == 3 and get(stub, "b").count == 1


def test_stream_nums_stops_at_the_first_bad_message(stub: pb_grpc.StreamStatsStub) -> None:
    messages = [
        pb.AddNumsRequest(stream="a", values=[1.0, 2.0]),
        pb.AddNumsRequest(stream="b", values=[3.0]),
        pb.AddNumsRequest(stream="a", values=[4.0, math.nan]),
        pb.AddNumsRequest(stream="a", values=[5.0]),
    ]
    assert_invalid(lambda: stub.StreamNums(iter(messages), timeout=T), "values[1]", "nan", "3 values")
    assert get(stub, "a").total_added == 2
    assert get(stub, "b").total_added == 1


def test_stream_nums_with_no_messages_adds_nothing(stub: pb_grpc.StreamStatsStub) -> None:
    assert stub.StreamNums(iter([]), timeout=T).values_added == 0


# --- FindMedian / TopK / BottomK ---------------------------------------------------------------------


def median(stub: pb_grpc.StreamStatsStub, name: str) -> pb.FindMedianResponse:
    response: pb.FindMedianResponse = stub.FindMedian(pb.FindMedianRequest(stream=name), timeout=T)
    return response


def test_median_odd_even_and_empty(stub: pb_grpc.StreamStatsStub) -> None:
    stub.CreateStream(pb.CreateStreamRequest(name="m"), timeout=T)
    empty = median(stub, "m")
    assert empty.count == 0 and not empty.HasField("median")
    add(stub, "m", [5.0, 1.0, 3.0])
    odd = median(stub, "m")
    assert (odd.median, odd.count) == (3.0, 3)
    add(stub, "m", [10.0])
    even = median(stub, "m")
    assert (even.median, even.count) == (4.0, 4)


def test_median_of_huge_values_does_not_overflow(stub: pb_grpc.StreamStatsStub) -> None:
    add(stub, "big", [1.7976931348623157e308, 1.7976931348623157e308])
    assert median(stub, "big").median == 1.7976931348623157e308


def test_top_and_bottom_k_keep_duplicates_and_order(stub: pb_grpc.StreamStatsStub) -> None:
    add(stub, "t", [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, -3.5])
    top = stub.TopK(pb.TopKRequest(stream="t", k=4), timeout=T)
    assert list(top.values) == [9.0, 6.0, 5.0, 5.0] and top.count == 10
    bottom = stub.BottomK(pb.BottomKRequest(stream="t", k=4), timeout=T)
    assert list(bottom.values) == [-3.5, 1.0, 1.0, 2.0] and bottom.count == 10
    everything = stub.TopK(pb.TopKRequest(stream="t", k=100), timeout=T)
    assert list(everything.values) == sorted(
        [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, -3.5], reverse=True
    )


def test_k_bounds(server_factory: Callable[..., str]) -> None:
    with grpc.insecure_channel(server_factory(max_k=5)) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        add(stub, "k", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        assert len(stub.TopK(pb.TopKRequest(stream="k", k=5), timeout=T).values) == 5
        assert len(stub.BottomK(pb.BottomKRequest(stream="k", k=5), timeout=T).values) == 5
        for k in (0, 6):
            assert_invalid(
                partial(stub.TopK, pb.TopKRequest(stream="k", k=k), timeout=T), "k", f"got {k}", "5"
            )
            assert_invalid(
                partial(stub.BottomK, pb.BottomKRequest(stream="k", k=k), timeout=T), "k", f"got {k}"
            )


def test_default_max_k_is_ten_thousand(stub: pb_grpc.StreamStatsStub) -> None:
    add(stub, "k", [1.0])
    assert list(stub.TopK(pb.TopKRequest(stream="k", k=10_000), timeout=T).values) == [1.0]
    assert_invalid(lambda: stub.TopK(pb.TopKRequest(stream="k", k=10_001), timeout=T), "k", "10001")


def test_queries_never_create_a_stream(stub: pb_grpc.StreamStatsStub) -> None:
    queries: list[Callable[[], object]] = [
        lambda: median(stub, "ghost"),
        lambda: stub.TopK(pb.TopKRequest(stream="ghost", k=1), timeout=T),
        lambda: stub.BottomK(pb.BottomKRequest(stream="ghost", k=1), timeout=T),
        lambda: get(stub, "ghost"),
    ]
    for query in queries:
        err = error_of(query)
        assert err.code() == grpc.StatusCode.NOT_FOUND and "'ghost'" in details(err)
    assert stub.ListStreams(pb.ListStreamsRequest(), timeout=T).streams == []


# --- Windows -----------------------------------------------------------------------------------------


def test_count_window_keeps_the_last_n(stub: pb_grpc.StreamStatsStub) -> None:
    stub.CreateStream(pb.CreateStreamRequest(name="w", config=pb.StreamConfig(window_size=3)), timeout=T)
    response = add(stub, "w", [100.0, 1.0, 2.0, 3.0])
    assert (response.count, response.total_added) == (3, 4)
    assert median(stub, "w").median == 2.0
    single = stub.AddNum(pb.AddNumRequest(stream="w", value=50.0), timeout=T)
    assert (single.count, single.total_added) == (3, 5)
    assert list(stub.TopK(pb.TopKRequest(stream="w", k=10), timeout=T).values) == [50.0, 3.0, 2.0]


def test_time_window_expires_old_values(stub: pb_grpc.StreamStatsStub) -> None:
    config = pb.StreamConfig(window_duration=duration_pb2.Duration(nanos=400_000_000))
    stub.CreateStream(pb.CreateStreamRequest(name="tw", config=config), timeout=T)
    add(stub, "tw", [1000.0, 2000.0])
    time.sleep(0.5)
    add(stub, "tw", [1.0, 2.0, 3.0])
    assert median(stub, "tw").median == 2.0
    assert list(stub.TopK(pb.TopKRequest(stream="tw", k=5), timeout=T).values) == [3.0, 2.0, 1.0]
    time.sleep(0.5)
    expired = median(stub, "tw")
    assert expired.count == 0 and not expired.HasField("median")
    stream = get(stub, "tw")
    assert (stream.count, stream.total_added) == (0, 5)


def test_both_limits_apply(stub: pb_grpc.StreamStatsStub) -> None:
    config = pb.StreamConfig(window_size=2, window_duration=duration_pb2.Duration(nanos=400_000_000))
    stub.CreateStream(pb.CreateStreamRequest(name="both", config=config), timeout=T)
    assert add(stub, "both", [1.0, 2.0, 3.0]).count == 2
    time.sleep(0.5)
    assert get(stub, "both").count == 0


# --- Atomicity under concurrency ---------------------------------------------------------------------


def test_concurrent_readers_never_see_half_a_batch(stub: pb_grpc.StreamStatsStub) -> None:
    batch = 25_000  # above the server's offload threshold: applied in a worker thread under the lock
    writers, batches_each = 3, 4
    failures: list[str] = []
    done = threading.Event()

    def write(value: float) -> None:
        for _ in range(batches_each):
            add(stub, "atomic", [value] * batch)

    def read() -> None:
        while not done.is_set():
            try:
                response = median(stub, "atomic")
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    failures.append(str(exc))
                continue
            if response.count % batch:
                failures.append(f"saw {response.count} values")
            top = stub.TopK(pb.TopKRequest(stream="atomic", k=1), timeout=T)
            if top.count % batch:
                failures.append(f"saw {top.count} values")

    readers = [threading.Thread(target=read) for _ in range(2)]
    threads = [threading.Thread(target=write, args=(float(i),)) for i in range(writers)]
    for thread in readers + threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert failures == []
    assert get(stub, "atomic").count == writers * batches_each * batch


# --- Errors carry rich details, limits, health, reflection ------------------------------------------


def test_invalid_argument_carries_a_bad_request_detail(stub: pb_grpc.StreamStatsStub) -> None:
    err = error_of(lambda: add(stub, "x", [1.0, math.inf]))
    status = rpc_status.from_call(err)
    assert status is not None and status.message == err.details()
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "values[1]"


def test_messages_above_the_limit_are_resource_exhausted(server_factory: Callable[..., str]) -> None:
    with grpc.insecure_channel(server_factory(max_message_bytes=64 * 1024)) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        assert add(stub, "ok", [1.0] * 1000).count == 1000
        err = error_of(lambda: add(stub, "big", [1.0] * 20_000))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_of(lambda: get(stub, "big")).code() == grpc.StatusCode.NOT_FOUND


def test_health_reports_serving_overall_and_for_the_service(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "streamstats.v1.StreamStats"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=T)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
