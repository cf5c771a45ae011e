"""Peer message framing: small messages travel uncompressed.

pysyncobj's ``TcpConnection`` zlib-compresses every peer message (level 3) before it frames it,
and decompresses every one it reads. Nearly all Raft traffic is small: a reply to
AppendEntries is about 100 bytes, an AppendEntries of 8 commands about 900. Compressing those
costs far more than sending them (measured on this project's machine: 15-20 us per call for
messages under 1 KB, against 2 us to pickle them, because each call sets up a fresh deflate
state) and saves a few hundred bytes on a loopback or LAN link; for a 100-byte reply it saves
two. So raftwork compresses only messages of at least ``COMPRESS_AT`` bytes (large batches,
snapshot chunks) and sends the rest as the plain pickle.

The receiver tells the two apart by the first byte, with no flag in the frame: every pickle
pysyncobj writes (protocol 2) starts with the PROTO opcode 0x80, and a zlib stream never does
(its first byte, CMF, is 0x?8 with a window size nibble of at most 7: 0x08-0x78). A raftwork
node therefore reads both, so it understands a peer still compressing everything; a node of
an older raftwork (or plain pysyncobj) cannot read the uncompressed frames, so every member of
a cluster must run a raftwork that has this module.

pysyncobj calls exactly ``zlib.compress(data, 3)`` and ``zlib.decompress(data)`` in
``pysyncobj.tcp_connection``; ``install()`` puts a stand-in with those two functions in that
module's namespace (on disk pysyncobj is unchanged). The encryption layer, when a secret is
set, wraps the framed bytes as before: it encrypts after ``compress`` and decrypts before
``decompress``.
"""

from __future__ import annotations

import zlib
from typing import Any

COMPRESS_AT = 16 * 1024  # bytes of pickle; below this a message is sent as it is
PICKLE_PROTO = 0x80  # the first byte of every pickle of protocol 2 or later


class PeerFraming:
    """What ``pysyncobj.tcp_connection`` uses as ``zlib``: compress big messages only."""

    error = zlib.error

    def __init__(self, compress_at: int = COMPRESS_AT) -> None:
        self.compress_at = compress_at

    def compress(self, data: bytes, level: int = -1) -> bytes:
        if len(data) < self.compress_at:
            return data
        return zlib.compress(data, level)

    def decompress(self, data: bytes) -> bytes:
        if data[:1] == bytes([PICKLE_PROTO]):
            return data  # sent uncompressed
        return zlib.decompress(data)


def install() -> None:
    """Make pysyncobj's peer connections in this process use ``PeerFraming`` (idempotent)."""
    import pysyncobj.tcp_connection as tcp_connection

    current: Any = tcp_connection.zlib
    if not isinstance(current, PeerFraming):
        tcp_connection.zlib = PeerFraming()  # type: ignore[attr-defined]


def installed() -> bool:
    import pysyncobj.tcp_connection as tcp_connection

    return isinstance(tcp_connection.zlib, PeerFraming)  # type: ignore[attr-defined]
