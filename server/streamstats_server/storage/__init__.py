"""Durability: the write-ahead log, checkpoints and recovery (engine.py), or nothing (in memory).

The registry calls ``log_*`` for every accepted change and awaits it before applying the change and
answering; each call appends its record before its first await, so records enter the log in the
order the calls were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from streamstats_server.storage.engine import (
    Checkpoint,
    DurableStorage,
    RecoveredStream,
    RecoveryError,
    RecoveryReport,
    StorageConfig,
)
from streamstats_server.storage.snapshot import StreamSnapshot
from streamstats_server.storage.wal import FsyncPolicy, StorageError

__all__ = [
    "Checkpoint",
    "DurableStorage",
    "FsyncPolicy",
    "MemoryStorage",
    "RecoveredStream",
    "RecoveryError",
    "RecoveryReport",
    "Storage",
    "StorageConfig",
    "StorageError",
    "StreamSnapshot",
]


class Storage(Protocol):
    """What the registry needs from storage. Each ``log_*`` returns the record's LSN once durable."""

    async def log_create(
        self, name: str, window_size: int, window_duration_ns: int, create_time_ns: int
    ) -> int: ...

    async def log_add(self, name: str, arrival_ns: int, values: Sequence[float]) -> int: ...

    async def log_delete(self, name: str) -> int: ...

    def checkpoint_due(self) -> bool: ...

    def begin_checkpoint(self) -> Checkpoint | None: ...

    async def close(self) -> None: ...


class MemoryStorage:
    """No durability: for --in-memory, tests and benchmarks."""

    async def log_create(
        self, name: str, window_size: int, window_duration_ns: int, create_time_ns: int
    ) -> int:
        return 0

    async def log_add(self, name: str, arrival_ns: int, values: Sequence[float]) -> int:
        return 0

    async def log_delete(self, name: str) -> int:
        return 0

    def checkpoint_due(self) -> bool:
        return False

    def begin_checkpoint(self) -> Checkpoint | None:
        return None

    async def close(self) -> None:
        return None
