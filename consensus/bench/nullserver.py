"""A do-nothing aiohttp server: ``POST /null`` reads the body and answers ``{}``.

The bench measures the load client against it in the same run, so a reader can tell when a
system's figure is bounded by the client rather than by the system.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def _null(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m consensus.bench.nullserver")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/null", _null)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
