"""Assembles the grpc.aio server: the StreamStats servicer, health, reflection and graceful stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from streamstats.v1 import streamstats_pb2
from streamstats_server.auth import Tokens, TokensFileError
from streamstats_server.config import ConfigError, ServerConfig
from streamstats_server.handlers import add_servicer
from streamstats_server.observability.calls import CallObserver, grpc_type
from streamstats_server.observability.metrics import Limits, Metrics
from streamstats_server.registry import Registry
from streamstats_server.service import SERVICE_NAME, StreamStatsServicer
from streamstats_server.storage import DurableStorage, RecoveryReport, StorageConfig
from streamstats_server.storage.fs import FileSystem

log = logging.getLogger("streamstats.server")


class BindError(OSError):
    """The server could not listen on the configured address."""


# Keepalive: ping an idle connection every minute so a vanished client (a watcher on a dead laptop)
# is noticed within ~80 s; accept client pings every 10 s or slower, even between calls (the SDK pings
# every 30 s during calls); a client pinging faster gets two strikes, then GOAWAY ("too_many_pings").
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
)


def _read_pem(flag: str, path: str, marker: bytes) -> bytes:
    """A PEM file's bytes; ConfigError naming the flag and path if unreadable or not PEM."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise ConfigError(f"{flag} {path} is not a PEM file with a {marker.decode()} block")
    return data


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from --tls-cert/--tls-key, requiring client certificates signed by
    --tls-client-ca when given (mutual TLS); None without TLS."""
    if not config.tls:
        return None
    cert = _read_pem("--tls-cert", config.tls_cert, b"CERTIFICATE")
    key = _read_pem("--tls-key", config.tls_key, b"PRIVATE KEY")
    client_ca = (
        _read_pem("--tls-client-ca", config.tls_client_ca, b"CERTIFICATE") if config.tls_client_ca else None
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def load_tokens(config: ServerConfig) -> Tokens | None:
    if not config.auth_tokens:
        return None
    try:
        return Tokens.from_file(config.auth_tokens)
    except TokensFileError as exc:
        raise ConfigError(str(exc)) from None


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StreamStatsServer:
    """One streamstats server: build it, ``await start()``, and ``await stop(grace)`` in a finally."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        fs: FileSystem | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    ) -> None:
        self.config = config
        self._fs = fs
        self.registry = self._new_registry()
        self.recovery: RecoveryReport | None = None
        self._interceptors = list(interceptors)
        self._health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._port: int | None = None
        self.metrics: Metrics | None = None
        self._metrics_port: int | None = None
        if config.metrics_port is not None:
            limits = Limits(config.max_streams, config.max_values, config.max_concurrent_rpcs)
            self.metrics = Metrics(_Gauges(self), limits)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def address(self) -> str:
        return format_address(self.config.host, self.port)

    @property
    def metrics_port(self) -> int | None:
        """The metrics endpoint's port once serving; None without --metrics-port."""
        return self._metrics_port

    @property
    def metrics_url(self) -> str | None:
        """``http://HOST:PORT/metrics`` once serving; None without --metrics-port."""
        if self._metrics_port is None:
            return None
        return f"http://{format_address(self.config.metrics_host, self._metrics_port)}/metrics"

    def _new_registry(self, storage: DurableStorage | None = None) -> Registry:
        return Registry(storage, max_streams=self.config.max_streams, max_values=self.config.max_values)

    async def _open_storage(self) -> None:
        """Recover the data dir (off the loop) and install its streams; nothing to do in memory."""
        if self.config.in_memory:
            return
        storage = DurableStorage(
            StorageConfig(
                data_dir=self.config.data_dir,
                fsync=self.config.fsync,
                checkpoint_bytes=self.config.checkpoint_bytes,
                repair=self.config.repair,
                observe_fsync=self.metrics.fsync.observe if self.metrics is not None else None,
            ),
            self._fs,
        )
        try:
            recovered, report = await asyncio.to_thread(storage.recover)
        except BaseException:
            await storage.close()
            raise
        self.recovery = report
        self.registry = self._new_registry(storage)
        self.registry.load(recovered)
        storage.start()
        if report.deletes_replayed:
            # A crash may have beaten the checkpoint a DeleteStream schedules: the deleted values are
            # still in the log, so write the checkpoint that removes them now.
            self.registry.schedule_checkpoint(force=True)
        log.info(
            "recovered %d streams, %d live values (%d log records replayed, checkpoint %s) from %s",
            report.streams,
            report.values,
            report.records_replayed,
            report.checkpoint or "none",
            storage.directory,
            extra={
                "event": "recovered",
                "streams": report.streams,
                "values": report.values,
                "records_replayed": report.records_replayed,
            },
        )

    async def start(self) -> None:
        """Check the config's files, recover storage, and start serving; ConfigError, BindError or
        RecoveryError say why not."""
        credentials = server_credentials(self.config)
        tokens = load_tokens(self.config)
        await self._open_storage()
        if self.metrics is not None:
            # Before the gRPC port: a port taken by something else stops the start before any call.
            try:
                self._start_metrics()
            except BindError:
                await self.registry.close()
                raise
        options = [
            *KEEPALIVE_OPTIONS,
            ("grpc.max_receive_message_length", self.config.max_message_bytes),
            ("grpc.max_send_message_length", self.config.max_message_bytes),
            # Without this a second server could silently share our port (and tests on port 0 collide).
            ("grpc.so_reuseport", 0),
        ]
        interceptors = [CallObserver(self.metrics), *self._interceptors]
        server = grpc.aio.server(interceptors=interceptors, options=options)
        servicer = StreamStatsServicer(
            self.registry,
            max_k=self.config.max_k,
            tokens=tokens,
            max_concurrent_rpcs=self.config.max_concurrent_rpcs,
        )
        add_servicer(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        requested = format_address(self.config.host, self.config.port)
        try:
            if credentials is None:
                self._port = server.add_insecure_port(requested)
            else:
                self._port = server.add_secure_port(requested, credentials)
        except RuntimeError as exc:
            await self._abandon_start()
            raise BindError(f"cannot listen on {requested}: {exc}") from exc
        if self._port == 0:
            await self._abandon_start()
            raise BindError(f"cannot listen on {requested}: address in use or not available")
        self._server = server
        await server.start()
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def _abandon_start(self) -> None:
        """Release what ``start`` took before failing: the metrics endpoint and storage."""
        await self._stop_metrics()
        await self.registry.close()

    async def _stop_metrics(self) -> None:
        if self.metrics is not None:
            # Off the loop: close() waits for the HTTP thread to notice.
            await asyncio.to_thread(self.metrics.close)

    def _start_metrics(self) -> None:
        assert self.metrics is not None
        service = streamstats_pb2.DESCRIPTOR.services_by_name["StreamStats"]
        self.metrics.initialize(
            service.full_name,
            {m.name: grpc_type(m.client_streaming, m.server_streaming) for m in service.methods},
        )
        try:
            self._metrics_port = self.metrics.serve(self.config.metrics_host, self.config.metrics_port or 0)
        except OSError as exc:
            where = format_address(self.config.metrics_host, self.config.metrics_port or 0)
            raise BindError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from exc
        log.info(
            "metrics on %s",
            self.metrics_url,
            extra={"event": "metrics_listening", "address": self.metrics_url},
        )

    async def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, end watches, refuse new calls, let calls in flight finish within
        ``grace`` seconds."""
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            self.registry.end_watches()  # a Watch never finishes by itself: end them (OK) now
            await self._server.stop(grace)
            self._server = None
        await self._stop_metrics()  # after the drain, which scrapes can watch
        await self.registry.close()


class _Gauges:
    """What the metrics read at scrape time, through the server (recovery replaces its registry)."""

    def __init__(self, server: StreamStatsServer) -> None:
        self._server = server

    def stream_count(self) -> int:
        return len(self._server.registry)

    def values_held(self) -> int:
        return self._server.registry.values_held

    def values_added_total(self) -> int:
        return self._server.registry.values_added_total

    def data_dir(self) -> str:
        return self._server.config.data_dir
