"""One HTTP server for every Raft group this process hosts a member of, routing by key.

A process may host members of several groups (one ``Node``, engine and Raft port each; one
``Server`` each). ``GroupHost`` serves them all on one HTTP port and picks the group of each
request:

1. the ``X-Raft-Group: NAME`` header, when given;
2. else the group of the request's key (``Route.group_of``: the kv key, the counter name) in the
   static shard map (``consensus.shards``);
3. else the first group this process hosts (status, health, sessions...).

A group this process hosts answers here: its node proposes and reads, and its engine takes the
request to the group's leader over the peer link. A group it does not host is reached by
relaying the HTTP request (with ``X-Raft-Group``) to a member listed in the shard map, trying the
next member only when the previous could not even be connected to (nothing was sent).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from consensus.errors import ConsensusError, InvalidRequest, NotFound, Unavailable
from consensus.server.forward import Forwarder
from consensus.server.routing import GROUP_HEADER, Route, build_call
from consensus.shards import GROUP_NAME_PATTERN, ShardMap

if TYPE_CHECKING:
    from consensus.server.app import Server

_GROUP_NAME = re.compile(GROUP_NAME_PATTERN)


class GroupHost:
    """Serves the local groups' ``Server`` objects on one aiohttp application."""

    def __init__(self, servers: dict[str, "Server"], shards: ShardMap) -> None:
        if not servers:
            raise ValueError("a group host needs at least one group")
        self.servers = dict(servers)
        self.shards = shards
        self.default = next(iter(self.servers.values()))
        self.connections = self.default.connections  # one listener: one connection count
        self.forwarder = Forwarder(self.default.node.id)
        self._txn_session: Any = None  # HTTP to groups not hosted here (transaction steps), made on first use
        for server in self.servers.values():
            server.host = self
            server.connections = self.connections

    @property
    def routes(self) -> list[Route]:
        return self.default.routes

    async def txn_session(self) -> Any:
        """Return the HTTP session for steps sent to groups this process does not host."""
        if self._txn_session is None:
            from consensus.client._session import single_send_session

            self._txn_session, _ = single_send_session()
        return self._txn_session

    # -- picking a group ---------------------------------------------------------------------

    def group_of_request(self, request: web.Request, route: Route | None) -> str:
        """Return the group that should answer ``request`` (it may not be hosted here)."""
        explicit = request.headers.get(GROUP_HEADER)
        if explicit is not None:
            if not _GROUP_NAME.fullmatch(explicit):
                raise InvalidRequest(f"the {GROUP_HEADER} header must match {GROUP_NAME_PATTERN}")
            if explicit not in self.shards.groups and explicit not in self.servers:
                raise NotFound(f"no group {explicit!r}; groups are {', '.join(self.shards.groups)}")
            return explicit
        if route is not None and route.group_of is not None:
            group = route.group_of(request, self.shards)
            if group is not None:
                return group
        return self.default.config.group

    # -- the pipeline ------------------------------------------------------------------------

    def _route_handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await request["raft_handler"](request)

        handle.raft_route = route  # type: ignore[attr-defined]
        return handle

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route: Route | None = getattr(request.match_info.handler, "raft_route", None)
        server = self.default
        try:
            group = self.group_of_request(request, route)
        except ConsensusError as exc:
            error = exc

            async def refuse(_: web.Request) -> web.StreamResponse:
                raise error

            return await server._middleware(request, refuse)
        if route is None:  # no such route: the default server's 404/405
            return await server._middleware(request, handler)
        if group in self.servers:
            server = self.servers[group]
            request["raft_handler"] = server._handler(route)
        else:
            request["raft_handler"] = lambda r: self._relay(r, route, group)
        return await server._middleware(request, handler)

    async def _relay(self, request: web.Request, route: Route, group: str) -> web.StreamResponse:
        """Send the request to a member of ``group`` (not hosted here); return its answer as is."""
        call = await build_call(request, self.default, route)
        if call.forwarded:  # relayed to us already: never a second hop (the map must be wrong)
            raise Unavailable(f"{self.default.node.id} hosts no member of group {group}")
        last: ConsensusError | None = None
        for member in self.shards.members(group):
            try:
                return await self.forwarder.forward(call, member.raft, member.http, write=route.mutating,
                                                    extra_headers={GROUP_HEADER: group})
            except Unavailable as exc:  # definite: nothing reached that member; try the next one
                last = exc
        assert last is not None
        raise last

    def build(self) -> web.Application:
        """Return the aiohttp application serving every local group."""
        app = web.Application(middlewares=[self._middleware], client_max_size=self.default.config.max_body_bytes)
        for route in self.routes:
            app.router.add_route(route.method, route.path, self._route_handler(route))

        async def close(_: web.Application) -> None:
            await self.forwarder.close()
            if self._txn_session is not None:
                await self._txn_session.close()
            for server in self.servers.values():
                await server.forwarder.close()

        app.on_cleanup.append(close)
        return app
