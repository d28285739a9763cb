"""Shared fixtures: real streamstats servers on 127.0.0.1, port 0, each stopped after its test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import grpc
import pytest

from streamstats_server.app import StreamStatsServer
from streamstats_server.config import ServerConfig
from streamstats_server.storage.fs import FileSystem

TEST_CONFIG = ServerConfig(host="127.0.0.1", port=0, data_dir="", grace_seconds=1.0)


class ThreadedServer:
    """An in-process grpc.aio server on its own event loop in a background thread.

    Sync clients in the test thread and async clients on the test's own loop can both reach it,
    and a test can never block the server's loop.
    """

    def __init__(
        self,
        config: ServerConfig,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        fs: FileSystem | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="streamstats-test-server", daemon=True
        )
        self.server = StreamStatsServer(config, interceptors=interceptors, fs=fs)

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    def start(self) -> str:
        self._thread.start()
        self._run(self.server.start())
        return self.server.address

    def stop(self) -> None:
        try:
            self._run(self.server.stop(0.5))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


ServerFactory = Callable[..., str]


@pytest.fixture(params=["memory", "durable"])
def storage_mode(request: pytest.FixtureRequest) -> str:
    """Every server test runs twice: in memory, and on a durable data dir (fsync always)."""
    mode: str = request.param
    return mode


@pytest.fixture
def server_factory(storage_mode: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Start servers with config overrides (and optional interceptors); returns their addresses."""
    started: list[ThreadedServer] = []

    def start(*, interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (), **overrides: Any) -> str:
        if storage_mode == "durable":
            overrides.setdefault("data_dir", str(tmp_path_factory.mktemp("data")))
        server = ThreadedServer(replace(TEST_CONFIG, **overrides), interceptors)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server_address(server_factory: ServerFactory) -> str:
    """The address ("127.0.0.1:PORT") of a fresh server with the default config."""
    return server_factory()
