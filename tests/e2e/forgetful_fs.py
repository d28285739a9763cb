"""A file layer that simulates a power cut: everything not made durable by fsync is forgotten.

``kill -9`` cannot show a missing fsync, because the OS keeps its page cache and writes it out later.
This layer sits between storage and the real files and remembers what has been fsynced: each file's
synced length, and which creations, renames and removals a directory fsync has made durable. At
``cut()`` it freezes (every later operation fails, as the machine is off) and rewrites the real
folder to what a disk would hold after the power came back: files cut to their synced length, files
whose creation was never made durable gone, renames and removals not yet made durable undone.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from streamstats_server.storage.fs import OsFileSystem


class PowerIsOff(OSError):
    pass


@dataclass
class _DirJournal:
    """Directory changes since the folder's last fsync, oldest first."""

    created: set[str] = field(default_factory=set)
    renames: list[tuple[str, str, bytes | None]] = field(
        default_factory=list
    )  # src, dst, dst's old durable bytes
    removed: list[tuple[str, bytes]] = field(default_factory=list)  # path, its durable bytes


class ForgetfulFileSystem(OsFileSystem):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._synced: dict[str, int] = {}  # path -> bytes known durable
        self._journal = _DirJournal()
        self._off = False
        self.syncs = 0

    def _check_power(self) -> None:
        if self._off:
            raise PowerIsOff("the power is off")

    def _durable_bytes(self, path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read(self._synced.get(path, 0))

    def open_append(self, path: str) -> BinaryIO:
        with self._lock:
            self._check_power()
            if not os.path.exists(path):
                self._journal.created.add(path)
                self._synced[path] = 0
            else:
                self._synced.setdefault(path, os.path.getsize(path))
            return cast(BinaryIO, _GuardedFile(open(path, "ab", buffering=0), self))

    def open_new(self, path: str) -> BinaryIO:
        with self._lock:
            self._check_power()
            if not os.path.exists(path):
                self._journal.created.add(path)
            self._synced[path] = 0
            return cast(BinaryIO, _GuardedFile(open(path, "wb", buffering=0), self))

    def sync(self, file: BinaryIO) -> None:
        with self._lock:
            self._check_power()
            super().sync(file)
            self._synced[file.name] = os.path.getsize(file.name)
            self.syncs += 1

    def sync_dir(self, path: str) -> None:
        with self._lock:
            self._check_power()
            super().sync_dir(path)
            self._journal = _DirJournal()

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            self._check_power()
            old = self._durable_bytes(dst) if os.path.exists(dst) else None
            self._journal.renames.append((src, dst, old))
            super().rename(src, dst)
            self._synced[dst] = self._synced.pop(src, 0)

    def remove(self, path: str) -> None:
        with self._lock:
            self._check_power()
            self._journal.removed.append((path, self._durable_bytes(path)))
            super().remove(path)
            self._synced.pop(path, None)

    def truncate(self, path: str, size: int) -> None:
        with self._lock:
            self._check_power()
            super().truncate(path, size)
            self._synced[path] = size

    def cut(self) -> None:
        """The power goes off now; the folder is left as the disk would hold it."""
        with self._lock:
            self._off = True
            journal = self._journal
            for src, dst, old in reversed(journal.renames):
                if os.path.exists(dst):
                    os.replace(dst, src)
                    self._synced[src] = self._synced.pop(dst, 0)
                if old is not None:
                    with open(dst, "wb") as file:
                        file.write(old)
                    self._synced[dst] = len(old)
            for path, durable in journal.removed:
                with open(path, "wb") as file:
                    file.write(durable)
                self._synced[path] = len(durable)
            for path, synced in self._synced.items():
                if path in journal.created:
                    if os.path.exists(path):
                        os.remove(path)
                elif os.path.exists(path) and os.path.getsize(path) > synced:
                    with open(path, "r+b") as file:
                        file.truncate(synced)


class _GuardedFile:
    """A real, unbuffered file whose writes fail once the power is off (a buffered one could still
    write its buffer out when closed after the cut)."""

    def __init__(self, file: io.FileIO, fs: ForgetfulFileSystem) -> None:
        self._file = file
        self._fs = fs
        self.name = file.name

    def write(self, data: bytes | memoryview) -> int:
        with self._fs._lock:  # a write racing the cut must land before it or not at all
            self._fs._check_power()
            view = memoryview(data).cast("B")
            written = 0
            while written < len(view):
                written += self._file.write(view[written:]) or 0
            return written

    def flush(self) -> None:
        with self._fs._lock:
            self._fs._check_power()
            self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()
