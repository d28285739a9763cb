"""The file operations storage uses, behind one small interface.

Storage never calls ``os`` directly: tests substitute a file layer that forgets every byte written
after the last fsync (a power cut), which ``kill -9`` cannot show because the OS keeps its page cache.
Every method blocks; storage calls them off the event loop.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Protocol


class FileSystem(Protocol):
    """What storage needs from a file system. Paths are absolute strings."""

    def open_append(self, path: str) -> BinaryIO:
        """Open for appending, creating the file if needed."""

    def open_new(self, path: str) -> BinaryIO:
        """Create (or truncate) a file for writing."""

    def sync(self, file: BinaryIO) -> None:
        """Make everything written to ``file`` durable."""

    def sync_dir(self, path: str) -> None:
        """Make the creations, renames and removals in folder ``path`` durable."""

    def read(self, path: str) -> bytes: ...

    def listdir(self, path: str) -> list[str]: ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src``."""

    def remove(self, path: str) -> None: ...

    def truncate(self, path: str, size: int) -> None:
        """Cut a file to ``size`` bytes and make that durable."""

    def size(self, path: str) -> int: ...

    def makedirs(self, path: str) -> None: ...


class OsFileSystem:
    """The real thing."""

    def open_append(self, path: str) -> BinaryIO:
        return open(path, "ab")

    def open_new(self, path: str) -> BinaryIO:
        return open(path, "wb")

    def sync(self, file: BinaryIO) -> None:
        file.flush()
        os.fsync(file.fileno())

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read()

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def truncate(self, path: str, size: int) -> None:
        with open(path, "r+b") as file:
            file.truncate(size)
            file.flush()
            os.fsync(file.fileno())

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
