"""Listen for HTTP: the aiohttp runner and site of one node's server."""

from __future__ import annotations

from aiohttp import web

from consensus.server.app import Server, ServerConfig


async def start_site(server: Server, host: str, port: int, config: ServerConfig) -> web.AppRunner:
    """Serve ``server`` on ``host:port``; return the runner (``await runner.cleanup()`` stops it)."""
    runner = web.AppRunner(server.build(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
