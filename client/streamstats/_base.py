"""Everything the sync and async clients share: no I/O happens here.

The twins in ``_client.py`` and ``_async_client.py`` only open a channel, send what this module
builds, and hand the answers back to this module to convert. Keeping validation, chunking and
conversion here is what keeps the two clients from drifting apart.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, SupportsFloat, SupportsIndex, get_args

import grpc
from google.protobuf import duration_pb2

from streamstats._config import ClientConfig
from streamstats._errors import ClientClosed, InvalidArgument, Unavailable, translate_rpc_error
from streamstats._types import AddResult, Stats, Stream, StreamConfig, WatchUpdate
from streamstats.v1 import streamstats_pb2

SERVICE_NAME: Final = streamstats_pb2.DESCRIPTOR.services_by_name["StreamStats"].full_name

#: Every RPC of the service -> the SDK method that calls it (a unit test checks it is complete).
RPC_METHODS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "CreateStream": "create_stream",
        "GetStream": "get_stream",
        "ListStreams": "list_streams",
        "DeleteStream": "delete_stream",
        "AddNum": "add",
        "AddNums": "add_many",
        "StreamNums": "stream_values",
        "FindMedian": "median",
        "TopK": "top_k",
        "BottomK": "bottom_k",
        "GetStats": "stats",
        "Watch": "watch",
    }
)

#: RPCs that change nothing, so repeating one after UNAVAILABLE cannot apply anything twice.
READ_RPCS: Final = frozenset({"GetStream", "ListStreams", "FindMedian", "TopK", "BottomK", "GetStats"})

#: Quantile definitions, by numpy.quantile's names.
QuantileMethod = Literal["linear", "lower", "higher", "nearest"]
_QUANTILE_METHODS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "linear": streamstats_pb2.QUANTILE_METHOD_LINEAR,
        "lower": streamstats_pb2.QUANTILE_METHOD_LOWER,
        "higher": streamstats_pb2.QUANTILE_METHOD_HIGHER,
        "nearest": streamstats_pb2.QUANTILE_METHOD_NEAREST,
    }
)
assert set(_QUANTILE_METHODS) == set(get_args(QuantileMethod))

_UINT32_MAX: Final = 2**32 - 1
_UINT64_MAX: Final = 2**64 - 1
_INT32_MAX: Final = 2**31 - 1

# An AddNumsRequest is: name (tag, length varint, bytes) + packed values (tag, length varint,
# 8 bytes per double). Both varints fit in 5 bytes below 32 GiB, and gRPC's 5-byte frame prefix
# is not counted against the limit, so this headroom is generous on purpose.
_REQUEST_OVERHEAD_BYTES: Final = 32
_DOUBLE_BYTES: Final = 8


def channel_options(config: ClientConfig) -> list[tuple[str, Any]]:
    """The options every channel of either client is created with."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.enable_retries", 1),
        # Ping during calls every 30 s (the server accepts every 10 s or slower), so a watch over a
        # dead connection fails within ~40 s instead of hanging.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 0),
    ]
    if config.read_retries > 0:
        options.append(("grpc.service_config", service_config_json(config)))
    if config.tls is not None and config.tls.server_name:
        options.append(("grpc.ssl_target_name_override", config.tls.server_name))
    return options


def channel_credentials(config: ClientConfig) -> grpc.ChannelCredentials | None:
    """TLS credentials from ``config.tls`` (its files read now), or None for plaintext."""
    tls = config.tls
    if tls is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read_file("TLSConfig.ca_file", tls.ca_file),
        private_key=_read_file("TLSConfig.key_file", tls.key_file),
        certificate_chain=_read_file("TLSConfig.cert_file", tls.cert_file),
    )


def _read_file(what: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


def call_metadata(config: ClientConfig) -> tuple[tuple[str, str], ...] | None:
    """The metadata every call carries: the bearer token, if any."""
    return (("authorization", f"Bearer {config.token}"),) if config.token else None


def open_channel(target: str, config: ClientConfig) -> grpc.Channel:
    credentials = channel_credentials(config)
    options = channel_options(config)
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def open_aio_channel(
    target: str, config: ClientConfig, credentials: grpc.ChannelCredentials | None
) -> grpc.aio.Channel:
    """``credentials`` come from :func:`channel_credentials`, called when the client was made: the
    channel itself must wait for the event loop, but a missing certificate file should not."""
    options = channel_options(config)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)


