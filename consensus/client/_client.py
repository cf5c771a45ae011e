"""The async HTTP client of a raftwork cluster: leader discovery, retries, deadlines.

Every call has one deadline. Writes and linearizable reads go to the cached leader (learned
from ``X-Raft-Leader-Url`` on any answer); stale reads and first contact pick an endpoint by
strategy. An attempt that gets no answer within ``attempt_timeout`` is checked and given up if
its node is gone or deposed (see ``Client._attempt``), so a write stuck on a cut-off leader moves
to the new one about when it is elected, not when the deadline passes.

Exactly-once: by default the client registers a client session with the cluster on its first
write (``POST /v1/clients``) and numbers every write (``X-Raft-Session: CLIENT:SEQ:LOWEST``); a
retry carries the same number, so retrying after an unknown outcome cannot apply it twice,
however late it comes. Each write also gets one idempotency key for the whole logical request
(scoped to the client). If the session expired and no attempt of this write had an unknown
outcome, the client opens a new session and goes on (nothing was applied); if one had, the call
raises ``Indeterminate``: a second apply is never silent. If the deadline passes after any
attempt whose outcome is unknown, the call raises ``Indeterminate``, never a definite error.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import aiohttp
from yarl import URL

from consensus.client._select import EndpointPool, normalize_url
from consensus.client._session import single_send_session
from consensus.errors import (
    ConsensusError,
    Indeterminate,
    InvalidRequest,
    NotLeader,
    Overloaded,
    SessionExpired,
    Unavailable,
    from_dict,
)

_PROBE_TIMEOUT = 0.5
_RETRY_DELAY = (0.02, 0.5)  # first and largest pause between attempts
_SERVER_SLACK = 0.2  # the server's deadline is this much shorter than ours, so its answer arrives
# Characters a request path keeps as they are; anything else is percent-encoded. "%" is kept: a
# path arrives already encoded where it must be (a config-store key is quoted whole, "/" included).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class Response:
    """A successful answer: status, decoded JSON body, headers, and who answered."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(repr=False)
    endpoint: str


def _url(base: str, path: str) -> URL:
    """Join ``base`` and ``path`` exactly as given: no re-quoting, no dot-segment removal (a key
    may be ``..``, sent as ``/v1/kv/..``)."""
    return URL(base + urllib.parse.quote(path, safe=_PATH_SAFE), encoded=True)


class _ConnectFailed(Exception):
    """The connection never opened: nothing was sent."""


class _Lost(Exception):
    """The request may have been sent, and no answer came."""


