"""Files the journal keeps: on disk, or in memory with the same durability rules (simulation).

The journal needs five things of storage, and their durability is what Raft's safety stands on:

- ``append(name, data)`` adds bytes at the end; they are *not* durable yet;
- ``sync(name)`` makes everything appended so far durable (``fsync``);
- ``truncate(name, size)`` cuts the file; durable at the next ``sync``;
- ``replace(name, data)`` atomically replaces the whole file, durably: a temporary file is
  written and fsynced, renamed over the old one, and the directory is fsynced (a rename is not
  durable until its directory is);
- ``read(name)`` returns the whole file, or None if there is none.

``MemoryStorage`` keeps, per file, the bytes written and the bytes known durable; ``crash()``
throws away what was never synced, as a power cut would. It can also be told to fail writes
(a full or read-only disk), which is how the simulation tests a node that cannot persist.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol


class Storage(Protocol):
    def read(self, name: str) -> bytes | None: ...

    def append(self, name: str, data: bytes) -> None: ...

    def sync(self, name: str) -> None: ...

    def truncate(self, name: str, size: int) -> None: ...

    def replace(self, name: str, data: bytes) -> None: ...

    def close(self) -> None: ...


def fsync_directory(path: str) -> None:
    """Make renames and creations in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskStorage:
    """Files in one directory. ``durable=False`` skips every fsync (``--fsync never``)."""

    def __init__(self, directory: str, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        self._fds: dict[str, int] = {}
        os.makedirs(directory, exist_ok=True)

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            self._fds[name] = fd
        return fd

    def read(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def append(self, name: str, data: bytes) -> None:
        fd = self._fd(name)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def sync(self, name: str) -> None:
        if self.durable:
            os.fsync(self._fd(name))

    def truncate(self, name: str, size: int) -> None:
        os.ftruncate(self._fd(name), size)

    def replace(self, name: str, data: bytes) -> None:
        tmp = self._path(name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        old = self._fds.pop(name, None)
        if old is not None:
            os.close(old)
        os.replace(tmp, self._path(name))
        if self.durable:
            fsync_directory(self.directory)

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()


class MemoryStorage:
    """Files in memory with fsync semantics: ``crash()`` loses what was not synced."""

    def __init__(self, honour_sync: bool = True) -> None:
        self.written: dict[str, bytearray] = {}
        self.durable: dict[str, bytes] = {}
        self.failing = False  # set: every write raises ENOSPC, as a full disk does
        # False: sync() and replace() do not make anything durable (a journal that never
        # fsyncs, as pysyncobj's own): a crash then loses what the node acknowledged.
        self.honour_sync = honour_sync
        self.syncs = 0

    def _check(self) -> None:
        if self.failing:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    def read(self, name: str) -> bytes | None:
        data = self.written.get(name)
        return None if data is None else bytes(data)

    def append(self, name: str, data: bytes) -> None:
        self._check()
        self.written.setdefault(name, bytearray()).extend(data)

    def sync(self, name: str) -> None:
        self._check()
        self.syncs += 1
        if name in self.written and self.honour_sync:
            self.durable[name] = bytes(self.written[name])

    def truncate(self, name: str, size: int) -> None:
        self._check()
        del self.written.setdefault(name, bytearray())[size:]

    def replace(self, name: str, data: bytes) -> None:
        self._check()
        self.syncs += 1
        self.written[name] = bytearray(data)
        if self.honour_sync:
            self.durable[name] = bytes(data)

    def close(self) -> None:
        pass

    def writeback(self) -> None:
        """What the OS does to dirty pages every few seconds, whether anyone synced or not."""
        for name, data in self.written.items():
            self.durable[name] = bytes(data)

    def crash(self, torn_bytes: int = 0) -> None:
        """Lose everything not synced; keep ``torn_bytes`` of the unsynced tail, as a torn write."""
        for name in list(self.written):
            durable = self.durable.get(name)
            if durable is None:
                del self.written[name]
                continue
            tail = bytes(self.written[name][len(durable):len(durable) + torn_bytes]) if torn_bytes else b""
            self.written[name] = bytearray(durable + tail)
