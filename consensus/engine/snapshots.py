"""Snapshots written off the engine thread, durably; restored (and received) safely.

pysyncobj serializes snapshots on its tick thread (or in a forked child) and renames the file
without fsync. With a large state that stalled the tick for longer than the election timeout,
and a machine crash could lose the snapshot that the compacted journal depends on. raftwork
hands pysyncobj its own serializer (pysyncobj's ``serializer``/``deserializer``/
``serializeChecker`` options):

- ``serialize`` runs on the engine thread and only *captures* the state (``StateHooks.capture``:
  a cheap copy-on-write view; machines that cannot offer one are encoded right there), then a
  background runner encodes it, writes ``raft.snapshot`` through a temporary file, fsyncs it,
  renames it and fsyncs the directory. Until that finishes ``check`` says SERIALIZING, and
  pysyncobj neither compacts the journal nor sends the old file to a follower;
- ``deserialize`` (start-up, or a snapshot a leader sent: pysyncobj renamed it into place without
  fsync) first makes the file durable, then restores the state and returns the entries and
  members pysyncobj needs.

- a snapshot a leader sends arrives through ``receive`` (``FollowerRules`` takes it over from
  pysyncobj): chunks go to ``raft.snapshot.incoming``, and only a snapshot the follower decides
  to install replaces ``raft.snapshot`` (``install``). pysyncobj renamed every received snapshot
  over the follower's own, even one older than the follower's log, which then no longer matched
  the file a restart loads;
- an ``install`` supersedes a snapshot still being written from an earlier capture: that write
  is discarded instead of replacing the newer file (it would name a log position before the
  journal's first entry, and a restart would clear the journal to match it).

pysyncobj calls our serializer and then renames ``raft.snapshot.tmp`` into place itself; we never
write that file (the background writer uses its own name), so its rename fails, which pysyncobj
catches, while ``check`` reports the real outcome.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable

import msgpack
from pysyncobj.config import SERIALIZER_STATE

from consensus.engine.storage import fsync_directory

log = logging.getLogger("consensus.engine")

Runner = Callable[[Callable[[], None]], None]


def thread_runner(fn: Callable[[], None]) -> None:
    threading.Thread(target=fn, name="raft-snapshot", daemon=True).start()


def inline_runner(fn: Callable[[], None]) -> None:
    fn()


class SnapshotStore:
    def __init__(self, path: str, hooks: Any, node_class: Callable[[str], Any], *, durable: bool = True,
                 runner: Runner = thread_runner, node_id: str = "") -> None:
        self.path = path
        self.hooks = hooks
        self.node_class = node_class
        self.durable = durable
        self.runner = runner
        self.node_id = node_id
        self._lock = threading.Lock()
        self._state = SERIALIZER_STATE.NOT_SERIALIZING
        self._generation = 0  # raised by every install: a write from an older capture is stale
        self._incoming: Any = None  # (sender, open file) of a snapshot being received
        self.last_capture_seconds = 0.0  # how long the engine thread spent on the last capture

    # -- pysyncobj's serializer options ------------------------------------------------------

    def serialize(self, _tmp_file: str, data: Any) -> None:
        last, prev, cluster = data
        with self._lock:
            if self._state == SERIALIZER_STATE.SERIALIZING:
                return
            self._state = SERIALIZER_STATE.SERIALIZING
        capture = getattr(self.hooks, "capture", None)
        encode: Callable[[], bytes]
        started = time.perf_counter()
        if capture is not None:
            encode = capture()
        else:
            blob = self.hooks.snapshot()
            encode = lambda: blob  # noqa: E731
        self.last_capture_seconds = time.perf_counter() - started
        header = {"v": 1, "last": list(last), "prev": list(prev), "cluster": sorted(n.id for n in cluster)}
        generation = self._generation

        def write() -> None:
            try:
                written = self._write(msgpack.packb(dict(header, state=encode())), generation)
                outcome = SERIALIZER_STATE.SUCCESS if written else SERIALIZER_STATE.FAILED
                if not written:
                    log.info("%s dropped its snapshot at index %d: a newer one from the leader was installed "
                             "meanwhile", self.node_id, last[1])
            except Exception:
                log.exception("%s could not write a snapshot", self.node_id)
                outcome = SERIALIZER_STATE.FAILED
            with self._lock:
                self._state = outcome

        self.runner(write)

    def check(self) -> int:
        with self._lock:
            state = self._state
            if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
                self._state = SERIALIZER_STATE.NOT_SERIALIZING
            return state  # type: ignore[no-any-return]

    def deserialize(self, file_name: str) -> tuple[Any, Any, list[Any]]:
        self._make_durable(file_name)
        with open(file_name, "rb") as f:
            snapshot = msgpack.unpackb(f.read(), raw=False)
        self.hooks.restore(snapshot["state"])
        last, prev = tuple(snapshot["last"]), tuple(snapshot["prev"])
        return last, prev, [self.node_class(node_id) for node_id in snapshot["cluster"]]

    # -- a snapshot sent by the leader --------------------------------------------------------

    def receive(self, sender: Any, chunk: tuple[bytes, bool, bool]) -> str | None:
        """Store one chunk of a leader's snapshot; return the file once it is whole, else None."""
        data, first, last = chunk
        if first:
            self.abandon()
            self._incoming = (sender, open(self.path + ".incoming", "wb"))
        elif self._incoming is None or self._incoming[0] != sender:
            return None  # a chunk of a transfer whose start we did not see: wait for a fresh start
        f = self._incoming[1]
        f.write(data)
        if not last:
            return None
        f.close()
        self._incoming = None
        return self.path + ".incoming"

    def abandon(self) -> None:
        if self._incoming is not None:
            self._incoming[1].close()
            self._incoming = None

    @staticmethod
    def last_entry(file_name: str) -> tuple[int, int]:
        """The (index, term) a snapshot file ends at, read from its header without its state."""
        with open(file_name, "rb") as f:
            unpacker = msgpack.Unpacker(f, raw=False)
            for _ in range(unpacker.read_map_header()):
                key = unpacker.unpack()
                if key == "last":
                    _, index, term = unpacker.unpack()
                    return int(index), int(term)
                unpacker.skip()
        raise ValueError(f"{file_name} names no last entry")

    def install(self, file_name: str) -> None:
        """Make a received snapshot this node's (pysyncobj then loads it through ``deserialize``)."""
        with self._lock:
            self._generation += 1  # a write of an older capture still running must not replace it
            os.replace(file_name, self.path)

    # -- files -------------------------------------------------------------------------------

    def _write(self, blob: bytes, generation: int) -> bool:
        tmp = self.path + ".writing"
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        with self._lock:
            if generation != self._generation:
                os.unlink(tmp)
                return False
            os.replace(tmp, self.path)
        if self.durable:
            fsync_directory(os.path.dirname(self.path) or ".")
        return True

    def _make_durable(self, file_name: str) -> None:
        if not self.durable:
            return
        fd = os.open(file_name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(os.path.dirname(file_name) or ".")
