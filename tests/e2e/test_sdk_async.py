"""streamstats.AsyncClient against a real server over a real channel (expectations in sdk_expectations).

The twin of test_sdk_sync.py: same expectations, awaited; plus what only asyncio has (async
iterables, concurrency on one channel, the event loop the channel is bound to).
"""

from __future__ import annotations

import asyncio
import datetime
import math
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

import streamstats
from streamstats import AddResult, AsyncClient, ClientConfig, Stream, StreamConfig
from tests.e2e import sdk_expectations as want

ServerFactory = Callable[..., str]

# A test at want.silent_listener() can only end by a deadline; this makes a missing one fail fast.
HANGS_WITHOUT_A_DEADLINE = pytest.mark.timeout(30)


@pytest.fixture
async def client(server_address: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server_address) as c:
        yield c


async def call(client: AsyncClient, case: want.ErrorCase) -> None:
    result = getattr(client, case.method)(*case.args, **case.kwargs)
    if isinstance(result, AsyncIterator):
        _ = [item async for item in result]
    else:
        await result


async def names(streams: AsyncIterator[Stream]) -> list[str]:
    return [s.name async for s in streams]


# --- every method round-trips --------------------------------------------------------------------


async def test_round_trip(client: AsyncClient) -> None:
    before = datetime.datetime.now(datetime.UTC)
    created = await client.create_stream("rt", window_size=100, window_duration=datetime.timedelta(minutes=5))
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
    assert await client.create_stream("rt", window_size=100, window_duration=300.0) == created

    assert await client.add("rt", want.FIRST_VALUE) == AddResult(count=1, total_added=1)
    assert await client.add_many("rt", iter(want.MORE_VALUES)) == AddResult(count=6, total_added=6)
    assert await client.median("rt") == want.MEDIAN
    assert await client.top_k("rt", 3) == want.TOP_3
    assert await client.bottom_k("rt", 3) == want.BOTTOM_3
    assert await client.top_k("rt", 100) == want.ALL_DESCENDING
    assert await client.get_stream("rt") == Stream("rt", created.config, 6, 6, created.create_time)

    assert await client.stream_values([("rt", [10.0]), ("other", (1.0, 2.0)), ("third", [])]) == 3
    assert (await client.get_stream("rt")).count == 7
    assert await client.bottom_k("other", 5) == [1.0, 2.0]
    assert (await client.get_stream("third")).count == 0

    assert await names(client.list_streams()) == ["other", "rt", "third"]
    await client.delete_stream("rt")
    with pytest.raises(streamstats.StreamNotFound):
        await client.get_stream("rt")


async def test_empty_stream_and_defaults(client: AsyncClient) -> None:
    created = await client.create_stream("empty")
    assert created.config == StreamConfig()
    assert await client.median("empty") is None
    assert await client.top_k("empty", 5) == []
    assert await client.bottom_k("empty", 5) == []
    assert await client.add_many("made-by-add-many", []) == AddResult(0, 0)
    assert (await client.get_stream("made-by-add-many")).config == StreamConfig()


async def test_windowed_stream(client: AsyncClient) -> None:
    await client.create_stream("win", window_size=2)
    assert await client.add_many("win", [1.0, 2.0, 3.0]) == AddResult(count=2, total_added=3)
    assert await client.bottom_k("win", 5) == [2.0, 3.0]


async def test_concurrent_calls_share_one_channel(client: AsyncClient) -> None:
    results = await asyncio.gather(*(client.add("c", float(i)) for i in range(50)))
    assert sorted(r.total_added for r in results) == list(range(1, 51))
    assert await client.median("c") == 24.5


# --- paging --------------------------------------------------------------------------------------


async def test_list_streams_walks_every_page_lazily(server_factory: ServerFactory) -> None:
    counter = want.FaultInjector()
    async with AsyncClient(server_factory(interceptors=[counter])) as client:
        for name in want.PAGED_NAMES + want.OTHER_NAMES:
            await client.create_stream(name)
        streams = client.list_streams(want.PAGE_PREFIX, page_size=want.PAGE_SIZE)
        assert counter.calls["ListStreams"] == 0
        assert (await anext(streams)).name == want.PAGED_NAMES[0]
        assert counter.calls["ListStreams"] == 1
        assert [want.PAGED_NAMES[0], *await names(streams)] == want.PAGED_NAMES
        assert counter.calls["ListStreams"] == want.PAGES


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", want.SERVER_ERRORS, ids=lambda case: case.id)
async def test_server_errors_map_to_exceptions_with_its_message(
    client: AsyncClient, case: want.ErrorCase
) -> None:
    await client.add_many(want.EXISTING, want.EXISTING_VALUES)
    with pytest.raises(streamstats.StreamStatsError) as info:
        await call(client, case)
    want.check_error(info.value, case)


