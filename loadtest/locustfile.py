"""Locust load test of streamstats over the generated sync gRPC stubs.

    locust -f loadtest/locustfile.py --headless -u 20 -r 10 -t 30s --host 127.0.0.1:50051 --csv results/locust

(``python -m loadtest.run`` does this against a server it starts; see the README's "Load testing".)

- gRPC runs on gevent (``init_gevent`` below, before any channel); each user opens its own channel in
  ``on_start`` and closes it in ``on_stop``; every call has a deadline (``--rpc-timeout``).
- ``LocustInterceptor`` fires a locust request event for every RPC, named by RPC ("AddNums"),
  request_type "grpc"; a failed call carries its status code in the exception ("NOT_FOUND: ...").
- ``WatchUser`` (``--watch-users`` of the users, 2 by default) each hold a Watch open on a random
  stream for ``--watch-seconds``, then reopen on another. The first update of each is a request
  "Watch open" timed from opening the call; every later update is a request "Watch" whose time is its
  staleness: when it arrived minus its ``stats.time`` (the server's clock). A failure is reported with
  its status code under the name of what it interrupted; the watches we cancel ourselves (at the end
  of a hold, and when the test stops) are not failures.
- The mix (weights of AddNum, AddNums, FindMedian, TopK, BottomK, GetStats; batch size; k; quantiles;
  how many streams, which fraction windowed, window size) comes from the custom options below, each
  defaulting to an environment variable ``LOADTEST_*``. The master (or the local runner) creates the
  streams and pre-fills them at test start with big AddNums batches, outside the measured calls.
- Locust keeps sub-100 ms times at whole milliseconds, so every call's latency is also recorded in
  nanoseconds in a log-linear histogram (``loadtest/histogram.py``). Workers send theirs to the master
  with each stats report; the master (or the local runner) prints the µs table at exit and writes it to
  ``<--csv prefix>_latency_us.csv`` (or ``--latency-csv``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# Locust adds only the working directory and this file's folder to sys.path; make `loadtest.*`
# importable whatever the working directory is.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gevent  # noqa: E402
import grpc  # noqa: E402
import grpc.experimental.gevent as grpc_gevent  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402
from locust import User, events, task  # noqa: E402
from locust import stats as locust_stats  # noqa: E402
from locust.argument_parser import LocustArgumentParser  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.event import EventHook  # noqa: E402
from locust.exception import LocustError  # noqa: E402
from locust.runners import MasterRunner, WorkerRunner  # noqa: E402

from loadtest.report import LatencyReport  # noqa: E402
from streamstats.v1 import streamstats_pb2, streamstats_pb2_grpc  # noqa: E402

# gRPC's sync API must run on gevent's loop, not on threads locust cannot see; before any channel.
grpc_gevent.init_gevent()

logger = logging.getLogger("streamstats.loadtest")
stats_logger = logging.getLogger("locust.stats_logger")  # where locust prints its own tables

REQUEST_TYPE = "grpc"
WIRE_KEY = "streamstats_latency"
SETUP_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
MAX_QUANTILES = 100  # the server's limit per StatsQuery
MIN_WATCH_INTERVAL_S = 0.01  # the server's: a shorter min_interval is INVALID_ARGUMENT
WATCH_RETRY_S = 1.0  # pause after a failed Watch, so that a refusing server is not hammered
WATCH_OPEN, WATCH_UPDATE = "Watch open", "Watch"  # request names of a watch's first and later updates

Listener = TypeVar("Listener", bound=Callable[..., None])


def listen(hook: EventHook) -> Callable[[Listener], Listener]:
    """``@hook.add_listener``, typed (locust's EventHook is not)."""
    add_listener: Callable[[Listener], object] = hook.add_listener

    def decorate(listener: Listener) -> Listener:
        add_listener(listener)
        return listener

    return decorate


# -- options -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    flag: str
    type: type[int] | type[float] | type[str]
    default: int | float | str
    help: str

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def env_var(self) -> str:
        return "LOADTEST_" + self.dest.upper()


OPTIONS = (
    Option("--weight-add-num", int, 40, "relative weight of AddNum (one value) calls"),
    Option("--weight-add-nums", int, 10, "relative weight of AddNums (a batch) calls"),
    Option("--weight-median", int, 30, "relative weight of FindMedian calls"),
    Option("--weight-top-k", int, 10, "relative weight of TopK calls"),
    Option("--weight-bottom-k", int, 10, "relative weight of BottomK calls"),
    Option("--weight-stats", int, 10, "relative weight of GetStats calls"),
    Option(
        "--quantiles", str, "0.5,0.9,0.99", "the quantiles each GetStats and Watch asks for (comma-separated)"
    ),
    Option(
        "--watch-users",
        int,
        2,
        "of the --users, how many each hold a Watch open (the rest make calls; 0: none)",
    ),
    Option("--watch-interval", float, 0.1, "min_interval of each Watch (s; the server's minimum is 0.01)"),
    Option(
        "--watch-seconds",
        float,
        10.0,
        "how long a watch user holds one Watch before moving to another stream",
    ),
    Option("--batch-size", int, 100, "values per AddNums call"),
    Option("--k", int, 10, "k of TopK, BottomK, GetStats and Watch (at most the server's --max-k)"),
    Option("--streams", int, 100, "how many streams the users spread their calls over"),
    Option("--windowed-fraction", float, 0.5, "fraction of the streams that keep a window"),
    Option("--window-size", int, 10_000, "window of a windowed stream: keep its last N values"),
    Option(
        "--window-seconds", float, 0.0, "window of a windowed stream: keep values younger than this (0: none)"
    ),
    Option("--prefill", int, 10_000, "values per stream before the test (a windowed one: at most its size)"),
    Option("--prefill-batch", int, 10_000, "values per AddNums call while pre-filling"),
    Option("--stream-prefix", str, "loadtest-", "prefix of the test's stream names"),
    Option("--wait-ms", float, 10.0, "mean think time of a user between calls, uniform in [0, 2x] (ms)"),
    Option("--rpc-timeout", float, 5.0, "deadline of every call (s)"),
    Option(
        "--latency-csv",
        str,
        "",
        "where to write the µs latency table (default: <--csv prefix>_latency_us.csv)",
    ),
)


@listen(events.init_command_line_parser)
def _add_options(parser: LocustArgumentParser, **_kwargs: Any) -> None:
    for option in OPTIONS:
        parser.add_argument(
            option.flag,
            type=option.type,
            default=option.default,
            env_var=option.env_var,
            help=f"streamstats: {option.help} (${option.env_var}, default {option.default!r})",
        )


@dataclass(frozen=True)
class Mix:
    """The load test's parameters, read from locust's parsed options and checked."""

    weights: tuple[int, ...]
    quantiles: tuple[float, ...]
    watch_users: int
    watch_interval: float
    watch_seconds: float
    batch_size: int
    k: int
    streams: int
    windowed: int
    window_size: int
    window_seconds: float
    prefill: int
    prefill_batch: int
    stream_prefix: str
    wait_ms: float
    rpc_timeout: float
    latency_csv: str

    @classmethod
    def from_options(cls, options: Any) -> Mix:
        def get(flag: str) -> Any:
            option = next(o for o in OPTIONS if o.flag == flag)
            return option.type(getattr(options, option.dest, option.default))

        mix = cls(
            weights=tuple(
                get(flag)
                for flag in (
                    "--weight-add-num",
                    "--weight-add-nums",
                    "--weight-median",
                    "--weight-top-k",
                    "--weight-bottom-k",
                    "--weight-stats",
                )
            ),
            quantiles=_quantiles(get("--quantiles")),
            watch_users=get("--watch-users"),
            watch_interval=get("--watch-interval"),
            watch_seconds=get("--watch-seconds"),
            batch_size=get("--batch-size"),
            k=get("--k"),
            streams=get("--streams"),
            windowed=round(get("--streams") * get("--windowed-fraction")),
            window_size=get("--window-size"),
            window_seconds=get("--window-seconds"),
            prefill=get("--prefill"),
            prefill_batch=get("--prefill-batch"),
            stream_prefix=get("--stream-prefix"),
            wait_ms=get("--wait-ms"),
            rpc_timeout=get("--rpc-timeout"),
            latency_csv=get("--latency-csv"),
        )
        fraction = get("--windowed-fraction")
        checks = (
            (
                min(mix.weights) >= 0 and sum(mix.weights) > 0,
                "the --weight-* options must be >= 0, not all 0",
            ),
            (mix.batch_size >= 1, "--batch-size must be >= 1"),
            (all(0.0 <= q <= 1.0 for q in mix.quantiles), "--quantiles must each be within 0..1"),
            (len(mix.quantiles) <= MAX_QUANTILES, f"--quantiles: at most {MAX_QUANTILES}"),
            (mix.watch_users >= 0, "--watch-users must be >= 0"),
            (
                mix.watch_interval >= MIN_WATCH_INTERVAL_S,
                f"--watch-interval must be >= {MIN_WATCH_INTERVAL_S}",
            ),
            (mix.watch_seconds > 0, "--watch-seconds must be > 0"),
            (mix.k >= 1, "--k must be >= 1"),
            (mix.streams >= 1, "--streams must be >= 1"),
            (0.0 <= fraction <= 1.0, "--windowed-fraction must be within 0..1"),
            (mix.window_size >= 0, "--window-size must be >= 0"),
            (mix.window_seconds >= 0, "--window-seconds must be >= 0"),
            (
                mix.windowed == 0 or mix.window_size > 0 or mix.window_seconds > 0,
                "windowed streams need --window-size or --window-seconds",
            ),
            (mix.prefill >= 0, "--prefill must be >= 0"),
            (mix.prefill_batch >= 1, "--prefill-batch must be >= 1"),
            (mix.wait_ms >= 0, "--wait-ms must be >= 0"),
            (mix.rpc_timeout > 0, "--rpc-timeout must be > 0"),
        )
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise LocustError("streamstats load test: " + "; ".join(problems))
        return mix

    def stream_name(self, i: int) -> str:
        """Streams 0 .. windowed-1 keep a window ("w"), the others everything ("a")."""
        return f"{self.stream_prefix}{'w' if i < self.windowed else 'a'}{i:05d}"

    def stream_config(self, i: int) -> streamstats_pb2.StreamConfig:
        if i >= self.windowed:
            return streamstats_pb2.StreamConfig()
        config = streamstats_pb2.StreamConfig(window_size=self.window_size)
        if self.window_seconds > 0:
            config.window_duration.CopyFrom(_duration(self.window_seconds))
        return config

    def stats_query(self) -> streamstats_pb2.StatsQuery:
        return streamstats_pb2.StatsQuery(quantiles=self.quantiles, k=self.k)

    def prefill_target(self, i: int) -> int:
        if i < self.windowed and self.window_size > 0:
            return min(self.prefill, self.window_size)
        return self.prefill


def _quantiles(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(q) for q in text.split(",") if q.strip())
    except ValueError:
        raise LocustError(
            f"streamstats load test: --quantiles {text!r} is not a comma-separated list"
        ) from None


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def random_values(n: int) -> list[float]:
    """Latency-like values (log-normal, median ~20): many distinct, some duplicates after rounding."""
    return [round(random.lognormvariate(3.0, 1.0), 3) for _ in range(n)]


def grpc_target(host: str | None) -> str:
    """``--host`` as a gRPC target: "HOST:PORT" (a scheme like "grpc://" or "http://" is dropped)."""
    if not host:
        raise LocustError("streamstats load test: --host HOST:PORT is required")
    return host.split("://", 1)[1].rstrip("/") if "://" in host else host


# -- request events ----------------------------------------------------------------------------------


class GrpcFailure(Exception):
    """A failed call as locust reports it: the status code, then the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str | None) -> None:
        super().__init__(f"{code.name}: {details or ''}")
        self.code = code


def rpc_name(method: str | bytes) -> str:
    """ "/streamstats.v1.StreamStats/AddNums" -> "AddNums"."""
    text = method.decode() if isinstance(method, bytes) else method
    return text.rsplit("/", 1)[-1]


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Fires a locust request event (request_type "grpc", name = the RPC) for every unary call."""

    def __init__(self, environment: Environment) -> None:
        self._fire: Callable[..., None] = environment.events.request.fire

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        started = time.perf_counter_ns()
        outcome = continuation(client_call_details, request)  # sync channel: the call has completed
        error = outcome.exception()
        elapsed_ns = time.perf_counter_ns() - started
        exception: Exception | None = None
        response_length = 0
        if error is None:
            response_length = outcome.result().ByteSize()
        elif isinstance(error, grpc.Call):
            exception = GrpcFailure(error.code(), error.details())
        else:
            exception = error
        self._fire(
            request_type=REQUEST_TYPE,
            name=rpc_name(client_call_details.method),
            response_time=elapsed_ns / 1e6,  # locust wants ms
            response_length=response_length,
            response=None,
            context={"latency_ns": elapsed_ns},
            exception=exception,
        )
        return outcome


# -- the user ----------------------------------------------------------------------------------------


class StreamStatsUser(User):
    """One client: its own channel, calls picked at random by the --weight-* options."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.mix = Mix.from_options(environment.parsed_options)
        self._channel: grpc.Channel | None = None
        self._stub: streamstats_pb2_grpc.StreamStatsStub | None = None
        self._calls: tuple[Callable[[str], object], ...] = (  # in the order of Mix.weights
            self._add_num,
            self._add_nums,
            self._median,
            self._top_k,
            self._bottom_k,
            self._stats,
        )

    def wait_time(self) -> float:
        return random.uniform(0.0, 2.0 * self.mix.wait_ms / 1000.0)

    def on_start(self) -> None:
        self._channel = grpc.insecure_channel(grpc_target(self.host))
        intercepted = grpc.intercept_channel(self._channel, LocustInterceptor(self.environment))
        self._stub = streamstats_pb2_grpc.StreamStatsStub(intercepted)

    def on_stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    @property
    def stub(self) -> streamstats_pb2_grpc.StreamStatsStub:
        if self._stub is None:
            raise LocustError("the user's channel is not open")
        return self._stub

    @task
    def call(self) -> None:
        stream = self.mix.stream_name(random.randrange(self.mix.streams))
        (chosen,) = random.choices(self._calls, weights=self.mix.weights)
        with contextlib.suppress(grpc.RpcError):  # the interceptor has reported it, with its status code
            chosen(stream)

    def _add_num(self, stream: str) -> object:
        request = streamstats_pb2.AddNumRequest(stream=stream, value=random_values(1)[0])
        return self.stub.AddNum(request, timeout=self.mix.rpc_timeout)

    def _add_nums(self, stream: str) -> object:
        request = streamstats_pb2.AddNumsRequest(stream=stream, values=random_values(self.mix.batch_size))
        return self.stub.AddNums(request, timeout=self.mix.rpc_timeout)

    def _median(self, stream: str) -> object:
        request = streamstats_pb2.FindMedianRequest(stream=stream)
        return self.stub.FindMedian(request, timeout=self.mix.rpc_timeout)

    def _top_k(self, stream: str) -> object:
        request = streamstats_pb2.TopKRequest(stream=stream, k=self.mix.k)
        return self.stub.TopK(request, timeout=self.mix.rpc_timeout)

    def _bottom_k(self, stream: str) -> object:
        request = streamstats_pb2.BottomKRequest(stream=stream, k=self.mix.k)
        return self.stub.BottomK(request, timeout=self.mix.rpc_timeout)

    def _stats(self, stream: str) -> object:
        request = streamstats_pb2.GetStatsRequest(stream=stream, query=self.mix.stats_query())
        return self.stub.GetStats(request, timeout=self.mix.rpc_timeout)


class _OpenWatch:
    """A Watch call and whether we cancelled it: our own CANCELLED (end of a hold, test stopping) is
    how a watch ends normally, anyone else's is a failure."""

    def __init__(self, call: Any) -> None:
        self.call = call  # grpc's call iterator: grpc-stubs types cancel() loosely, so Any
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.call.cancel()


# The watches open in this process, so that stopping the test ends them at once: a watch never ends by
# itself, and a user told to stop gracefully (--stop-timeout) would otherwise hold it until its hold ends.
_open_watches: set[_OpenWatch] = set()


class WatchUser(User):
    """Holds a Watch open on a random stream for --watch-seconds, then reopens on another stream.

    The first update is a "Watch open" event timed from opening the call (what a new watcher waits).
    Each later update is a "Watch" event whose time is its staleness: when it arrived minus its
    ``stats.time``, i.e. how old the pushed statistics are on arrival. Not the first update's: watchers
    of one query share the snapshot of an unchanged stream, so a new watch's first update can carry
    the time another watcher's snapshot was taken, long before this watch was opened.
    """

    fixed_count = 2  # --watch-users, set at init (see _apply_watch_users)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.mix = Mix.from_options(environment.parsed_options)
        self._channel: grpc.Channel | None = None
        self._watch: _OpenWatch | None = None
        self._stream = -1
        self._failed = False
        self._fire: Callable[..., None] = environment.events.request.fire

    def wait_time(self) -> float:
        return WATCH_RETRY_S if self._failed else 0.0

    def on_start(self) -> None:
        self._channel = grpc.insecure_channel(grpc_target(self.host))

    def on_stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()  # a watch never ends by itself: end it now, not at its deadline
        if self._channel is not None:
            self._channel.close()
        self._channel = self._watch = None

    def _next_stream(self) -> int:
        """A random stream, another than the last one when there is another."""
        if self._stream < 0 or self.mix.streams == 1:
            return random.randrange(self.mix.streams)
        choice = random.randrange(self.mix.streams - 1)  # then skip over the last one
        return choice + 1 if choice >= self._stream else choice

    @task
    def watch(self) -> None:
        if self._channel is None:
            raise LocustError("the user's channel is not open")
        self._stream = self._next_stream()
        request = streamstats_pb2.WatchRequest(
            stream=self.mix.stream_name(self._stream),
            query=self.mix.stats_query(),
            min_interval=_duration(self.mix.watch_interval),
        )
        stub = streamstats_pb2_grpc.StreamStatsStub(self._channel)
        # The deadline only backs up the hold timer below: a watch that reaches it has hung.
        watch = _OpenWatch(stub.Watch(request, timeout=self.mix.watch_seconds + self.mix.rpc_timeout))
        self._watch = watch
        _open_watches.add(watch)
        # A timer, not a check per update: a stream that does not change sends no update to check on.
        hold = gevent.spawn_later(self.mix.watch_seconds, watch.cancel)
        name, since_ns = WATCH_OPEN, time.perf_counter_ns()
        self._failed = False
        try:
            for update in watch.call:
                if name == WATCH_OPEN:
                    self._report(name, time.perf_counter_ns() - since_ns, update.ByteSize())
                    name = WATCH_UPDATE
                else:
                    self._report(name, time.time_ns() - update.stats.time.ToNanoseconds(), update.ByteSize())
                since_ns = time.perf_counter_ns()
            # The call ended OK: the server shut down. The next open will tell whether it is back.
        except grpc.RpcError as error:
            if not (
                watch.cancelled and isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.CANCELLED
            ):
                self._failed = True
                code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
                details = error.details() if isinstance(error, grpc.Call) else str(error)
                self._report(name, time.perf_counter_ns() - since_ns, 0, GrpcFailure(code, details))
        finally:
            hold.kill(block=False)
            watch.cancel()  # also when this greenlet is being killed: the call must not outlive it
            _open_watches.discard(watch)
            self._watch = None

    def _report(self, name: str, latency_ns: int, length: int, exception: Exception | None = None) -> None:
        latency_ns = max(0, latency_ns)  # staleness across two clocks can come out negative
        self._fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=latency_ns / 1e6,
            response_length=length,
            response=None,
            context={"latency_ns": latency_ns},
            exception=exception,
        )


