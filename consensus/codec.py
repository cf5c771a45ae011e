"""Encode commands, queries and snapshots as msgpack, and nothing richer.

Only plain data crosses the log: None, bool, int (64-bit), float, str, bytes, lists and dicts
with string keys. That keeps every replica's input identical and keeps user objects (and
pickle) off the wire.
"""

from __future__ import annotations

from typing import Any

import msgpack

from consensus.errors import InvalidRequest


def pack(value: Any) -> bytes:
    """Encode plain data; raise ``InvalidRequest`` for anything else."""
    try:
        return msgpack.packb(value, use_bin_type=True, strict_types=False)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequest(f"not plain data: {exc}") from None


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def check_plain(value: Any, what: str, limit: int) -> bytes:
    """Encode ``value`` and check its size; the encoded bytes are returned for reuse."""
    if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
        raise InvalidRequest(f"{what} must have string keys")
    data = pack(value)
    if len(data) > limit:
        raise InvalidRequest(f"{what} is {len(data)} bytes, over the limit of {limit}")
    return data
