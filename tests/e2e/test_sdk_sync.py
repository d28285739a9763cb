"""streamstats.Client against a real server over a real channel (expectations in sdk_expectations)."""

from __future__ import annotations

import datetime
import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import streamstats
from streamstats import AddResult, Client, ClientConfig, Stream, StreamConfig
from tests.e2e import sdk_expectations as want

ServerFactory = Callable[..., str]

# A test at want.silent_listener() can only end by a deadline; this makes a missing one fail fast.
HANGS_WITHOUT_A_DEADLINE = pytest.mark.timeout(30)


@pytest.fixture
def client(server_address: str) -> Iterator[Client]:
    with Client(server_address) as c:
        yield c


def call(client: Client, case: want.ErrorCase) -> None:
    result = getattr(client, case.method)(*case.args, **case.kwargs)
    if isinstance(result, Iterator):
        list(result)


# --- every method round-trips --------------------------------------------------------------------


def test_round_trip(client: Client) -> None:
    before = datetime.datetime.now(datetime.UTC)
    created = client.create_stream("rt", window_size=100, window_duration=datetime.timedelta(minutes=5))
    after = datetime.datetime.now(datetime.UTC)
    assert created == Stream(
        name="rt",
        config=StreamConfig(window_size=100, window_duration=datetime.timedelta(minutes=5)),
        count=0,
        total_added=0,
        create_time=created.create_time,
    )
    assert created.create_time.tzinfo is datetime.UTC
    assert (
        before - datetime.timedelta(seconds=1) <= created.create_time <= after + datetime.timedelta(seconds=1)
    )
    # Same config, given as float seconds: returned unchanged.
    assert client.create_stream("rt", window_size=100, window_duration=300.0) == created

    assert client.add("rt", want.FIRST_VALUE) == AddResult(count=1, total_added=1)
    assert client.add_many("rt", iter(want.MORE_VALUES)) == AddResult(count=6, total_added=6)
    assert client.median("rt") == want.MEDIAN
    assert client.top_k("rt", 3) == want.TOP_3
    assert client.bottom_k("rt", 3) == want.BOTTOM_3
    assert client.top_k("rt", 100) == want.ALL_DESCENDING
    assert client.get_stream("rt") == Stream("rt", created.config, 6, 6, created.create_time)

    assert client.stream_values([("rt", [10.0]), ("other", (1.0, 2.0)), ("third", [])]) == 3
    assert client.get_stream("rt").count == 7
    assert client.bottom_k("other", 5) == [1.0, 2.0]
    assert client.get_stream("third").count == 0  # an empty batch still creates its stream

    assert [s.name for s in client.list_streams()] == ["other", "rt", "third"]
    client.delete_stream("rt")
    with pytest.raises(streamstats.StreamNotFound):
        client.get_stream("rt")


def test_empty_stream_and_defaults(client: Client) -> None:
    created = client.create_stream("empty")
    assert created.config == StreamConfig()  # no window: zero size, no duration
    assert client.median("empty") is None
    assert client.top_k("empty", 5) == []
    assert client.bottom_k("empty", 5) == []
    # An empty add_many is still one call, which creates the stream.
    assert client.add_many("made-by-add-many", []) == AddResult(0, 0)
    assert client.get_stream("made-by-add-many").config == StreamConfig()


def test_windowed_stream(client: Client) -> None:
    client.create_stream("win", window_size=2)
    assert client.add_many("win", [1.0, 2.0, 3.0]) == AddResult(count=2, total_added=3)
    assert client.bottom_k("win", 5) == [2.0, 3.0]


# --- paging --------------------------------------------------------------------------------------


def test_list_streams_walks_every_page_lazily(server_factory: ServerFactory) -> None:
    counter = want.FaultInjector()
    with Client(server_factory(interceptors=[counter])) as client:
        for name in want.PAGED_NAMES + want.OTHER_NAMES:
            client.create_stream(name)
        streams = client.list_streams(want.PAGE_PREFIX, page_size=want.PAGE_SIZE)
        assert counter.calls["ListStreams"] == 0  # nothing fetched until iterated
        assert next(streams).name == want.PAGED_NAMES[0]
        assert counter.calls["ListStreams"] == 1
        rest = [s.name for s in streams]
        assert [want.PAGED_NAMES[0], *rest] == want.PAGED_NAMES
        assert counter.calls["ListStreams"] == want.PAGES


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", want.SERVER_ERRORS, ids=lambda case: case.id)
def test_server_errors_map_to_exceptions_with_its_message(client: Client, case: want.ErrorCase) -> None:
    client.add_many(want.EXISTING, want.EXISTING_VALUES)
    with pytest.raises(streamstats.StreamStatsError) as info:
        call(client, case)
    want.check_error(info.value, case)