# -- setup: create and pre-fill the streams, once per run, on the master or the local runner -------


def prefill(target: str, mix: Mix) -> int:
    """Create every stream (same config again is fine) and add values until each holds its target.

    Returns how many values were added. Not measured: these calls go over a channel of their own.
    """
    added = 0
    with grpc.insecure_channel(target) as channel:
        stub = streamstats_pb2_grpc.StreamStatsStub(channel)
        for i in range(mix.streams):
            name = mix.stream_name(i)
            try:
                stream = stub.CreateStream(
                    streamstats_pb2.CreateStreamRequest(name=name, config=mix.stream_config(i)),
                    timeout=CONNECT_TIMEOUT_S if i == 0 else SETUP_TIMEOUT_S,
                    wait_for_ready=i == 0,  # the first call waits a little for the server to come up
                )
            except grpc.RpcError as error:
                if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.ALREADY_EXISTS:
                    raise LocustError(
                        f"stream {name} exists with another window; use another --stream-prefix"
                    ) from error
                raise
            missing = mix.prefill_target(i) - stream.count
            while missing > 0:
                batch = min(missing, mix.prefill_batch)
                stub.AddNums(
                    streamstats_pb2.AddNumsRequest(stream=name, values=random_values(batch)),
                    timeout=SETUP_TIMEOUT_S,
                )
                missing -= batch
                added += batch
    return added


