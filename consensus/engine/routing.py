"""Route peer connections through per-process dial targets (proxies) without changing identity.

A Raft peer's identity is its real address ("127.0.0.1:7002"); that string is what pysyncobj
stores in membership entries and what peers announce to each other. The *dial target* is where
this process connects to reach that peer: normally the same address, but a chaos harness can
point it at a Toxiproxy listener instead, so it can cut or slow one link.

The table lives in this module, not in node objects, because node objects are pickled into
membership log entries and must mean the same thing on every node.
"""

from __future__ import annotations

import threading

from pysyncobj.node import TCPNode

_routes: dict[str, tuple[str, int]] = {}
_lock = threading.Lock()


def set_dial_route(peer: str, host: str, port: int) -> None:
    """Dial ``host:port`` whenever this process connects to ``peer``."""
    with _lock:
        _routes[peer] = (host, port)


def clear_dial_route(peer: str) -> None:
    with _lock:
        _routes.pop(peer, None)


def dial_routes() -> dict[str, tuple[str, int]]:
    with _lock:
        return dict(_routes)


class DialRouteNode(TCPNode):
    """A TCPNode whose dial target comes from the process's route table."""

    @property
    def ip(self) -> str:  # type: ignore[override]
        route = _routes.get(self.address)
        if route is None:
            return super().ip  # type: ignore[no-any-return]
        return route[0]

    @property
    def port(self) -> int:  # type: ignore[override]
        route = _routes.get(self.address)
        if route is None:
            return super().port  # type: ignore[no-any-return]
        return route[1]
