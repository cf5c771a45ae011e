"""The HTTP server of a raftwork node (aiohttp).

``Server(node, ServerConfig(http_url=...), apps=load_apps(["counter"])).build()`` returns the
aiohttp application; ``consensus serve`` runs one node with it.
"""

from consensus.server.app import Server, ServerConfig, create_app
from consensus.server.apps import AppSpec, available_apps, load_app, load_apps, machines_for
from consensus.server.routing import Call, Route

__all__ = [
    "AppSpec",
    "Call",
    "Route",
    "Server",
    "ServerConfig",
    "available_apps",
    "create_app",
    "load_app",
    "load_apps",
    "machines_for",
]
