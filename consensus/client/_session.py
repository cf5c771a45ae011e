"""An aiohttp client session that never sends a request twice by itself.

aiohttp re-sends an idempotent request (PUT, DELETE) once, on a new connection, when a reused
keep-alive connection drops mid-request. The caller then sees only the second attempt's connect
error, although the first attempt may have been applied: a write whose outcome is unknown would
be reported as a definite failure (found by ``chaos test``). raftwork retries itself, with the
idempotency key, so both the client and a follower's forwarder turn that re-send off.
"""

from __future__ import annotations

from typing import Any

import aiohttp


def single_send_session(**options: Any) -> tuple[aiohttp.ClientSession, bool]:
    """Return ``(session, connect_errors_definite)``.

    ``connect_errors_definite`` is True when the re-send could be switched off: a connect error
    then means this request never left. On an aiohttp without that switch it is False, and a
    caller must count a connect error of a write as an unknown outcome.
    """
    session = aiohttp.ClientSession(**options)
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
        return session, True
    return session, False