@pytest.mark.parametrize("case", want.CLIENT_ERRORS, ids=lambda case: case.id)
async def test_client_side_errors_send_nothing(server_factory: ServerFactory, case: want.ErrorCase) -> None:
    counter = want.FaultInjector()
    async with AsyncClient(server_factory(interceptors=[counter])) as client:
        await client.add_many(want.EXISTING, want.EXISTING_VALUES)
        with pytest.raises(streamstats.StreamStatsError) as info:
            await call(client, case)
        want.check_error(info.value, case)
        assert counter.total_calls == 1


async def test_add_many_with_nan_sends_nothing(server_factory: ServerFactory) -> None:
    counter = want.FaultInjector()
    async with AsyncClient(server_factory(interceptors=[counter])) as client:
        with pytest.raises(streamstats.InvalidArgument, match=r"values\[1\]"):
            await client.add_many("s", (x for x in [1.0, math.nan, 2.0]))
        assert counter.total_calls == 0
        with pytest.raises(streamstats.StreamNotFound):
            await client.get_stream("s")


@HANGS_WITHOUT_A_DEADLINE
async def test_timeout_per_call() -> None:
    with want.silent_listener() as address:
        async with AsyncClient(address, config=want.NO_DEADLINE_IN_PRACTICE) as client:
            with pytest.raises(streamstats.DeadlineExceeded):
                await client.get_stream("s", timeout=want.SHORT_TIMEOUT)
            with pytest.raises(streamstats.DeadlineExceeded):
                await client.add("s", 1.0, timeout=want.SHORT_TIMEOUT)


@HANGS_WITHOUT_A_DEADLINE
async def test_timeout_from_config() -> None:
    config = ClientConfig(timeout=want.SHORT_TIMEOUT)
    with want.silent_listener() as address:
        async with AsyncClient(address, config=config) as client:
            with pytest.raises(streamstats.DeadlineExceeded):
                await client.median("s")
            with pytest.raises(streamstats.DeadlineExceeded):
                await client.stream_values([("s", [1.0])])


@HANGS_WITHOUT_A_DEADLINE
async def test_nothing_listening_is_unavailable_or_deadline() -> None:
    with want.silent_listener() as address:
        pass
    async with AsyncClient(address, config=want.NO_DEADLINE_IN_PRACTICE) as client:
        with pytest.raises(want.UNREACHABLE_ERRORS):
            await client.get_stream("s", timeout=want.SHORT_TIMEOUT)


# --- chunking ------------------------------------------------------------------------------------


async def test_add_many_splits_a_batch_over_the_message_limit(server_factory: ServerFactory) -> None:
    counter = want.FaultInjector()
    address = server_factory(max_message_bytes=want.SMALL_MESSAGE_BYTES, interceptors=[counter])
    config = ClientConfig(max_message_bytes=want.SMALL_MESSAGE_BYTES)
    async with AsyncClient(address, config=config) as client:
        n = len(want.BIG_BATCH)
        assert await client.add_many("big", want.BIG_BATCH) == AddResult(count=n, total_added=n)
        assert want.MIN_CHUNKS <= counter.calls["AddNums"] <= want.MIN_CHUNKS + 1
        assert await client.median("big") == want.BIG_MEDIAN
        assert await client.top_k("big", 3) == want.BIG_TOP_3
        assert await client.stream_values([("big-streamed", want.BIG_BATCH)]) == n
        assert await client.median("big-streamed") == want.BIG_MEDIAN


async def test_without_chunking_the_server_refuses_the_batch(server_factory: ServerFactory) -> None:
    address = server_factory(max_message_bytes=want.SMALL_MESSAGE_BYTES)
    async with AsyncClient(address) as client:
        with pytest.raises(streamstats.ResourceExhausted):
            await client.add_many("big", want.BIG_BATCH)
        with pytest.raises(streamstats.StreamNotFound):
            await client.get_stream("big")


# --- client streaming ----------------------------------------------------------------------------


async def test_stream_values_from_an_async_generator(client: AsyncClient) -> None:
    async def batches() -> AsyncIterator[tuple[str, list[float]]]:
        for i in range(30):
            await asyncio.sleep(0)
            yield f"s{i % 3}", [float(i), float(i) + 0.5]

    assert await client.stream_values(batches()) == 60
    assert [(await client.get_stream(f"s{j}")).count for j in range(3)] == [20, 20, 20]
    assert await client.top_k("s2", 1) == [29.5]


async def test_stream_values_from_a_plain_generator(client: AsyncClient) -> None:
    def batches() -> Iterator[tuple[str, list[float]]]:
        for i in range(6):
            yield f"s{i % 2}", [float(i)]

    assert await client.stream_values(batches()) == 6
    assert await client.bottom_k("s1", 5) == [1.0, 3.0, 5.0]