class Client:
    """Talk to a cluster through any of its nodes' HTTP endpoints."""

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        strategy: str = "round_robin",
        weights: Sequence[int] | None = None,
        timeout: float = 5.0,
        token: str | None = None,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        attempt_timeout: float | None = 0.5,
        sessions: bool = True,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if attempt_timeout is not None and not attempt_timeout > 0:
            raise ValueError("attempt_timeout must be positive (or None)")
        self.pool = EndpointPool(
            endpoints, strategy=strategy, weights=weights, rng=rng, clock=clock, backoff=backoff, max_backoff=max_backoff
        )
        self.timeout = timeout
        # After this long without an answer, an attempt is checked (see _attempt) and abandoned
        # if its node is gone or deposed; None: an attempt may use the whole deadline.
        self.attempt_timeout = attempt_timeout
        self._terms: dict[str, int] = {}  # the Raft term each endpoint last answered with
        self._token = token
        self._clock = clock
        self._leader: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._connect_errors_definite = False  # set when the session is made (see _get_session)
        self.sessions = sessions  # number writes in a client session (exactly-once)
        self.client_id: int | None = None
        self._next_seq = 1
        self._outstanding: set[int] = set()
        self._registering: asyncio.Lock | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Never let aiohttp re-send a write by itself (see consensus.client._session).
            self._session, self._connect_errors_definite = single_send_session(connector=aiohttp.TCPConnector(limit=256))
        return self._session

    async def close(self) -> None:
        """Close the client session with the cluster (best effort: it expires anyway) and the pool."""
        if self.client_id is not None and self._session is not None and not self._session.closed:
            client_id, self.client_id = self.client_id, None
            try:
                await self.request("DELETE", f"/v1/clients/{client_id}", write=True, timeout=1.0, _numbered=False)
            except ConsensusError:
                pass
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _client_session(self, deadline: float) -> int:
        """Register this client's session with the cluster once (a log entry)."""
        if self._registering is None:
            self._registering = asyncio.Lock()
        async with self._registering:
            if self.client_id is None:
                remaining = max(0.05, deadline - self._clock())
                answer = await self.request("POST", "/v1/clients", write=True, timeout=remaining, _numbered=False)
                self.client_id = int(answer.body["client_id"])
            return self.client_id

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def leader(self) -> str | None:
        """The HTTP URL of the leader as last seen, or None."""
        return self._leader

    # -- requests ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        write: bool = False,
        leader: bool = True,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        _numbered: bool = True,
    ) -> Response:
        """Send one logical request, retrying until it succeeds, fails definitely, or time is up.

        ``write``: it changes state; it gets an idempotency key (``idempotency_key`` or a new
        one) reused on every retry and, with sessions on, a number in the client session.
        ``leader``: send it to the leader (writes, linearizable reads); otherwise any endpoint
        picked by strategy answers it. ``path`` is sent as given (percent-encode what must be,
        e.g. a key with ``urllib.parse.quote(key, safe="")``); characters no URL may hold are
        encoded here.
        """
        budget = self.timeout if timeout is None else timeout
        deadline = self._clock() + budget
        if write and self.sessions and _numbered:
            return await self._numbered_write(method, path, body, params, leader, deadline, budget, idempotency_key)
        return await self._request(method, path, body, params, write, leader, deadline, budget, idempotency_key, None)

    async def _numbered_write(self, method: str, path: str, body: Any, params: Mapping[str, str] | None, leader: bool,
                              deadline: float, budget: float, idempotency_key: str | None) -> Response:
        seq = self._next_seq
        self._next_seq += 1
        self._outstanding.add(seq)
        key = idempotency_key or uuid.uuid4().hex
        try:
            while True:
                client_id = await self._client_session(deadline)
                try:
                    return await self._request(method, path, body, params, True, leader, deadline, budget, key,
                                               lambda: f"{client_id}:{seq}:{min(self._outstanding)}")
                except SessionExpired:
                    if self.client_id == client_id:
                        self.client_id = None  # nothing was applied: open a new session and go on
                    if deadline - self._clock() <= 0:
                        raise
        finally:
            self._outstanding.discard(seq)

    async def _request(self, method: str, path: str, body: Any, params: Mapping[str, str] | None, write: bool,
                       leader: bool, deadline: float, budget: float, idempotency_key: str | None,
                       session: Callable[[], str] | None) -> Response:
        key = (idempotency_key or uuid.uuid4().hex) if write else None
        uncertain = False  # an attempt may have applied the write
        last_error: ConsensusError = Unavailable("no endpoint answered")
        attempt = 0
        tried: list[str] = []
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            attempt += 1
            url = await self._choose(leader or write, tried, remaining)
            tried.append(url)
            try:
                response = await self._attempt(url, method, path, body, params, key, deadline, leader or write,
                                               session() if session is not None else None)
            except _ConnectFailed as exc:
                uncertain = uncertain or (write and not self._connect_errors_definite)
                last_error = Unavailable(f"cannot reach {url}: {exc}")
                self._mark_down(url)
                await self._pause(attempt, deadline)
                continue
            except _Lost as exc:
                uncertain = uncertain or write
                last_error = (Indeterminate if write else Unavailable)(f"no answer from {url}: {exc}")
                self._mark_down(url)
                await self._pause(attempt, deadline)
                continue
            self.pool.mark_up(url)
            self._learn(url, response.headers)
            if response.status < 400:
                return response
            error = self._error_of(response)
            if isinstance(error, Overloaded):  # the node is busy, not wrong: keep what we know, back off
                last_error = error
                await self._pause(attempt, deadline)
                continue
            if isinstance(error, (NotLeader, Unavailable)):
                hint = response.body.get("error", {}).get("leader_url") if isinstance(response.body, dict) else None
                self._leader = normalize_url(hint) if hint else None
                if self._leader:
                    self.pool.add(self._leader)
                last_error = error
                await self._pause(attempt, deadline)
                continue
            if isinstance(error, Indeterminate):
                uncertain = uncertain or write
                last_error = error
                self._leader = None  # a leader that cannot commit may be cut off: rediscover
                await self._pause(attempt, deadline)
                continue
            if isinstance(error, SessionExpired) and uncertain:
                # An earlier attempt may have applied under the expired session: a new session
                # would apply it again. Say the outcome is unknown instead.
                raise Indeterminate(f"the client session expired after an attempt whose outcome is unknown: {error.message}")
            raise error
        if uncertain and last_error.definite:
            raise Indeterminate(f"deadline of {budget:.2f}s passed; an earlier attempt may have applied: {last_error.message}")
        raise type(last_error)(f"deadline of {budget:.2f}s passed: {last_error.message}", leader=last_error.leader)

    async def _pause(self, attempt: int, deadline: float) -> None:
        delay = min(_RETRY_DELAY[1], _RETRY_DELAY[0] * 2 ** min(attempt - 1, 10))
        await asyncio.sleep(max(0.0, min(delay, deadline - self._clock())))

    def _mark_down(self, url: str) -> None:
        self.pool.mark_down(url)
        if self._leader == url:
            self._leader = None

    async def _choose(self, to_leader: bool, tried: list[str], remaining: float) -> str:
        """Return the URL to try next: the known leader, else an endpoint by strategy (probed if half-open)."""
        now = self._clock()
        if to_leader and self._leader is not None:
            endpoint = self.pool.get(self._leader)
            if endpoint is not None and endpoint.is_up(now):
                return endpoint.url
        recent = tried[-(len(self.pool.endpoints) - 1):] if len(self.pool.endpoints) > 1 else []
        for _ in range(len(self.pool.endpoints)):
            endpoint = self.pool.pick(exclude=recent)
            if not endpoint.half_open(self._clock()):
                return endpoint.url
            if await self._probe(endpoint.url, min(_PROBE_TIMEOUT, remaining)):
                self.pool.mark_up(endpoint.url)
                return endpoint.url
            self.pool.mark_down(endpoint.url)
        return self.pool.pick().url

    async def _probe(self, url: str, timeout: float) -> bool:
        try:
            async with self._get_session().get(url + "/livez", timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def _send(
        self, url: str, method: str, path: str, body: Any, params: Mapping[str, str] | None, key: str | None,
        remaining: float, session: str | None = None,
    ) -> Response:
        headers = {"X-Request-Timeout": f"{min(60.0, max(0.05, remaining - _SERVER_SLACK)):.3f}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if session is not None:
            headers["X-Raft-Session"] = session
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with self._get_session().request(
                method, _url(url, path), params=params, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=max(0.05, remaining)), allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                try:
                    decoded = json.loads(raw) if raw else None
                except ValueError:
                    decoded = raw.decode("utf-8", "replace")
                return Response(resp.status, decoded, dict(resp.headers), url)
        except aiohttp.ClientConnectorError as exc:
            raise _ConnectFailed(exc.strerror or str(exc)) from None
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _Lost(type(exc).__name__) from None

    async def _attempt(self, url: str, method: str, path: str, body: Any, params: Mapping[str, str] | None,
                       key: str | None, deadline: float, to_leader: bool, session: str | None = None) -> Response:
        """Send one attempt; after ``attempt_timeout`` without an answer, check that it is worth waiting for.

        A request stuck on a deposed or cut-off leader would otherwise wait out the whole deadline
        (the deposed leader holds it until then). A slow answer is not abandoned just for being slow
        (a lock acquire or a watch long-polls on purpose): only when the node stops answering
        ``/livez``, or, for a request meant for the leader, when another node names a different
        leader at a newer term than the one this node last answered with. Checks repeat four
        times as often after the first, so the retry follows an election closely.
        """
        send = asyncio.ensure_future(self._send(url, method, path, body, params, key, deadline - self._clock(), session))
        if self.attempt_timeout is None:
            return await send
        interval = self.attempt_timeout
        try:
            while True:
                wait = min(interval, max(0.0, deadline - self._clock()))
                interval = self.attempt_timeout / 4
                done, _ = await asyncio.wait({send}, timeout=wait)
                if done or self._clock() >= deadline:
                    return await send
                reason = await self._not_worth_waiting(url, to_leader)
                if reason is not None:
                    raise _Lost(f"abandoned after {self.attempt_timeout:g}s without an answer: {reason}")
        finally:
            if not send.done():
                send.cancel()
                await asyncio.gather(send, return_exceptions=True)

    async def _not_worth_waiting(self, url: str, to_leader: bool) -> str | None:
        """Return why the attempt at ``url`` should be given up, or None to keep waiting."""
        probe = min(_PROBE_TIMEOUT, self.attempt_timeout or _PROBE_TIMEOUT)
        if not await self._probe(url, probe):
            return f"{url} does not answer /livez"
        if not to_leader:
            return None
        others = [e.url for e in self.pool.endpoints if e.url != url][:2]
        views = await asyncio.gather(*(self._view(other, probe) for other in others))
        for other, view in zip(others, views):
            if view is None:
                continue
            leader_url, term = view
            if leader_url and normalize_url(leader_url) != url and term > self._terms.get(url, -1):
                self._leader = normalize_url(leader_url)
                self.pool.add(self._leader)
                return f"{other} sees {self._leader} as leader at term {term}"
        return None

    async def _view(self, url: str, timeout: float) -> tuple[str | None, int] | None:
        """Return (leader URL, term) as ``url`` sees them, or None if it does not say in time."""
        try:
            async with self._get_session().get(url + "/v1/status", timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                status = await resp.json() if resp.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None
        if not isinstance(status, dict) or not isinstance(status.get("term"), int):
            return None
        return status.get("leader_url"), status["term"]

    def _learn(self, url: str, headers: Mapping[str, str]) -> None:
        term = headers.get("X-Raft-Term", "")
        if term.isdigit():
            self._terms[url] = int(term)
        leader_url = headers.get("X-Raft-Leader-Url")
        if leader_url:
            self._leader = normalize_url(leader_url)
            self.pool.add(self._leader)

    @staticmethod
    def _error_of(response: Response) -> ConsensusError:
        body = response.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return from_dict(body["error"])
        text = str(body)[:200] if body else ""
        if response.status in (400, 404, 405, 413):
            return InvalidRequest(f"HTTP {response.status} from {response.endpoint}: {text}")
        return Indeterminate(f"HTTP {response.status} from {response.endpoint}: {text}")

    # -- node operations ---------------------------------------------------------------------

    async def status(self, endpoint: str | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        """Return ``GET /v1/status`` of ``endpoint`` (or of any endpoint that answers)."""
        if endpoint is None:
            return (await self.request("GET", "/v1/status", leader=False, timeout=timeout)).body  # type: ignore[no-any-return]
        url = normalize_url(endpoint)
        try:
            response = await self._send(url, "GET", "/v1/status", None, None, None, timeout or self.timeout)
        except _ConnectFailed as exc:
            raise Unavailable(f"cannot reach {url}: {exc}") from None
        except _Lost as exc:
            raise Unavailable(f"no answer from {url}: {exc}") from None
        if response.status != 200:
            raise self._error_of(response)
        return response.body  # type: ignore[no-any-return]

    async def statuses(self, *, timeout: float | None = None) -> list[tuple[str, dict[str, Any] | ConsensusError]]:
        """Return every endpoint's status (or the error it gave), in endpoint order."""
        urls = [e.url for e in self.pool.endpoints]

        async def one(url: str) -> dict[str, Any] | ConsensusError:
            try:
                return await self.status(url, timeout=timeout)
            except ConsensusError as exc:
                return exc

        return list(zip(urls, await asyncio.gather(*(one(u) for u in urls))))

    async def add_member(self, address: str, http: str | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"id": address}
        if http is not None:
            body["http"] = http
        return (await self.request("POST", "/v1/members", body=body, write=True, timeout=timeout)).body  # type: ignore[no-any-return]

    async def remove_member(self, address: str, *, timeout: float | None = None) -> dict[str, Any]:
        return (await self.request("DELETE", f"/v1/members/{address}", write=True, timeout=timeout)).body  # type: ignore[no-any-return]

    async def transfer_leader(self, to: str | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        body = {"to": to} if to else {}
        return (await self.request("POST", "/v1/leader/transfer", body=body, write=True, timeout=timeout)).body  # type: ignore[no-any-return]