@pytest.mark.parametrize("case", want.CLIENT_ERRORS, ids=lambda case: case.id)
def test_client_side_errors_send_nothing(server_factory: ServerFactory, case: want.ErrorCase) -> None:
    counter = want.FaultInjector()
    with Client(server_factory(interceptors=[counter])) as client:
        client.add_many(want.EXISTING, want.EXISTING_VALUES)
        with pytest.raises(streamstats.StreamStatsError) as info:
            call(client, case)
        want.check_error(info.value, case)
        assert counter.total_calls == 1


def test_add_many_with_nan_sends_nothing(server_factory: ServerFactory) -> None:
    counter = want.FaultInjector()
    with Client(server_factory(interceptors=[counter])) as client:
        with pytest.raises(streamstats.InvalidArgument, match=r"values\[1\]"):
            client.add_many("s", (x for x in [1.0, math.nan, 2.0]))
        assert counter.total_calls == 0
        with pytest.raises(streamstats.StreamNotFound):
            client.get_stream("s")


@HANGS_WITHOUT_A_DEADLINE
def test_timeout_per_call() -> None:
    with want.silent_listener() as address, Client(address, config=want.NO_DEADLINE_IN_PRACTICE) as client:
        with pytest.raises(streamstats.DeadlineExceeded):
            client.get_stream("s", timeout=want.SHORT_TIMEOUT)
        with pytest.raises(streamstats.DeadlineExceeded):
            client.add("s", 1.0, timeout=want.SHORT_TIMEOUT)


@HANGS_WITHOUT_A_DEADLINE
def test_timeout_from_config() -> None:
    config = ClientConfig(timeout=want.SHORT_TIMEOUT)
    with want.silent_listener() as address, Client(address, config=config) as client:
        with pytest.raises(streamstats.DeadlineExceeded):
            client.median("s")
        with pytest.raises(streamstats.DeadlineExceeded):
            client.stream_values([("s", [1.0])])


@HANGS_WITHOUT_A_DEADLINE
def test_nothing_listening_is_unavailable_or_deadline() -> None:
    with want.silent_listener() as address:
        pass  # closed again: nothing listens there now
    with (
        Client(address, config=want.NO_DEADLINE_IN_PRACTICE) as client,
        pytest.raises(want.UNREACHABLE_ERRORS),
    ):
        client.get_stream("s", timeout=want.SHORT_TIMEOUT)


# --- chunking ------------------------------------------------------------------------------------


def test_add_many_splits_a_batch_over_the_message_limit(server_factory: ServerFactory) -> None:
    counter = want.FaultInjector()
    address = server_factory(max_message_bytes=want.SMALL_MESSAGE_BYTES, interceptors=[counter])
    config = ClientConfig(max_message_bytes=want.SMALL_MESSAGE_BYTES)
    with Client(address, config=config) as client:
        n = len(want.BIG_BATCH)
        assert client.add_many("big", want.BIG_BATCH) == AddResult(count=n, total_added=n)
        assert want.MIN_CHUNKS <= counter.calls["AddNums"] <= want.MIN_CHUNKS + 1
        assert client.median("big") == want.BIG_MEDIAN
        assert client.top_k("big", 3) == want.BIG_TOP_3
        # StreamNums splits an oversized batch the same way.
        assert client.stream_values([("big-streamed", want.BIG_BATCH)]) == n
        assert client.median("big-streamed") == want.BIG_MEDIAN


def test_without_chunking_the_server_refuses_the_batch(server_factory: ServerFactory) -> None:
    """The control for the test above: the default 16 MiB limit does not split 800 KB."""
    address = server_factory(max_message_bytes=want.SMALL_MESSAGE_BYTES)
    with Client(address) as client:
        with pytest.raises(streamstats.ResourceExhausted) as info:
            client.add_many("big", want.BIG_BATCH)
        assert info.value.code == "RESOURCE_EXHAUSTED"
        with pytest.raises(streamstats.StreamNotFound):
            client.get_stream("big")


# --- client streaming ----------------------------------------------------------------------------


