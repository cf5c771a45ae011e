"""Payloads whose time the leader stamps: a small header the engine understands.

The framework's log entries start with ``TAG`` and an 8-byte time slot. The leader fills the
slot with its own clock when it appends the entry (``stamping.LeaderClock``), whoever proposed
it, so the time every replica sees in ``ApplyContext.time_ns`` is the leader's, bounded and never
decreasing. Payloads without the tag (barriers, other engines' data) pass unchanged.
"""

from __future__ import annotations

import struct

TAG = b"RW\x02"
_TIME = struct.Struct("<q")
HEADER_SIZE = len(TAG) + _TIME.size


def with_time(time_ns: int, body: bytes) -> bytes:
    """Build a stamped payload (``time_ns`` 0: not stamped yet)."""
    return TAG + _TIME.pack(time_ns) + body


def is_stamped_payload(payload: bytes) -> bool:
    return payload[:len(TAG)] == TAG and len(payload) >= HEADER_SIZE


def time_of(payload: bytes) -> int:
    return _TIME.unpack_from(payload, len(TAG))[0]  # type: ignore[no-any-return]


def restamp(payload: bytes, time_ns: int) -> bytes:
    return TAG + _TIME.pack(time_ns) + payload[HEADER_SIZE:]


def body_of(payload: bytes) -> bytes:
    return payload[HEADER_SIZE:]
