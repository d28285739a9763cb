"""client.stats() and client.watch(), sync and async, over a real server."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

import streamstats
from streamstats import AsyncClient, Client


def test_stats_is_a_typed_snapshot(server_address: str) -> None:
    with Client(server_address) as client:
        client.create_stream("empty")
        empty = client.stats("empty", quantiles=[0.5], k=2)
        assert (empty.count, empty.mean, empty.median, empty.quantiles, empty.top) == (0, None, None, {}, [])
        client.add_many("s", [1.0, 2.0, 4.0, 8.0])
        stats = client.stats("s", quantiles=[0.5, 0.75, 1], method="linear", k=2)
        assert isinstance(stats, streamstats.Stats)
        assert (stats.count, stats.total_added, stats.min, stats.max) == (4, 4, 1.0, 8.0)
        assert stats.mean == 3.75 and stats.median == 3.0
        assert stats.stddev == pytest.approx(
            math.sqrt(((1 - 3.75) ** 2 + (2 - 3.75) ** 2 + (4 - 3.75) ** 2 + (8 - 3.75) ** 2) / 4)
        )
        assert stats.quantiles == {0.5: 3.0, 0.75: 5.0, 1.0: 8.0}
        assert (stats.top, stats.bottom) == ([8.0, 4.0], [1.0, 2.0])
        assert stats.time.tzinfo is not None
        assert client.stats("s", quantiles=[0.5], method="lower").quantiles == {0.5: 2.0}
        with pytest.raises(streamstats.InvalidArgument, match=r"query.quantiles\[0\]"):
            client.stats("s", quantiles=[2.0])
        with pytest.raises(streamstats.InvalidArgument, match="method"):
            client.stats("s", method="cubic")  # type: ignore[arg-type]
        with pytest.raises(streamstats.StreamNotFound):
            client.stats("missing")


def test_watch_iterates_until_closed(server_address: str) -> None:
    with Client(server_address) as client:
        client.add("w", 1.0)
        with client.watch("w", quantiles=[0.5], min_interval=0.05) as updates:
            first = next(updates)
            assert isinstance(first, streamstats.WatchUpdate)
            assert (first.changes, first.stats.count) == (0, 1)
            client.add_many("w", [2.0, 3.0])
            second = next(updates)
            assert (second.changes, second.stats.count, second.stats.quantiles) == (1, 3, {0.5: 2.0})
            threading.Timer(0.2, updates.close).start()  # from another thread, while next() waits
            assert list(updates) == []


def test_deleting_the_stream_ends_a_watch_with_stream_not_found(server_address: str) -> None:
    with Client(server_address) as client:
        client.add("d", 1.0)
        updates = client.watch("d", min_interval=0.05)
        next(updates)
        client.delete_stream("d")
        with pytest.raises(streamstats.StreamNotFound, match="'d'"):
            next(updates)


async def test_async_stats_and_watch(server_address: str) -> None:
    async with AsyncClient(server_address) as client:
        await client.add_many("a", [5.0, 1.0])
        assert (await client.stats("a", k=1)).top == [5.0]
        async with client.watch("a", min_interval=0.05) as updates:
            first = await anext(updates)
            assert first.stats.count == 2
            await client.add("a", 9.0)
            async for update in updates:
                if update.stats.count == 3:
                    assert update.stats.max == 9.0
                    break
        assert [u async for u in updates] == []  # closed by the with block: it just stops


async def test_cancelling_the_task_that_watches_ends_the_watch(server_address: str) -> None:
    async with AsyncClient(server_address) as client:
        await client.add("c", 1.0)
        first = asyncio.Event()

        async def follow() -> None:
            async for _ in client.watch("c", min_interval=0.05):
                first.set()

        task = asyncio.create_task(follow())
        await asyncio.wait_for(first.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await client.get_stream("c")).count == 1  # the client still works
