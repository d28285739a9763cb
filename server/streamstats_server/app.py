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

from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.config import ServerConfig
from streamstats_server.registry import Registry
from streamstats_server.service import SERVICE_NAME, StreamStatsServicer
from streamstats_server.storage import DurableStorage, RecoveryReport, StorageConfig
from streamstats_server.storage.fs import FileSystem

log = logging.getLogger("streamstats.server")


class BindError(OSError):
    """The server could not listen on the configured address."""


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
        self.registry = Registry()
        self.recovery: RecoveryReport | None = None
        self._interceptors = list(interceptors)
        self._health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def address(self) -> str:
        return format_address(self.config.host, self.port)

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
            ),
            self._fs,
        )
        try:
            recovered, report = await asyncio.to_thread(storage.recover)
        except BaseException:
            await storage.close()
            raise
        self.recovery = report
        self.registry = Registry(storage)
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
        )

    async def start(self) -> None:
        await self._open_storage()
        options = [
            ("grpc.max_receive_message_length", self.config.max_message_bytes),
            ("grpc.max_send_message_length", self.config.max_message_bytes),
            # Without this a second server could silently share our port (and tests on port 0 collide).
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(interceptors=self._interceptors, options=options)
        servicer = StreamStatsServicer(self.registry, max_k=self.config.max_k)
        pb_grpc.add_StreamStatsServicer_to_server(servicer, server)
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
            self._port = server.add_insecure_port(requested)
        except RuntimeError as exc:
            await self.registry.close()
            raise BindError(f"cannot listen on {requested}: {exc}") from exc
        if self._port == 0:
            await self.registry.close()
            raise BindError(f"cannot listen on {requested}: address in use or not available")
        self._server = server
        await server.start()
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, refuse new calls, let calls in flight finish within ``grace`` seconds."""
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace)
            self._server = None
        await self.registry.close()
