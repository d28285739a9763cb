"""What both SDK clients must do, written once: data, error cases and server-side fault injection.

``test_sdk_sync.py`` and ``test_sdk_async.py`` run the same expectations through ``Client`` and
``AsyncClient``; only the I/O (plain calls versus awaits) differs between them.
"""

from __future__ import annotations

import math
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

import streamstats
from streamstats._base import READ_RPCS, SERVICE_NAME

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor

# --- the round trip --------------------------------------------------------------------------------

FIRST_VALUE = 5.0
MORE_VALUES = [1.0, 9.0, 3.0, 7.0, 3.0]  # with FIRST_VALUE: 1 3 3 5 7 9
MEDIAN = 4.0  # (3 + 5) / 2: the mean of the two middle values
TOP_3 = [9.0, 7.0, 5.0]
BOTTOM_3 = [1.0, 3.0, 3.0]
ALL_DESCENDING = [9.0, 7.0, 5.0, 3.0, 3.0, 1.0]

# --- paging ----------------------------------------------------------------------------------------

PAGED_NAMES = [f"page/{i:02d}" for i in range(11)]
OTHER_NAMES = ["other/a", "pagf", "pag"]  # around the prefix in sort order, so a leak would show
PAGE_PREFIX = "page/"
PAGE_SIZE = 3
PAGES = math.ceil(len(PAGED_NAMES) / PAGE_SIZE)  # 4: more than two pages

# --- chunking --------------------------------------------------------------------------------------

SMALL_MESSAGE_BYTES = 64 * 1024
BIG_BATCH = [float(i) for i in range(100_000)]
BIG_MEDIAN = 49_999.5
BIG_TOP_3 = [99_999.0, 99_998.0, 99_997.0]
# A packed double is 8 bytes, so no fewer calls than this can carry the batch; the SDK's headroom
# for the name and framing may cost one more, not many more.
MIN_CHUNKS = math.ceil(len(BIG_BATCH) * 8 / SMALL_MESSAGE_BYTES)

# --- errors ----------------------------------------------------------------------------------------

EXISTING = "present"  # created with EXISTING_VALUES before every error case runs
EXISTING_VALUES = [1.0, 2.0, 3.0]
MAX_K = 10_000  # the server's default --max-k


@dataclass(frozen=True)
class ErrorCase:
    """One call that must fail with ``error``, whose message must contain every fragment."""

    id: str
    method: str
    args: tuple[Any, ...]
    error: type[streamstats.StreamStatsError]
    fragments: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return self.error.default_code


# Each of these is answered by the server: the SDK must carry its status and its text unchanged.
SERVER_ERRORS = [
    ErrorCase(
        "get-missing", "get_stream", ("missing",), streamstats.StreamNotFound, ("'missing'", "not found")
    ),
    ErrorCase("delete-missing", "delete_stream", ("missing",), streamstats.StreamNotFound, ("'missing'",)),
    ErrorCase("median-missing", "median", ("missing",), streamstats.StreamNotFound, ("'missing'",)),
    ErrorCase("top-k-missing", "top_k", ("missing", 1), streamstats.StreamNotFound, ("'missing'",)),
    ErrorCase("bottom-k-missing", "bottom_k", ("missing", 1), streamstats.StreamNotFound, ("'missing'",)),
    ErrorCase("add-nan", "add", (EXISTING, math.nan), streamstats.InvalidArgument, ("value", "nan")),
    ErrorCase("add-inf", "add", (EXISTING, math.inf), streamstats.InvalidArgument, ("value", "inf")),
    ErrorCase("add-minus-inf", "add", (EXISTING, -math.inf), streamstats.InvalidArgument, ("value", "-inf")),
    ErrorCase(
        "create-bad-name",
        "create_stream",
        ("bad name",),
        streamstats.InvalidArgument,
        ("name", "'bad name'", "' '"),
    ),
    ErrorCase("get-empty-name", "get_stream", ("",), streamstats.InvalidArgument, ("name", "empty")),
    ErrorCase("add-long-name", "add", ("x" * 129, 1.0), streamstats.InvalidArgument, ("stream", "128")),
    ErrorCase("top-k-zero", "top_k", (EXISTING, 0), streamstats.InvalidArgument, ("k", "0")),
    ErrorCase(
        "bottom-k-above-max",
        "bottom_k",
        (EXISTING, MAX_K + 1),
        streamstats.InvalidArgument,
        ("k", str(MAX_K + 1), str(MAX_K)),
    ),
    ErrorCase(
        "negative-window",
        "create_stream",
        ("windowed",),
        streamstats.InvalidArgument,
        ("window_duration", "negative"),
        {"window_duration": -1.5},
    ),
    ErrorCase(
        "negative-page-size",
        "list_streams",
        (),
        streamstats.InvalidArgument,
        ("page_size", "-1"),
        {"page_size": -1},
    ),
    ErrorCase(
        "create-other-config",
        "create_stream",
        (EXISTING,),
        streamstats.AlreadyExists,
        (f"'{EXISTING}'", "already exists"),
        {"window_size": 5},
    ),
    ErrorCase(
        "stream-values-nan",
        "stream_values",
        ([(EXISTING, [4.0]), (EXISTING, [5.0, math.nan])],),
        streamstats.InvalidArgument,
        ("values[1]", "nan", "1 values"),  # the server says how much of the call was applied
    ),
]