# -- the µs histograms: record, ship to the master, print at exit -----------------------------------


class _Run:
    """This process's part of the run (one locust process runs one locustfile)."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.report = LatencyReport()
        self.started: float | None = None
        self.stopped: float | None = None
        self.set_up: set[tuple[str, Mix]] = set()

    def duration(self) -> float:
        if self.started is None:
            return 0.0
        return (self.stopped if self.stopped is not None else time.perf_counter()) - self.started


_run = _Run()


@listen(events.init)
def _on_init(environment: Environment, **_kwargs: Any) -> None:
    _run.environment = environment
    try:
        Mix.from_options(environment.parsed_options)  # fail at start on bad options, not in every user
    except LocustError as bad_options:
        logger.error("%s", bad_options)
        sys.exit(2)  # SystemExit passes through locust's event hooks, which log and swallow exceptions
    if isinstance(environment.runner, WorkerRunner):
        listen(environment.events.report_to_master)(_on_report_to_master)
        return
    _apply_watch_users(environment)
    if isinstance(environment.runner, MasterRunner):
        listen(environment.events.worker_report)(_on_worker_report)
    if environment.host:
        # Before the run-time clock starts, so that -t is all load; otherwise at test start.
        setup_error = _set_up_streams(environment)
        if setup_error is not None:
            logger.error("%s", setup_error)
            sys.exit(1)


@listen(events.request)
def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
    **_kwargs: Any,
) -> None:
    if request_type != REQUEST_TYPE:
        return
    latency_ns = (context or {}).get("latency_ns")
    if not isinstance(latency_ns, int):
        latency_ns = round(response_time * 1e6)
    _run.report.record(name, latency_ns, failed=exception is not None)


def _on_report_to_master(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    """On a worker, with each stats report: send what was recorded since the last one."""
    data[WIRE_KEY] = _run.report.to_wire()
    _run.report.clear()


def _on_worker_report(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    """On the master: merge a worker's histograms."""
    if WIRE_KEY in data:
        _run.report.merge(LatencyReport.from_wire(data[WIRE_KEY]))


