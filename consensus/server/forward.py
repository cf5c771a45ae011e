"""Forward a request from a follower to the leader's HTTP endpoint, one hop at most.

Outcomes follow the definite/indefinite rule: if the connection to the leader never opened,
nothing was sent and the error is definite (``Unavailable``); if it broke or timed out after the
request went out, a write's outcome is unknown (``Indeterminate``) while a read is just
``Unavailable``. The session never re-sends a request by itself: aiohttp would re-send a PUT or
DELETE whose pooled connection dropped, and the re-send's connect error would pass for a
definite failure of a write the leader may have applied. A forwarded request carries
``X-Raft-Forwarded-By`` and is never forwarded again: a node that receives one and is not the
leader answers ``not_leader``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from yarl import URL

from consensus.client._session import single_send_session
from consensus.errors import Indeterminate, Unavailable
from consensus.server.routing import FORWARDED_HEADER, TIMEOUT_HEADER

if TYPE_CHECKING:
    from consensus.server.routing import Call

_PASSED_HEADERS = ("Idempotency-Key", "X-Raft-Session", "Authorization", "X-Raft-Group")
_MAX_RESPONSE_BYTES = 16 << 20
# Give the leader a little less time than we have, so its answer (even a 504) reaches us in time.
_SLACK_SECONDS = 0.25


class Forwarder:
    """Relays requests to leaders over one pooled HTTP session."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._session: aiohttp.ClientSession | None = None
        self._connect_errors_definite = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session, self._connect_errors_definite = single_send_session(
                connector=aiohttp.TCPConnector(limit=256),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, call: "Call", leader_id: str, base_url: str, *, write: bool,
                      extra_headers: dict[str, str] | None = None) -> web.StreamResponse:
        """Send ``call`` to the leader at ``base_url`` and return its answer unchanged."""
        remaining = call.remaining()
        if remaining <= _SLACK_SECONDS:
            raise Unavailable("no time left to forward the request to the leader", leader=leader_id)
        headers = {
            "Content-Type": "application/json",
            FORWARDED_HEADER: self.node_id,
            TIMEOUT_HEADER: f"{remaining - _SLACK_SECONDS:.3f}",
        }
        for name in _PASSED_HEADERS:
            if name in call.request.headers:
                headers[name] = call.request.headers[name]
        headers.update(extra_headers or {})
        url = URL(base_url.rstrip("/") + call.request.rel_url.raw_path_qs, encoded=True)
        try:
            async with self._get_session().request(
                call.request.method,
                url,
                data=call.raw_body or None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=remaining),
                allow_redirects=False,
            ) as upstream:
                body = await _read_capped(upstream, _MAX_RESPONSE_BYTES)
                response = web.Response(status=upstream.status, body=body)
                response.headers["Content-Type"] = upstream.headers.get("Content-Type", "application/json")
                for name, value in upstream.headers.items():
                    if name.lower().startswith("x-raft-"):
                        response.headers[name] = value
                response["forwarded"] = True
                return response
        except aiohttp.ClientConnectorError as exc:
            what = f"cannot reach the leader {leader_id} at {base_url}: {exc.strerror or exc}"
            if write and not self._connect_errors_definite:
                raise Indeterminate(what, leader=leader_id) from None  # it may be a re-send's error
            raise Unavailable(what, leader=leader_id) from None
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            what = f"lost the request forwarded to the leader {leader_id}: {type(exc).__name__}"
            if write:
                raise Indeterminate(what, leader=leader_id) from None
            raise Unavailable(what, leader=leader_id) from None


async def _read_capped(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read the whole body (``content.read(n)`` may return only the first chunk), at most ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in upstream.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise aiohttp.ClientPayloadError(f"the leader's answer is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
