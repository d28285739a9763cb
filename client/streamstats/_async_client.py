"""The asyncio client: the twin of ``_client.Client`` over a ``grpc.aio`` channel."""

# ASYNC109 asks for asyncio.timeout() instead of timeout parameters; here the parameter is the
# gRPC deadline, which the server sees and which bounds retries, so it must stay a parameter.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self, SupportsFloat, TypeVar

import grpc
import grpc.aio

from streamstats import _base
from streamstats._base import AsyncWatchCall, BaseClient, QuantileMethod, rpc_errors
from streamstats._config import ClientConfig
from streamstats._errors import Cancelled, ClientClosed
from streamstats._types import AddResult, Stats, Stream, WatchUpdate
from streamstats.v1 import streamstats_pb2, streamstats_pb2_grpc

if TYPE_CHECKING:
    from streamstats.v1.streamstats_pb2_grpc import StreamStatsAsyncStub

__all__ = ["AsyncClient", "AsyncWatch"]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

_Batch = tuple[str, Sequence[SupportsFloat]]


class AsyncClient(BaseClient):
    """An asyncio streamstats client over one long-lived ``grpc.aio`` channel.

    The channel is opened on the first call, inside the running event loop, so the client
    may be constructed anywhere; it must then be used from that one loop. Close it with
    ``async with`` or :meth:`close`::

        async with streamstats.AsyncClient("127.0.0.1:50051") as client:
            await client.add_many("latency", [12.5, 7.0, 31.2])
            print(await client.median("latency"))

    Methods mirror :class:`~streamstats.Client`: same arguments, same results, same errors.
    """

    def __init__(self, target: str = "127.0.0.1:50051", *, config: ClientConfig | None = None) -> None:
        super().__init__(target, config=config)
        self._channel: grpc.aio.Channel | None = None
        self._stub_instance: StreamStatsAsyncStub | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._metadata = _base.call_metadata(self._config)
        # Read the TLS files now, as the sync client does: a bad path fails here, not at the first call.
        self._credentials = _base.channel_credentials(self._config)

    def _stub(self) -> StreamStatsAsyncStub:
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._stub_instance is None:
            # An aio channel belongs to the loop it is created in; creating it here, on first
            # use, is what guarantees that loop is the caller's.
            self._channel = _base.open_aio_channel(self._target, self._config, self._credentials)
            self._stub_instance = streamstats_pb2_grpc.StreamStatsStub(self._channel)
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "this AsyncClient is bound to the event loop of its first call; "
                "create one client per event loop"
            )
        return self._stub_instance

    async def close(self) -> None:
        """Close the channel; calls in flight end with :class:`~streamstats.Cancelled`. Idempotent."""
        if not self._closed:
            self._closed = True
            if self._channel is not None:
                await self._channel.close(None)

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        timeout: float | None,
    ) -> _Response:
        deadline = self._deadline(timeout)
        with self._call_errors():
            return await method(request, timeout=deadline, metadata=self._metadata)

    @contextlib.contextmanager
    def _call_errors(self) -> Iterator[None]:
        try:
            with rpc_errors():
                yield
        except asyncio.CancelledError:
            # Closing an aio channel cancels its calls in flight, and awaiting one then raises
            # CancelledError, which the caller's task would take for its own cancellation.
            # Only a cancellation of the task itself may propagate as CancelledError.
            task = asyncio.current_task()
            if self._closed and (task is None or not task.cancelling()):
                raise ClientClosed(f"the client for {self._target} was closed during the call") from None
            raise

    # Streams.

    async def create_stream(
        self,
        name: str,
        *,
        window_size: int = 0,
        window_duration: datetime.timedelta | float | None = None,
        timeout: float | None = None,
    ) -> Stream:
        """Create an empty stream, or return the existing one if its config is the same.

        See :meth:`streamstats.Client.create_stream`.
        """
        request = _base.create_stream_request(name, window_size, window_duration)
        return _base.stream_from_pb(await self._call(self._stub().CreateStream, request, timeout))

    async def get_stream(self, name: str, *, timeout: float | None = None) -> Stream:
        """Return a stream's config and counts; :class:`~streamstats.StreamNotFound` if absent."""
        request = _base.get_stream_request(name)
        return _base.stream_from_pb(await self._call(self._stub().GetStream, request, timeout))

    def list_streams(
        self, prefix: str = "", *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[Stream]:
        """Iterate (``async for``) over the streams whose name starts with ``prefix``, by name.

        Arguments are checked now; pages are fetched lazily, each with its own ``timeout``.
        See :meth:`streamstats.Client.list_streams`.
        """
        first = _base.list_streams_request(prefix, page_size)
        return self._walk_pages(first, timeout)

    async def _walk_pages(
        self, request: streamstats_pb2.ListStreamsRequest, timeout: float | None
    ) -> AsyncIterator[Stream]:
        while True:
            page = await self._call(self._stub().ListStreams, request, timeout)
            for stream in page.streams:
                yield _base.stream_from_pb(stream)
            if not page.next_page_token:
                return
            request = _base.next_page_request(request, page.next_page_token)

    async def delete_stream(self, name: str, *, timeout: float | None = None) -> None:
        """Remove a stream and all its values; :class:`~streamstats.StreamNotFound` if absent."""
        await self._call(self._stub().DeleteStream, _base.delete_stream_request(name), timeout)

    # Ingest.

    async def add(self, stream: str, value: SupportsFloat, *, timeout: float | None = None) -> AddResult:
        """Append one finite value, creating the stream (with no window) if needed."""
        request = _base.add_num_request(stream, value)
        response = await self._call(self._stub().AddNum, request, timeout)
        return _base.add_result_from_pb(response)

    async def add_many(
        self, stream: str, values: Iterable[SupportsFloat], *, timeout: float | None = None
    ) -> AddResult:
        """Append values in order, creating the stream (with no window) if needed.

        Every value is checked to be finite before anything is sent. A batch too large for one
        message is sent as several consecutive calls, each with its own ``timeout``: it is
        atomic per call, **not** across calls. See :meth:`streamstats.Client.add_many`.
        """
        requests = _base.add_nums_requests(
            stream, _base.finite_values(values), self._config.max_message_bytes
        )
        *leading, last = requests  # never empty: an empty batch is still one request
        for request in leading:
            await self._call(self._stub().AddNums, request, timeout)
        response = await self._call(self._stub().AddNums, last, timeout)
        return _base.add_result_from_pb(response)

    async def stream_values(
        self,
        batches: Iterable[_Batch] | AsyncIterable[_Batch],
        *,
        timeout: float | None = None,
    ) -> int:
        """Send ``(stream, values)`` batches over one client-streaming call; return values added.

        ``batches`` may be a plain or an async iterable. Semantics are those of
        :meth:`streamstats.Client.stream_values`.
        """
        deadline = self._deadline(timeout)
        stub = self._stub()
        with self._call_errors():
            call = stub.StreamNums(None, timeout=deadline, metadata=self._metadata)
            try:
                source_error = await self._write_batches(call, batches)
                await call.done_writing()
                response = await call
            except BaseException:
                # Also on task cancellation: do not leave the call open until its deadline.
                call.cancel()
                raise
        if source_error is not None:
            raise source_error
        return response.values_added

    async def _write_batches(
        self,
        call: grpc.aio.StreamUnaryCall[streamstats_pb2.AddNumsRequest, streamstats_pb2.StreamNumsResponse],
        batches: Iterable[_Batch] | AsyncIterable[_Batch],
    ) -> Exception | None:
        """Write every batch; return (not raise) an exception from the caller's ``batches``.

        Returning it lets the call end cleanly first, so what was sent is settled before the
        caller sees the error, exactly as the sync client does.
        """
        iterator = _aiter(batches)
        while True:
            try:
                batch = await anext(iterator)
                requests = _base.batch_requests(batch, self._config.max_message_bytes)
            except StopAsyncIteration:
                return None
            except Exception as exc:
                return exc
            for request in requests:
                try:
                    await call.write(request)
                except asyncio.InvalidStateError:
                    return None  # the call has ended; awaiting it tells how

    # Queries.

    async def median(self, stream: str, *, timeout: float | None = None) -> float | None:
        """The median of the live values (mean of the middle two for an even count); ``None`` if empty."""
        request = _base.find_median_request(stream)
        return _base.median_from_pb(await self._call(self._stub().FindMedian, request, timeout))

    async def top_k(self, stream: str, k: int, *, timeout: float | None = None) -> list[float]:
        """The ``k`` largest live values, largest first, duplicates kept (fewer if fewer are live)."""
        request = _base.top_k_request(stream, k)
        response = await self._call(self._stub().TopK, request, timeout)
        return _base.values_from_pb(response)

    async def bottom_k(self, stream: str, k: int, *, timeout: float | None = None) -> list[float]:
        """The ``k`` smallest live values, smallest first, duplicates kept (fewer if fewer are live)."""
        request = _base.bottom_k_request(stream, k)
        response = await self._call(self._stub().BottomK, request, timeout)
        return _base.values_from_pb(response)

    async def stats(
        self,
        stream: str,
        *,
        quantiles: Iterable[SupportsFloat] = (),
        method: QuantileMethod = "linear",
        k: int = 0,
        timeout: float | None = None,
    ) -> Stats:
        """Every statistic at one instant; see :meth:`streamstats.Client.stats`."""
        request = _base.get_stats_request(stream, quantiles, method, k)
        response = await self._call(self._stub().GetStats, request, timeout)
        return _base.stats_from_pb(response.stats)

    def watch(
        self,
        stream: str,
        *,
        quantiles: Iterable[SupportsFloat] = (),
        method: QuantileMethod = "linear",
        k: int = 0,
        min_interval: float = 1.0,
        timeout: float | None = None,
    ) -> AsyncWatch:
        """Follow a stream's statistics as an async iterator of :class:`~streamstats.WatchUpdate`;
        see :meth:`streamstats.Client.watch`. ``await watch.close()`` (or ``async with``) ends it;
        cancelling the task iterating it ends it too::

            async with client.watch("latency", quantiles=[0.99]) as updates:
                async for update in updates:
                    print(update.stats.median)
        """
        request = _base.watch_request(stream, quantiles, method, k, min_interval)
        deadline = None if timeout is None else self._deadline(timeout)
        call = self._stub().Watch(request, timeout=deadline, metadata=self._metadata)
        return AsyncWatch(self, call)


class AsyncWatch(AsyncIterator[WatchUpdate]):
    """The updates of :meth:`AsyncClient.watch`: ``async for``, and :meth:`close` to end."""

    def __init__(self, client: AsyncClient, call: AsyncWatchCall) -> None:
        self._client = client
        self._call = call
        self._closed = False

    async def __anext__(self) -> WatchUpdate:
        if self._closed:
            raise StopAsyncIteration
        try:
            with self._client._call_errors():
                message = await self._call.read()
        except Cancelled:
            if self._closed:
                raise StopAsyncIteration from None
            raise
        except asyncio.CancelledError:
            # grpc raises CancelledError for a call we cancelled ourselves (close() from another
            # task): that ends the iteration. A cancellation of this task itself propagates.
            task = asyncio.current_task()
            if self._closed and (task is None or not task.cancelling()):
                raise StopAsyncIteration from None
            self._call.cancel()
            raise
        except BaseException:
            self._call.cancel()  # e.g. the iterating task was cancelled: do not leave the call open
            raise
        if not isinstance(message, streamstats_pb2.WatchUpdate):  # grpc.aio.EOF: the server ended it
            raise StopAsyncIteration
        return _base.watch_update_from_pb(message)

    async def close(self) -> None:
        """End the watch; the iterator then stops. Idempotent."""
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _aiter(batches: Iterable[_Batch] | AsyncIterable[_Batch]) -> AsyncIterator[_Batch]:
    if isinstance(batches, AsyncIterable):
        return aiter(batches)
    return _from_sync(batches)


async def _from_sync(batches: Iterable[_Batch]) -> AsyncIterator[_Batch]:
    for batch in batches:
        yield batch