@listen(events.test_start)
def _on_test_start(environment: Environment, **_kwargs: Any) -> None:
    _run.report.clear()
    _run.started = _run.stopped = None
    if not isinstance(environment.runner, WorkerRunner):
        _apply_watch_users(environment)  # the web UI can change the options between runs
        error = _set_up_streams(environment)  # done at init already when --host was given
        if error is not None:
            logger.error("%s", error)
            environment.process_exit_code = 1
            if environment.runner is not None:
                gevent.spawn(environment.runner.quit)
            return
    _run.started = time.perf_counter()


def _apply_watch_users(environment: Environment) -> None:
    """Make --watch-users the number of WatchUsers the master (or the local runner) dispatches.

    Workers only spawn what they are sent, so only the dispatching side needs this. fixed_count 0
    means "no fixed count" to locust, which would then give WatchUser users by weight: --watch-users 0
    is weight 0 as well (kept in the user classes, so a worker still knows the class by name).
    """
    watch_users = Mix.from_options(environment.parsed_options).watch_users
    WatchUser.fixed_count = watch_users
    WatchUser.weight = 1 if watch_users else 0


def _set_up_streams(environment: Environment) -> str | None:
    """Create and pre-fill the streams on the host, once per host and mix; the error, if any."""
    mix = Mix.from_options(environment.parsed_options)
    target = grpc_target(environment.host)
    if (target, mix) in _run.set_up:
        return None
    began = time.perf_counter()
    try:
        added = prefill(target, mix)
    except (grpc.RpcError, LocustError) as error:
        detail = f"{error.code().name}: {error.details()}" if isinstance(error, grpc.Call) else str(error)
        return f"streamstats load test: setting up the streams on {target} failed: {detail}"
    logger.info(
        "streamstats load test: %d streams (%d windowed) ready on %s, %d values added in %.1f s",
        mix.streams,
        mix.windowed,
        target,
        added,
        time.perf_counter() - began,
    )
    _run.set_up.add((target, mix))
    return None