def service_config_json(config: ClientConfig) -> str:
    """A gRPC service config that retries reads (only) on UNAVAILABLE.

    Retrying in the channel rather than in Python keeps both clients identical and lets gRPC
    hold the whole sequence of attempts to the call's one deadline.
    """
    retry_policy = {
        "maxAttempts": config.read_retries + 1,
        "initialBackoff": _duration_json(config.retry_initial_backoff),
        "maxBackoff": _duration_json(config.retry_max_backoff),
        "backoffMultiplier": config.retry_backoff_multiplier,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    names = [{"service": SERVICE_NAME, "method": rpc} for rpc in sorted(READ_RPCS)]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": retry_policy}]})


def _duration_json(seconds: float) -> str:
    return f"{seconds:.9f}s"


class WatchCall(Protocol):
    """What the watch iterators need of a grpc streaming call (kept out of their public signatures)."""

    def cancel(self) -> bool: ...


class AsyncWatchCall(WatchCall, Protocol):
    async def read(self) -> Any: ...


# grpc's whole report when a server hangs up while the connection is being set up: what a TLS
# server does to a plaintext client, and a mutual-TLS server to a client without a certificate.
_HUNG_UP_START, _HUNG_UP_END = "failed to connect to all addresses", "Socket closed"
_HUNG_UP_HINT = " (the server closed the connection at once: does it require TLS, or a client certificate?)"


@contextlib.contextmanager
def rpc_errors() -> Iterator[None]:
    """The one place where a gRPC failure becomes an SDK exception (used by both clients)."""
    try:
        yield
    except grpc.RpcError as exc:
        error = translate_rpc_error(exc)
        message = error.message
        if (
            isinstance(error, Unavailable)
            and message.startswith(_HUNG_UP_START)
            and message.endswith(_HUNG_UP_END)
        ):
            error = Unavailable(message + _HUNG_UP_HINT)
        raise error from exc


class BaseClient:
    """State and checks common to :class:`Client` and :class:`AsyncClient`."""

    def __init__(self, target: str, *, config: ClientConfig | None) -> None:
        if not isinstance(target, str) or not target:
            raise ValueError(f"target must be a non-empty 'host:port' string, got {target!r}")
        if config is not None and not isinstance(config, ClientConfig):
            raise TypeError(f"config must be a streamstats.ClientConfig, got {type(config).__name__}")
        self._target = target
        self._config = config if config is not None else ClientConfig()
        self._closed = False

    @property
    def target(self) -> str:
        """The server address this client talks to."""
        return self._target

    @property
    def config(self) -> ClientConfig:
        return self._config

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} target={self._target!r}{state}>"

    def _check_open(self) -> None:
        # grpc's own errors for a closed channel differ between sync and aio (ValueError,
        # UsageError); checking first gives one SDK error for both.
        if self._closed:
            raise ClientClosed(f"the client for {self._target} is closed")

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            return self._config.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise InvalidArgument(_invalid("timeout", "must be a finite number of seconds > 0", timeout))
        return float(timeout)


# Requests. Only what protobuf itself would reject (wrong types, out-of-range integers) is
# checked here; everything else (name syntax, k=0, negative windows, ...) is left to the server,
# so its message is the one the caller sees and the rules live in one place.