# Rejected by the SDK before anything is sent (a value protobuf could not even encode, or a
# batch that add_many would otherwise have split over several calls).
CLIENT_ERRORS = [
    ErrorCase("k-negative", "top_k", (EXISTING, -1), streamstats.InvalidArgument, ("k", "-1")),
    ErrorCase("k-too-big", "bottom_k", (EXISTING, 2**32), streamstats.InvalidArgument, ("k", str(2**32))),
    ErrorCase(
        "window-size-negative",
        "create_stream",
        ("w",),
        streamstats.InvalidArgument,
        ("window_size",),
        {"window_size": -1},
    ),
    ErrorCase(
        "add-many-nan",
        "add_many",
        (EXISTING, [1.0, 2.0, math.nan]),
        streamstats.InvalidArgument,
        ("values[2]", "nan"),
    ),
    ErrorCase(
        "timeout-zero", "get_stream", (EXISTING,), streamstats.InvalidArgument, ("timeout",), {"timeout": 0}
    ),
]


def check_error(error: streamstats.StreamStatsError, case: ErrorCase) -> None:
    assert type(error) is case.error, repr(error)
    assert error.code == case.code
    for fragment in case.fragments:
        assert fragment in error.message, (fragment, error.message)
    assert str(error) == error.message
    assert not isinstance(error, grpc.RpcError)


# --- server-side instruments (real interceptors on a real server, not mocks) ------------------------


def rpc_name(method: str) -> str:
    """'/streamstats.v1.StreamStats/GetStream' -> 'GetStream'."""
    return method.rsplit("/", 1)[-1]


async def _abort_unavailable(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "injected fault: the server is unavailable")


class FaultInjector(_ServerInterceptor):
    """Counts the calls of each RPC reaching the server, and fails the first ``failures`` calls of
    each RPC in ``methods`` with UNAVAILABLE before they reach the servicer (so they change nothing).
    """

    def __init__(self, failures: int = 0, methods: Iterable[str] = ()) -> None:
        self.calls: Counter[str] = Counter()
        self._remaining = {name: failures for name in methods}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(f"/{SERVICE_NAME}/"):
            return handler  # health, reflection: not ours to count
        name = rpc_name(handler_call_details.method)
        self.calls[name] += 1
        if self._remaining.get(name, 0) > 0 and handler.unary_unary is not None:
            self._remaining[name] -= 1
            return grpc.unary_unary_rpc_method_handler(
                _abort_unavailable,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


#: Every read fails twice; AddNum and AddNums fail once. CreateStream, DeleteStream and
#: StreamNums are left alone so a test can still set up and inspect state.
RETRIED_FAILURES = 2
RETRY_TEST_READS = sorted(READ_RPCS)


def retry_config(read_retries: int = RETRIED_FAILURES) -> streamstats.ClientConfig:
    return streamstats.ClientConfig(
        read_retries=read_retries, retry_initial_backoff=0.01, retry_max_backoff=0.05
    )


@contextmanager
def silent_listener() -> Iterator[str]:
    """An address that accepts TCP connections but never speaks HTTP/2.

    A call there waits for the connection until its deadline (DEADLINE_EXCEEDED), or, with no
    deadline, until gRPC's ~20 s handshake timeout (UNAVAILABLE): so only DeadlineExceeded proves
    the deadline was applied.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


SHORT_TIMEOUT = 0.2
#: So long that a call at silent_listener() that ends by DEADLINE_EXCEEDED used the per-call timeout.
NO_DEADLINE_IN_PRACTICE = streamstats.ClientConfig(timeout=3600.0)
#: Where nothing listens at all, either may come first: the failed connect or the deadline.
UNREACHABLE_ERRORS = (streamstats.DeadlineExceeded, streamstats.Unavailable)
