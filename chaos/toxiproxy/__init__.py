"""An embedded Toxiproxy v2.12-compatible server and a client for any Toxiproxy.

- :class:`ToxiproxyServer` serves Toxiproxy's HTTP API and data plane in an asyncio loop.
- :class:`BackgroundServer` runs one in its own thread for synchronous callers.
- :mod:`chaos.toxiproxy.client` talks to any Toxiproxy (this one or the Go server) by URL.
- ``chaos toxiproxy --host 127.0.0.1 --port 8474`` runs it from the command line.

See ``docs/toxiproxy.md`` for compatibility notes and deviations from upstream.
"""

from chaos.toxiproxy.server import DEFAULT_DIAL_TIMEOUT, BackgroundServer, ToxiproxyServer

__all__ = ["ToxiproxyServer", "BackgroundServer", "DEFAULT_DIAL_TIMEOUT"]
