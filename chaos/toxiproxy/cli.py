"""``chaos toxiproxy``: run the embedded Toxiproxy server in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from chaos.toxiproxy.api import VERSION
from chaos.toxiproxy.proxy import ApiError
from chaos.toxiproxy.server import DEFAULT_DIAL_TIMEOUT, ToxiproxyServer


def register(subparsers: Any) -> None:
    """Add the ``toxiproxy`` subcommand (flags follow toxiproxy-server's)."""
    parser = subparsers.add_parser("toxiproxy", help="run an embedded Toxiproxy-compatible server",
                                   description="Run a Toxiproxy v2.12-compatible server in the foreground.")
    parser.add_argument("--host", default="localhost", help="API host (default: localhost)")
    parser.add_argument("--port", type=int, default=8474, help="API port, 0 for any free port (default: 8474)")
    parser.add_argument("--config", help="JSON file of proxies to create at startup (as POST /populate)")
    parser.add_argument("--proxy-metrics", action="store_true", help="export proxy byte counters on /metrics")
    parser.add_argument("--runtime-metrics", action="store_true", help="export Python runtime metrics on /metrics")
    parser.add_argument("--seed", type=int, help="seed for toxicity and jitter (upstream ignores its -seed)")
    parser.add_argument("--dial-timeout", type=float, default=DEFAULT_DIAL_TIMEOUT,
                        help=f"upstream dial timeout in seconds (default: {DEFAULT_DIAL_TIMEOUT:g})")
    parser.add_argument("--version", action="store_true", help="print the emulated Toxiproxy version and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.version:
        print(f"toxiproxy-server version {VERSION} (raftwork embedded)")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    server = ToxiproxyServer(args.host, args.port, proxy_metrics=args.proxy_metrics,
                             runtime_metrics=args.runtime_metrics, seed=args.seed, dial_timeout=args.dial_timeout)
    try:
        await server.start()
    except OSError as exc:
        print(f"chaos toxiproxy: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 255
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        if args.config:
            with open(args.config, encoding="utf-8") as f:
                entries = json.load(f)
            _, error = await server.populate(
                [{k: v for k, v in e.items() if k in ("name", "listen", "upstream", "enabled") and v is not None}
                 for e in entries])
            if error is not None:
                raise ApiError(error.message, error.status)
        print(f"toxiproxy API listening on {server.url}", flush=True)
        await stopping.wait()
        return 0
    except (OSError, ValueError, ApiError) as exc:
        print(f"chaos toxiproxy: {exc}", file=sys.stderr)
        return 255
    finally:
        await server.stop()