def test_stream_values_many_streams_from_a_generator(client: Client) -> None:
    def batches() -> Iterator[tuple[str, list[float]]]:
        for i in range(30):
            yield f"s{i % 3}", [float(i), float(i) + 0.5]

    assert client.stream_values(batches()) == 60
    assert [client.get_stream(f"s{j}").count for j in range(3)] == [20, 20, 20]
    assert client.top_k("s2", 1) == [29.5]


def test_stream_values_reraises_the_callers_exception(client: Client) -> None:
    class Boom(Exception):
        pass

    def batches() -> Iterator[tuple[str, list[float]]]:
        yield "s", [1.0, 2.0]
        raise Boom("producer failed")

    with pytest.raises(Boom, match="producer failed"):
        client.stream_values(batches())
    assert client.get_stream("s").count == 2  # what was sent before stays applied


# --- retries -------------------------------------------------------------------------------------


def test_reads_are_retried_writes_are_not(server_factory: ServerFactory) -> None:
    faults = want.FaultInjector(want.RETRIED_FAILURES, [*want.RETRY_TEST_READS, "AddNum", "AddNums"])
    with Client(server_factory(interceptors=[faults]), config=want.retry_config()) as client:
        with pytest.raises(streamstats.Unavailable, match="injected fault"):
            client.add("s", 1.0)
        with pytest.raises(streamstats.Unavailable, match="injected fault"):
            client.add_many("s", [1.0, 2.0])
        assert (faults.calls["AddNum"], faults.calls["AddNums"]) == (1, 1)  # no retry of a write
        with pytest.raises(streamstats.StreamNotFound):  # and neither write was applied
            client.get_stream("s")

        client.stream_values([("s", [1.0, 2.0, 3.0])])
        assert client.median("s") == 2.0
        assert client.top_k("s", 1) == [3.0]
        assert client.bottom_k("s", 1) == [1.0]
        assert (client.stats("s")).count == 3
        assert [s.name for s in client.list_streams()] == ["s"]
        attempts = 1 + want.RETRIED_FAILURES
        assert {rpc: faults.calls[rpc] for rpc in want.RETRY_TEST_READS} == dict.fromkeys(
            want.RETRY_TEST_READS, attempts
        )


def test_no_retries_when_disabled(server_factory: ServerFactory) -> None:
    faults = want.FaultInjector(1, ["GetStream"])
    with Client(server_factory(interceptors=[faults]), config=want.retry_config(0)) as client:
        with pytest.raises(streamstats.Unavailable):
            client.get_stream("s")
        assert faults.calls["GetStream"] == 1


# --- closing -------------------------------------------------------------------------------------


def test_with_closes_the_client(server_address: str) -> None:
    with Client(server_address) as client:
        client.add("s", 1.0)
        pages = client.list_streams(page_size=1)
    assert client.closed
    with pytest.raises(streamstats.ClientClosed):
        client.get_stream("s")
    with pytest.raises(streamstats.ClientClosed):
        next(pages)
    with pytest.raises(streamstats.ClientClosed), client:
        pass
    client.close()  # idempotent


def test_close_ends_calls_in_flight_as_cancelled(server_address: str) -> None:
    """Closing under a running stream_values cancels it with an SDK error, not a grpc one."""
    client = Client(server_address)

    def batches() -> Iterator[tuple[str, list[float]]]:
        yield "s", [1.0]
        client.close()
        yield "s", [2.0]

    with pytest.raises(streamstats.StreamStatsError) as info:
        client.stream_values(batches())
    assert isinstance(info.value, streamstats.Cancelled), repr(info.value)


@HANGS_WITHOUT_A_DEADLINE
def test_close_ends_a_unary_call_in_flight() -> None:
    errors: list[BaseException] = []
    with want.silent_listener() as address:
        client = Client(address, config=want.NO_DEADLINE_IN_PRACTICE)

        def waiting_call() -> None:
            try:
                client.get_stream("s")
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=waiting_call)
        thread.start()
        time.sleep(0.2)  # let the call start waiting for the server; if not, it fails as closed
        client.close()
        thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], streamstats.Cancelled), repr(errors[0])


def test_repr_and_config(server_address: str) -> None:
    config = ClientConfig(timeout=1.5)
    with Client(server_address, config=config) as client:
        assert client.config is config
        assert client.target == server_address
        assert repr(client) == f"<Client target={server_address!r}>"
    assert repr(client).endswith(" closed>")