@listen(events.test_stopping)
def _on_test_stopping(environment: Environment, **_kwargs: Any) -> None:
    for watch in list(_open_watches):
        watch.cancel()
    if _run.started is not None and _run.stopped is None:
        _run.stopped = time.perf_counter()


@listen(events.quitting)
def _on_quitting(environment: Environment, **_kwargs: Any) -> None:
    """Let locust's CSV writer (a greenlet writing every CSV_STATS_INTERVAL_SEC) write the final numbers.

    Locust closes its CSV files at exit without a last write, so its stats CSV would miss up to the
    last second of calls; by now the users have stopped (and a master has its workers' last reports).
    """
    if getattr(environment.parsed_options, "csv_prefix", None) and not isinstance(
        environment.runner, WorkerRunner
    ):
        gevent.sleep(locust_stats.CSV_STATS_INTERVAL_SEC + 0.25)


@listen(events.quit)
def _on_quit(exit_code: int, **_kwargs: Any) -> None:
    """At exit (after the workers' last reports): print the µs table and write its CSV."""
    environment = _run.environment
    if environment is None or isinstance(environment.runner, WorkerRunner):
        return
    duration = _run.duration()
    for line in _run.report.table(duration):
        stats_logger.info(line)
    stats_logger.info("")
    path = latency_csv_path(environment.parsed_options)
    if path is not None:
        _run.report.write_csv(path, duration)
        logger.info("streamstats load test: latency table written to %s", path)


def latency_csv_path(options: Any) -> Path | None:
    explicit = getattr(options, "latency_csv", "")
    if explicit:
        return Path(explicit)
    prefix = getattr(options, "csv_prefix", None)
    return Path(f"{prefix}_latency_us.csv") if prefix else None
