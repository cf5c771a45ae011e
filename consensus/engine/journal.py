"""A durable Raft journal: checksummed records, fsync before acknowledging, atomic term and vote.

pysyncobj's ``FileJournal`` is an mmap that is flushed only on close, and its term/vote file is
renamed without fsync: a machine crash loses entries the node acknowledged and votes it granted
(a lost vote lets a node vote twice in one term: two leaders). ``DurableJournal`` implements
pysyncobj's ``Journal`` interface with these rules:

- an entry is durable before pysyncobj can act on it: ``add`` syncs at once, unless the caller
  groups appends in ``batch()`` (the follower's AppendEntries handler), which syncs once at the
  end, before the acknowledgement is sent;
- ``setCurrentTerm`` (term and vote) is written with an atomic, fsynced replace before it
  returns, so no vote or candidacy leaves the node before it is on disk;
- every record carries a CRC32. On open, a torn last record (a write cut by a crash; never
  acknowledged, since acknowledgements follow the sync) is dropped with a warning; a bad record
  followed by good ones is corruption and the node refuses to start (``JournalCorrupt``);
- when the disk fails (full, read-only, I/O error), the journal raises ``JournalUnavailable``
  from then on and ``failure`` says why; pysyncobj's handler is cut short, so nothing that
  depends on the write (an acknowledgement, a vote) is sent. ``recover()`` rewrites the journal
  and the term/vote from memory once the disk works again.

With ``Storage.durable`` off (``--fsync never``) the same code runs without fsync: a process
crash loses nothing (the OS has the writes), a machine crash may.

Record layout: ``u32 length | u32 crc32(body) | body``, body = ``u64 index | u64 term | command``.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import zlib
from typing import Any, Iterator

import msgpack
from pysyncobj.journal import Journal

from consensus.engine.storage import Storage

log = logging.getLogger("consensus.engine")

JOURNAL = "raft.wal"
META = "raft.meta"
MAGIC = b"RWJOURN1"
_HEAD = struct.Struct("<II")  # length, crc32
_BODY = struct.Struct("<QQ")  # index, term
NO_OP_ENTRY = b"\x01"  # pysyncobj's no-op command (type byte 1), which starts every log


class JournalCorrupt(RuntimeError):
    """The journal holds a damaged record followed by good ones: refuse to start."""


class JournalUnavailable(OSError):
    """The journal cannot be written (disk full, read-only, I/O error)."""


def encode_record(command: bytes, index: int, term: int) -> bytes:
    body = _BODY.pack(index, term) + command
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def decode_records(data: bytes, name: str = JOURNAL) -> tuple[list[tuple[bytes, int, int]], list[int], int]:
    """Parse a journal file: (entries, record offsets, length of the valid prefix)."""
    if not data:
        return [], [], 0
    if not data.startswith(MAGIC):
        raise JournalCorrupt(f"{name} is not a raftwork journal (bad header)")
    entries: list[tuple[bytes, int, int]] = []
    offsets: list[int] = []
    pos = len(MAGIC)
    end = len(data)
    while pos < end:
        if end - pos < _HEAD.size:
            break  # a torn header
        length, crc = _HEAD.unpack_from(data, pos)
        body_end = pos + _HEAD.size + length
        if length < _BODY.size or body_end > end:
            break  # a torn record (or a damaged length, which we cannot tell apart)
        body = data[pos + _HEAD.size:body_end]
        if zlib.crc32(body) != crc:
            if body_end == end:
                break  # the last record is torn
            raise JournalCorrupt(f"{name}: record at byte {pos} fails its checksum and records follow it")
        index, term = _BODY.unpack_from(body)
        entries.append((bytes(body[_BODY.size:]), index, term))
        offsets.append(pos)
        pos = body_end
    return entries, offsets, pos


class DurableJournal(Journal):  # type: ignore[misc]
    """pysyncobj's ``Journal`` on ``Storage``, with the durability rules in the module docstring."""

    def __init__(self, storage: Storage, node_id: str = "") -> None:
        self._storage = storage
        self._node = node_id
        self._batching = 0
        self._dirty = False
        self.failure: str | None = None
        self._meta = self._read_meta()
        self._meta_stored = msgpack.packb(self._meta)
        data = storage.read(JOURNAL) or b""
        self._entries, self._offsets, valid = decode_records(data)
        if not data:
            storage.replace(JOURNAL, MAGIC)
            valid = len(MAGIC)
        elif valid < len(data):
            log.warning("%s dropping a torn journal tail of %d bytes at byte %d (written, never synced, "
                        "so never acknowledged)", node_id, len(data) - valid, valid)
            storage.truncate(JOURNAL, valid)
            storage.sync(JOURNAL)
        self._size = valid
        if not self._entries:
            self.add(NO_OP_ENTRY, 1, self.getCurrentTerm())

    def _read_meta(self) -> dict[str, Any]:
        raw = self._storage.read(META)
        if not raw:
            return {}
        try:
            meta = msgpack.unpackb(raw, raw=False)
        except Exception as exc:
            # The meta file is only ever replaced atomically, so a damaged one is not a torn write.
            raise JournalCorrupt(f"{META} is unreadable: {exc}") from None
        if not isinstance(meta, dict):
            raise JournalCorrupt(f"{META} is unreadable")
        return meta

    # -- failure handling --------------------------------------------------------------------

    def _fail(self, exc: OSError) -> JournalUnavailable:
        if self.failure is None:
            log.error("%s cannot write its journal (%s): not voting or appending until the disk recovers",
                      self._node, exc.strerror or exc)
        self.failure = str(exc.strerror or exc)
        return JournalUnavailable(exc.errno, f"journal unavailable: {self.failure}")

    def _check(self) -> None:
        if self.failure is not None:
            raise JournalUnavailable(f"journal unavailable: {self.failure}")

    def recover(self) -> bool:
        """Rewrite the journal and the term/vote from memory; True once the disk takes writes again."""
        if self.failure is None:
            return True
        try:
            self._rewrite(self._entries)
            self._store_meta(self._meta)
        except OSError:
            return False
        log.warning("%s journal writable again; voting and appending resume", self._node)
        self.failure = None
        return True

    # -- appends -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group appends and truncations: one sync at the end (before an acknowledgement)."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
        if not self._batching:
            self.sync()

    def sync(self) -> None:
        if not self._dirty:
            return
        self._check()
        try:
            self._storage.sync(JOURNAL)
        except OSError as exc:
            raise self._fail(exc) from None
        self._dirty = False

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._check()
        record = encode_record(bytes(command), idx, term)
        try:
            self._storage.append(JOURNAL, record)
        except OSError as exc:
            raise self._fail(exc) from None
        self._entries.append((bytes(command), idx, term))
        self._offsets.append(self._size)
        self._size += len(record)
        self._dirty = True
        if not self._batching:
            self.sync()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Delete entries from position ``entryFrom`` on (a conflict: Raft section 5.3)."""
        if entryFrom >= len(self._entries):
            return
        self._check()
        offset = self._offsets[entryFrom]
        try:
            self._storage.truncate(JOURNAL, offset)
        except OSError as exc:
            raise self._fail(exc) from None
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        self._size = offset
        self._dirty = True
        if not self._batching:
            self.sync()

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop entries before position ``entryTo`` (they are in a snapshot): an atomic rewrite."""
        self._check()
        self._rewrite(self._entries[entryTo:])

    def clear(self) -> None:
        self._check()
        self._rewrite([])

    def _rewrite(self, entries: list[tuple[bytes, int, int]]) -> None:
        records = [encode_record(*e) for e in entries]
        offsets, pos = [], len(MAGIC)
        for record in records:
            offsets.append(pos)
            pos += len(record)
        try:
            self._storage.replace(JOURNAL, MAGIC + b"".join(records))
        except OSError as exc:
            raise self._fail(exc) from None
        self._entries = list(entries)
        self._offsets = offsets
        self._size = pos
        self._dirty = False

    # -- reads -------------------------------------------------------------------------------

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    # -- term, vote, commit index ------------------------------------------------------------

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        # Raft: currentTerm and votedFor are on stable storage before the node answers anyone.
        self._check()
        meta = dict(self._meta, currentTerm=term, votedForNodeId=votedForNodeId)
        try:
            self._store_meta(meta)
        except OSError as exc:
            raise self._fail(exc) from None
        self._meta = meta

    def _store_meta(self, meta: dict[str, Any]) -> None:
        packed = msgpack.packb(meta)
        self._storage.replace(META, packed)
        self._meta_stored = packed

    def getCurrentTerm(self) -> int:
        return int(self._meta.get("currentTerm", 0))

    def getVotedForNodeId(self) -> Any:
        return self._meta.get("votedForNodeId")

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        # The commit index is a hint (a restarted node learns it again from the leader); it is
        # written with the next term change or on the one-second timer, never on the hot path.
        self._meta["raftCommitIndex"] = raftCommitIndex

    def getRaftCommitIndex(self) -> int:
        return int(self._meta.get("raftCommitIndex", 1))

    def onOneSecondTimer(self) -> None:
        if self.failure is not None:
            self.recover()
            return
        if msgpack.packb(self._meta) != self._meta_stored:
            try:
                self._store_meta(self._meta)
            except OSError as exc:
                self._fail(exc)

    def _destroy(self) -> None:
        try:
            if self.failure is None:
                self.sync()
                self._store_meta(self._meta)
        except OSError:
            pass
        self._storage.close()