async def test_stream_values_reraises_the_callers_exception(client: AsyncClient) -> None:
    class Boom(Exception):
        pass

    async def batches() -> AsyncIterator[tuple[str, list[float]]]:
        yield "s", [1.0, 2.0]
        raise Boom("producer failed")

    with pytest.raises(Boom, match="producer failed"):
        await client.stream_values(batches())
    assert (await client.get_stream("s")).count == 2


# --- retries -------------------------------------------------------------------------------------


async def test_reads_are_retried_writes_are_not(server_factory: ServerFactory) -> None:
    faults = want.FaultInjector(want.RETRIED_FAILURES, [*want.RETRY_TEST_READS, "AddNum", "AddNums"])
    async with AsyncClient(server_factory(interceptors=[faults]), config=want.retry_config()) as client:
        with pytest.raises(streamstats.Unavailable, match="injected fault"):
            await client.add("s", 1.0)
        with pytest.raises(streamstats.Unavailable, match="injected fault"):
            await client.add_many("s", [1.0, 2.0])
        assert (faults.calls["AddNum"], faults.calls["AddNums"]) == (1, 1)
        with pytest.raises(streamstats.StreamNotFound):
            await client.get_stream("s")

        await client.stream_values([("s", [1.0, 2.0, 3.0])])
        assert await client.median("s") == 2.0
        assert await client.top_k("s", 1) == [3.0]
        assert await client.bottom_k("s", 1) == [1.0]
        assert (await client.stats("s")).count == 3
        assert await names(client.list_streams()) == ["s"]
        attempts = 1 + want.RETRIED_FAILURES
        assert {rpc: faults.calls[rpc] for rpc in want.RETRY_TEST_READS} == dict.fromkeys(
            want.RETRY_TEST_READS, attempts
        )


async def test_no_retries_when_disabled(server_factory: ServerFactory) -> None:
    faults = want.FaultInjector(1, ["GetStream"])
    async with AsyncClient(server_factory(interceptors=[faults]), config=want.retry_config(0)) as client:
        with pytest.raises(streamstats.Unavailable):
            await client.get_stream("s")
        assert faults.calls["GetStream"] == 1


# --- closing and the event loop ------------------------------------------------------------------


async def test_async_with_closes_the_client(server_address: str) -> None:
    async with AsyncClient(server_address) as client:
        await client.add("s", 1.0)
        pages = client.list_streams(page_size=1)
    assert client.closed
    with pytest.raises(streamstats.ClientClosed):
        await client.get_stream("s")
    with pytest.raises(streamstats.ClientClosed):
        await anext(pages)
    with pytest.raises(streamstats.ClientClosed):
        async with client:
            pass
    await client.close()


async def test_close_ends_calls_in_flight_as_cancelled(server_address: str) -> None:
    client = AsyncClient(server_address)
    await client.add("s", 0.0)  # opens the channel

    async def batches() -> AsyncIterator[tuple[str, list[float]]]:
        yield "s", [1.0]
        await client.close()
        yield "s", [2.0]

    with pytest.raises(streamstats.StreamStatsError) as info:
        await client.stream_values(batches())
    assert isinstance(info.value, streamstats.Cancelled), repr(info.value)


@HANGS_WITHOUT_A_DEADLINE
async def test_close_ends_a_unary_call_in_flight() -> None:
    with want.silent_listener() as address:
        client = AsyncClient(address, config=want.NO_DEADLINE_IN_PRACTICE)
        waiting = asyncio.create_task(client.get_stream("s"))
        await asyncio.sleep(0.2)  # let the call start waiting for the server; if not, it fails as closed
        await client.close()
        with pytest.raises(streamstats.ClientClosed):
            await waiting


def test_channel_is_made_in_and_bound_to_the_first_loop(server_address: str) -> None:
    client = AsyncClient(server_address)  # no running loop here, so no channel can exist yet
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert first.run_until_complete(client.add("s", 1.0)) == AddResult(1, 1)
        with pytest.raises(RuntimeError, match="event loop"):
            second.run_until_complete(client.get_stream("s"))
        assert first.run_until_complete(client.median("s")) == 1.0
        first.run_until_complete(client.close())
    finally:
        first.close()
        second.close()


async def test_repr_and_config(server_address: str) -> None:
    config = ClientConfig(timeout=1.5)
    async with AsyncClient(server_address, config=config) as client:
        assert client.config is config
        assert client.target == server_address
        assert repr(client) == f"<AsyncClient target={server_address!r}>"
    assert repr(client).endswith(" closed>")
