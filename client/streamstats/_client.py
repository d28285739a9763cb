"""The blocking client: one gRPC channel, every call through ``_call`` (see ``_base``)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self, SupportsFloat, TypeVar

import grpc

from streamstats import _base
from streamstats._base import BaseClient, QuantileMethod, WatchCall, rpc_errors
from streamstats._config import ClientConfig
from streamstats._errors import Cancelled
from streamstats._types import AddResult, Stats, Stream, WatchUpdate
from streamstats.v1 import streamstats_pb2, streamstats_pb2_grpc

__all__ = ["Client", "Watch"]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class Client(BaseClient):
    """A blocking streamstats client over one long-lived channel; safe to share across threads.

    Use it as a context manager, or call :meth:`close`, to release the channel::

        with streamstats.Client("127.0.0.1:50051") as client:
            client.add_many("latency", [12.5, 7.0, 31.2])
            print(client.median("latency"))

    Every method takes ``timeout=`` (seconds; default ``config.timeout``) and raises a
    :class:`~streamstats.StreamStatsError` subclass on failure. Reads are retried on UNAVAILABLE
    within that deadline; writes never are.
    """

    def __init__(self, target: str = "127.0.0.1:50051", *, config: ClientConfig | None = None) -> None:
        super().__init__(target, config=config)
        # Connecting is lazy in grpc: this does no I/O, so a client can be made before the
        # server is up.
        self._channel = _base.open_channel(self._target, self._config)
        self._stub = streamstats_pb2_grpc.StreamStatsStub(self._channel)
        self._metadata = _base.call_metadata(self._config)

    def close(self) -> None:
        """Close the channel; calls in flight end with :class:`~streamstats.Cancelled`. Idempotent."""
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        timeout: float | None,
    ) -> _Response:
        deadline = self._deadline(timeout)
        self._check_open()
        with rpc_errors():
            return method(request, timeout=deadline, metadata=self._metadata)

    # Streams.

    def create_stream(
        self,
        name: str,
        *,
        window_size: int = 0,
        window_duration: datetime.timedelta | float | None = None,
        timeout: float | None = None,
    ) -> Stream:
        """Create an empty stream, or return the existing one if its config is the same.

        Args:
            name: 1 to 128 characters: ASCII letters, digits and ``_ . : / -``.
            window_size: Keep only the most recent ``window_size`` values; 0 means no limit.
            window_duration: Keep only values younger than this (a timedelta, or seconds);
                ``None`` or zero means no limit.

        Raises:
            AlreadyExists: The stream exists with another config.
            InvalidArgument: A bad name or window.
        """
        request = _base.create_stream_request(name, window_size, window_duration)
        return _base.stream_from_pb(self._call(self._stub.CreateStream, request, timeout))

    def get_stream(self, name: str, *, timeout: float | None = None) -> Stream:
        """Return a stream's config and counts; :class:`~streamstats.StreamNotFound` if absent."""
        request = _base.get_stream_request(name)
        return _base.stream_from_pb(self._call(self._stub.GetStream, request, timeout))

    def list_streams(
        self, prefix: str = "", *, page_size: int = 0, timeout: float | None = None
    ) -> Iterator[Stream]:
        """Iterate over the streams whose name starts with ``prefix``, ordered by name.

        Pages are fetched lazily as the iterator advances, ``page_size`` streams at a time
        (0: the server's default), each page with its own ``timeout``. Streams created or
        deleted during the walk may or may not be seen.
        """
        first = _base.list_streams_request(prefix, page_size)
        return self._walk_pages(first, timeout)

    def _walk_pages(
        self, request: streamstats_pb2.ListStreamsRequest, timeout: float | None
    ) -> Iterator[Stream]:
        while True:
            page = self._call(self._stub.ListStreams, request, timeout)
            for stream in page.streams:
                yield _base.stream_from_pb(stream)
            if not page.next_page_token:
                return
            request = _base.next_page_request(request, page.next_page_token)

    def delete_stream(self, name: str, *, timeout: float | None = None) -> None:
        """Remove a stream and all its values; :class:`~streamstats.StreamNotFound` if absent."""
        self._call(self._stub.DeleteStream, _base.delete_stream_request(name), timeout)

    # Ingest.

    def add(self, stream: str, value: SupportsFloat, *, timeout: float | None = None) -> AddResult:
        """Append one finite value, creating the stream (with no window) if needed."""
        request = _base.add_num_request(stream, value)
        return _base.add_result_from_pb(self._call(self._stub.AddNum, request, timeout))

    def add_many(
        self, stream: str, values: Iterable[SupportsFloat], *, timeout: float | None = None
    ) -> AddResult:
        """Append values in order, creating the stream (with no window) if needed.

        Every value is checked to be finite before anything is sent, so a bad value changes
        nothing. A batch too large for one message (``config.max_message_bytes``) is sent as
        several consecutive calls, each with its own ``timeout``: the batch is atomic per call,
        **not** across calls, so a failure part-way (e.g. a lost connection) leaves the earlier
        chunks applied, and readers may observe the batch half-added. An empty ``values`` still
        makes one call, which creates the stream.

        Returns:
            The stream's counts after the last call.

        Raises:
            InvalidArgument: A value is NaN or infinite (message names ``values[i]``).
        """
        requests = _base.add_nums_requests(
            stream, _base.finite_values(values), self._config.max_message_bytes
        )
        *leading, last = requests  # never empty: an empty batch is still one request
        for request in leading:
            self._call(self._stub.AddNums, request, timeout)
        response = self._call(self._stub.AddNums, last, timeout)
        return _base.add_result_from_pb(response)

    def stream_values(
        self,
        batches: Iterable[tuple[str, Sequence[SupportsFloat]]],
        *,
        timeout: float | None = None,
    ) -> int:
        """Send ``(stream, values)`` batches over one client-streaming call; return values added.

        Each batch is applied atomically when it arrives (a batch over the message limit is
        split, and is then atomic per part). ``timeout`` bounds the whole call. If a batch is
        rejected (e.g. a NaN) the call raises :class:`~streamstats.InvalidArgument`, and the
        batches before it stay applied: the error message says how many values were. If
        ``batches`` itself raises, the batches it produced before are applied and its exception
        propagates.
        """
        deadline = self._deadline(timeout)
        self._check_open()
        feed = _RequestFeed(_base.stream_nums_requests(batches, self._config.max_message_bytes))
        try:
            with rpc_errors():
                response = self._stub.StreamNums(feed, timeout=deadline, metadata=self._metadata)
        except Exception as exc:
            if feed.error is not None:
                raise feed.error from exc
            raise
        if feed.error is not None:
            raise feed.error
        return response.values_added

    # Queries.

    def median(self, stream: str, *, timeout: float | None = None) -> float | None:
        """The median of the live values (mean of the middle two for an even count); ``None`` if empty."""
        request = _base.find_median_request(stream)
        return _base.median_from_pb(self._call(self._stub.FindMedian, request, timeout))

    def top_k(self, stream: str, k: int, *, timeout: float | None = None) -> list[float]:
        """The ``k`` largest live values, largest first, duplicates kept (fewer if fewer are live)."""
        request = _base.top_k_request(stream, k)
        return _base.values_from_pb(self._call(self._stub.TopK, request, timeout))

    def bottom_k(self, stream: str, k: int, *, timeout: float | None = None) -> list[float]:
        """The ``k`` smallest live values, smallest first, duplicates kept (fewer if fewer are live)."""
        request = _base.bottom_k_request(stream, k)
        return _base.values_from_pb(self._call(self._stub.BottomK, request, timeout))

    def stats(
        self,
        stream: str,
        *,
        quantiles: Iterable[SupportsFloat] = (),
        method: QuantileMethod = "linear",
        k: int = 0,
        timeout: float | None = None,
    ) -> Stats:
        """Every statistic of the live values read at one instant: count, min, max, mean, stddev,
        median, the exact ``quantiles`` (each q in [0, 1]) by numpy's ``method`` (linear, lower,
        higher, nearest), and the ``k`` largest and smallest values (0: none).

        Raises:
            StreamNotFound: No such stream.
            InvalidArgument: A q outside [0, 1] or NaN, more than 100 of them, k above the server's max.
        """
        request = _base.get_stats_request(stream, quantiles, method, k)
        return _base.stats_from_pb(self._call(self._stub.GetStats, request, timeout).stats)

    def watch(
        self,
        stream: str,
        *,
        quantiles: Iterable[SupportsFloat] = (),
        method: QuantileMethod = "linear",
        k: int = 0,
        min_interval: float = 1.0,
        timeout: float | None = None,
    ) -> Watch:
        """Follow a stream's statistics: an iterator of :class:`~streamstats.WatchUpdate`, the first
        at once, then one whenever the stream changed, at most every ``min_interval`` seconds (at
        least 0.01; changes in between are folded into the next update, which is always current).

        A watch has no deadline unless ``timeout`` is given (it is meant to stay open): end it with
        :meth:`Watch.close` (or ``with``), which makes the iterator stop. It ends by itself when the
        server stops (the iterator stops) and raises :class:`~streamstats.StreamNotFound` when the
        stream is deleted::

            with client.watch("latency", quantiles=[0.99], min_interval=0.5) as updates:
                for update in updates:
                    print(update.stats.median, update.stats.quantiles[0.99])
        """
        request = _base.watch_request(stream, quantiles, method, k, min_interval)
        self._check_open()
        deadline = None if timeout is None else self._deadline(timeout)
        with rpc_errors():
            call = self._stub.Watch(request, timeout=deadline, metadata=self._metadata)
        return Watch(call, iter(call))