def _check_str(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, got {type(value).__name__}")
    return value


def _check_int(field: str, value: object, low: int, high: int, *, shown_low: int | None = None) -> int:
    """``value`` as an int if it fits the proto field's range ``low..high``; the server judges
    the rest. ``shown_low`` is the lower bound to tell the caller when it differs from the proto's
    (k: 0 fits the field, and the server explains why it is wrong, but the fix is "from 1")."""
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{field} must be an int, got {type(value).__name__}")
    number = value.__index__()
    if not low <= number <= high:
        bound = low if shown_low is None else shown_low
        raise InvalidArgument(_invalid(field, f"must be between {bound} and {high}", number))
    return number


def _invalid(field: str, reason: str, value: object) -> str:
    # The server's shape ("field: reason (got value)"), so client- and server-side rejections
    # read alike.
    return f"{field}: {reason} (got {value!r})"


def window_duration_pb(value: datetime.timedelta | float | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        delta = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidArgument(_invalid("window_duration", "must be finite", value))
        try:
            delta = datetime.timedelta(seconds=value)
        except OverflowError:
            raise InvalidArgument(_invalid("window_duration", "is out of range", value)) from None
    else:
        raise TypeError(
            f"window_duration must be a timedelta or seconds as a number, got {type(value).__name__}"
        )
    # Zero means "no time limit" just like unset; sending it unset keeps the stored config
    # equal to one created without a duration, so re-creating it is not ALREADY_EXISTS.
    if not delta:
        return None
    duration = duration_pb2.Duration()
    duration.FromTimedelta(delta)
    return duration


def create_stream_request(
    name: str, window_size: int, window_duration: datetime.timedelta | float | None
) -> streamstats_pb2.CreateStreamRequest:
    config = streamstats_pb2.StreamConfig(
        window_size=_check_int("window_size", window_size, 0, _UINT64_MAX),
        window_duration=window_duration_pb(window_duration),
    )
    return streamstats_pb2.CreateStreamRequest(name=_check_str("name", name), config=config)


def get_stream_request(name: str) -> streamstats_pb2.GetStreamRequest:
    return streamstats_pb2.GetStreamRequest(name=_check_str("name", name))


def list_streams_request(prefix: str, page_size: int) -> streamstats_pb2.ListStreamsRequest:
    return streamstats_pb2.ListStreamsRequest(
        prefix=_check_str("prefix", prefix),
        # Negative sizes go through: the server's INVALID_ARGUMENT names them.
        page_size=_check_int("page_size", page_size, -(2**31), _INT32_MAX),
    )


def next_page_request(
    request: streamstats_pb2.ListStreamsRequest, page_token: str
) -> streamstats_pb2.ListStreamsRequest:
    return streamstats_pb2.ListStreamsRequest(
        prefix=request.prefix, page_size=request.page_size, page_token=page_token
    )


def delete_stream_request(name: str) -> streamstats_pb2.DeleteStreamRequest:
    return streamstats_pb2.DeleteStreamRequest(name=_check_str("name", name))


def add_num_request(stream: str, value: SupportsFloat) -> streamstats_pb2.AddNumRequest:
    # NaN and infinities go through so the server's own message reports them.
    return streamstats_pb2.AddNumRequest(stream=_check_str("stream", stream), value=_real("value", value))


def find_median_request(stream: str) -> streamstats_pb2.FindMedianRequest:
    return streamstats_pb2.FindMedianRequest(stream=_check_str("stream", stream))


def top_k_request(stream: str, k: int) -> streamstats_pb2.TopKRequest:
    return streamstats_pb2.TopKRequest(
        stream=_check_str("stream", stream), k=_check_int("k", k, 0, _UINT32_MAX, shown_low=1)
    )


def bottom_k_request(stream: str, k: int) -> streamstats_pb2.BottomKRequest:
    return streamstats_pb2.BottomKRequest(
        stream=_check_str("stream", stream), k=_check_int("k", k, 0, _UINT32_MAX, shown_low=1)
    )


def stats_query(quantiles: Iterable[SupportsFloat], method: str, k: int) -> streamstats_pb2.StatsQuery:
    if isinstance(quantiles, str | bytes):
        raise TypeError("quantiles must be an iterable of numbers, not a string")
    if method not in _QUANTILE_METHODS:
        raise InvalidArgument(_invalid("method", f"must be one of {', '.join(_QUANTILE_METHODS)}", method))
    return streamstats_pb2.StatsQuery(
        # q outside [0, 1] or NaN goes through: the server's message names it.
        quantiles=[_real(f"quantiles[{i}]", q) for i, q in enumerate(quantiles)],
        quantile_method=_QUANTILE_METHODS[method],  # type: ignore[arg-type]
        k=_check_int("k", k, 0, _UINT32_MAX),
    )


def get_stats_request(
    stream: str, quantiles: Iterable[SupportsFloat], method: str, k: int
) -> streamstats_pb2.GetStatsRequest:
    return streamstats_pb2.GetStatsRequest(
        stream=_check_str("stream", stream), query=stats_query(quantiles, method, k)
    )


def watch_request(
    stream: str, quantiles: Iterable[SupportsFloat], method: str, k: int, min_interval: float
) -> streamstats_pb2.WatchRequest:
    if isinstance(min_interval, bool) or not isinstance(min_interval, int | float):
        raise TypeError(f"min_interval must be a number of seconds, got {min_interval!r}")
    if not math.isfinite(min_interval) or min_interval < 0:
        raise InvalidArgument(
            _invalid("min_interval", "must be a finite number of seconds >= 0", min_interval)
        )
    interval = duration_pb2.Duration()
    interval.FromNanoseconds(round(min_interval * 1e9))
    return streamstats_pb2.WatchRequest(
        stream=_check_str("stream", stream), query=stats_query(quantiles, method, k), min_interval=interval
    )


def _real(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, SupportsFloat):
        raise TypeError(f"{field} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an int beyond the double range
        raise InvalidArgument(_invalid(field, "must be a finite number", value)) from None


def finite_values(values: Iterable[SupportsFloat]) -> list[float]:
    """Every value as a float, or InvalidArgument naming the first that is not finite.

    Checked on the client because ``add_many`` may split a batch over several calls: a bad value
    in a later chunk must not leave the earlier chunks applied.
    """
    if isinstance(values, str | bytes):
        raise TypeError("values must be an iterable of numbers, not a string")
    result: list[float] = []
    for index, value in enumerate(values):
        number = _real(f"values[{index}]", value)
        if not math.isfinite(number):
            raise InvalidArgument(
                _invalid(f"values[{index}]", "must be a finite number (nothing was sent)", number)
            )
        result.append(number)
    return result


def chunk_capacity(stream: str, max_message_bytes: int) -> int:
    """How many values fit in one AddNumsRequest for ``stream`` under ``max_message_bytes``."""
    overhead = len(stream.encode("utf-8")) + _REQUEST_OVERHEAD_BYTES
    return max(1, (max_message_bytes - overhead) // _DOUBLE_BYTES)


def add_nums_requests(
    stream: str, values: Sequence[float], max_message_bytes: int
) -> list[streamstats_pb2.AddNumsRequest]:
    """``values`` split into requests that each fit the message limit; at least one request.

    An empty batch still yields one (empty) request: the server creates the stream for it.
    """
    _check_str("stream", stream)
    step = chunk_capacity(stream, max_message_bytes)
    starts = range(0, len(values), step) if values else range(1)
    return [streamstats_pb2.AddNumsRequest(stream=stream, values=values[i : i + step]) for i in starts]


def stream_nums_requests(
    batches: Iterable[tuple[str, Sequence[SupportsFloat]]], max_message_bytes: int
) -> Iterator[streamstats_pb2.AddNumsRequest]:
    """Messages for StreamNums, one per batch, or several for a batch over the message limit.

    Values are not checked for finiteness here: the server rejects a bad message with a text
    that says how much was applied, which is more useful mid-stream than a client-side stop.
    """
    for batch in batches:
        yield from batch_requests(batch, max_message_bytes)


def batch_requests(
    batch: tuple[str, Sequence[SupportsFloat]], max_message_bytes: int
) -> list[streamstats_pb2.AddNumsRequest]:
    try:
        stream, values = batch
    except (TypeError, ValueError):
        raise TypeError(f"each batch must be a (stream, values) pair, got {batch!r}") from None
    numbers = [_real(f"values[{index}]", value) for index, value in enumerate(values)]
    return add_nums_requests(stream, numbers, max_message_bytes)


# Responses.


def stream_from_pb(message: streamstats_pb2.Stream) -> Stream:
    window_duration: datetime.timedelta | None = None
    if message.config.HasField("window_duration"):
        window_duration = message.config.window_duration.ToTimedelta() or None
    return Stream(
        name=message.name,
        config=StreamConfig(window_size=message.config.window_size, window_duration=window_duration),
        count=message.count,
        total_added=message.total_added,
        create_time=message.create_time.ToDatetime(tzinfo=datetime.UTC),
    )


def add_result_from_pb(
    message: streamstats_pb2.AddNumResponse | streamstats_pb2.AddNumsResponse,
) -> AddResult:
    return AddResult(count=message.count, total_added=message.total_added)


def median_from_pb(message: streamstats_pb2.FindMedianResponse) -> float | None:
    return message.median if message.HasField("median") else None


def values_from_pb(message: streamstats_pb2.TopKResponse | streamstats_pb2.BottomKResponse) -> list[float]:
    return list(message.values)


def _optional(message: streamstats_pb2.Stats, field: str) -> float | None:
    return getattr(message, field) if message.HasField(field) else None  # type: ignore[arg-type]


def stats_from_pb(message: streamstats_pb2.Stats) -> Stats:
    return Stats(
        count=message.count,
        total_added=message.total_added,
        min=_optional(message, "min"),
        max=_optional(message, "max"),
        mean=_optional(message, "mean"),
        stddev=_optional(message, "stddev"),
        median=_optional(message, "median"),
        quantiles={q.q: q.value for q in message.quantiles},
        top=list(message.top),
        bottom=list(message.bottom),
        time=message.time.ToDatetime(tzinfo=datetime.UTC),
    )


def watch_update_from_pb(message: streamstats_pb2.WatchUpdate) -> WatchUpdate:
    return WatchUpdate(stats=stats_from_pb(message.stats), changes=message.changes)