class Watch(Iterator[WatchUpdate]):
    """The updates of :meth:`Client.watch`: iterate, and :meth:`close` (or leave ``with``) to end."""

    def __init__(self, call: WatchCall, updates: Iterator[Any]) -> None:
        self._call = call
        self._updates = updates
        self._closed = False

    def __next__(self) -> WatchUpdate:
        try:
            with rpc_errors():
                return _base.watch_update_from_pb(next(self._updates))
        except Cancelled:
            if self._closed:
                raise StopIteration from None
            raise

    def close(self) -> None:
        """End the watch (from any thread); the iterator then stops. Idempotent."""
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _RequestFeed(Iterator[streamstats_pb2.AddNumsRequest]):
    """The request iterator grpc drains on its own thread.

    If the caller's batches raise, grpc would log the traceback and fail the call as UNKNOWN,
    losing the exception. Instead the feed keeps it, ends the stream cleanly so everything sent
    so far is settled, and ``stream_values`` re-raises it in the caller's thread.
    """

    def __init__(self, requests: Iterator[streamstats_pb2.AddNumsRequest]) -> None:
        self._requests = requests
        self.error: Exception | None = None

    def __next__(self) -> streamstats_pb2.AddNumsRequest:
        if self.error is not None:
            raise StopIteration
        try:
            return next(self._requests)
        except StopIteration:
            raise
        except Exception as exc:
            self.error = exc
            raise StopIteration from None
