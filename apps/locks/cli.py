"""``consensus lock NAME [--shared] [--ttl S] [--wait S] --endpoints URL -- CMD ARGS`` (etcdctl lock).

Runs CMD while holding the lock, with the grant's fencing token in ``RAFTWORK_LOCK_TOKEN``
(and the lock's name in ``RAFTWORK_LOCK_NAME``); exits with CMD's exit code and releases the
lock. If the lease may be lost (the session expired, or no keepalive got through for a TTL),
CMD is killed by its PID (SIGKILL: it must stop touching what the lock guards) and the command
exits 1 saying so. A lock that stays held for the whole ``--wait`` exits 1 too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from apps.locks.client import MAX_WAIT_SECONDS, LeaseLost, LockClient
from apps.locks.machine import check_name
from consensus.cli import CommandError, OneLineParser, UsageError
from consensus.client.commands import _client
from consensus.errors import ConsensusError, InvalidRequest

TOKEN_ENV = "RAFTWORK_LOCK_TOKEN"
NAME_ENV = "RAFTWORK_LOCK_NAME"


def _check(args: argparse.Namespace) -> list[str]:
    command = _parse_rest(args)
    if not command:
        raise UsageError("give the command to run after --, e.g. consensus lock jobs --endpoints URL -- ./job.sh")
    try:
        check_name(args.name)
    except InvalidRequest as exc:
        raise UsageError(exc.message) from None
    if not 0.5 <= args.ttl <= 600:
        raise UsageError("--ttl must be from 0.5 to 600 seconds")
    if args.wait is not None and not 0 <= args.wait <= MAX_WAIT_SECONDS:
        raise UsageError(f"--wait must be from 0 to {MAX_WAIT_SECONDS:g} seconds (leave it out to wait as long as it takes)")
    if not 0 < args.timeout <= 60:
        raise UsageError("--timeout must be more than 0 and at most 60 seconds")
    return command


async def _hold_and_run(args: argparse.Namespace, command: list[str]) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
    mode = "shared" if args.shared else "exclusive"
    async with LockClient(_client(args)) as locks:
        held = locks.lock(args.name, mode=mode, ttl=args.ttl, wait=args.wait)
        async with held as token:
            env = dict(os.environ, **{TOKEN_ENV: str(token), NAME_ENV: args.name})
            try:
                proc = await asyncio.create_subprocess_exec(*command, env=env)
            except OSError as exc:
                raise CommandError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
            try:
                return await proc.wait()
            finally:
                if proc.returncode is None:  # the lease is lost (or we were interrupted): stop it now
                    os.kill(proc.pid, signal.SIGKILL)
                    await proc.wait()
    return 1  # not reached


def _lock(args: argparse.Namespace) -> int:
    command = _check(args)
    try:
        return asyncio.run(_hold_and_run(args, command))
    except LeaseLost as exc:
        raise CommandError(f"{exc.message}; the command was killed") from None
    except ConsensusError as exc:
        raise CommandError(exc.message) from None
    except asyncio.CancelledError:  # SIGTERM: the command was killed and the lock released
        print("consensus lock: terminated", file=sys.stderr)
        return 143


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shared", action="store_true", help="take it shared (many holders) instead of exclusive")
    p.add_argument("--ttl", type=float, default=10.0, metavar="S", help="the session's lease in seconds (default 10)")
    p.add_argument("--wait", type=float, default=None, metavar="S",
                   help=f"give up after S seconds (at most {MAX_WAIT_SECONDS:g}; default: wait as long as it takes)")
    p.add_argument("--endpoints", metavar="URL[,URL]", help="HTTP endpoints of the cluster's nodes (required)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="deadline of each request (default 5)")
    p.add_argument("--token-file", metavar="F", help="the cluster's bearer token")


def _parse_rest(args: argparse.Namespace) -> list[str]:
    """Parse ``NAME [options] -- CMD ARGS`` (argparse alone cannot take options between NAME and --)."""
    rest = list(args.rest)
    cut = rest.index("--") if "--" in rest else len(rest)
    head, command = rest[:cut], rest[cut + 1:]
    inner = OneLineParser(prog="consensus lock")
    inner.add_argument("name", metavar="NAME")
    _add_options(inner)
    inner.parse_args(head, namespace=args)  # options given before NAME stay as parsed
    if not args.endpoints:
        raise UsageError("--endpoints is required")
    return command


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("lock", help="run a command while holding a lock (etcdctl lock)",
                              usage="consensus lock NAME [--shared] [--ttl S] [--wait S] --endpoints URL[,URL] -- CMD ARGS",
                              description="Acquire a lock, run CMD while holding it (its fencing token in "
                                          f"{TOKEN_ENV}), release it. Exits with CMD's exit code; 1 if the lock "
                                          "could not be had or its lease was lost (then CMD is killed).")
    _add_options(p)
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="NAME [options] -- CMD ARGS",
                   help="the lock's name (1 to 128 of A-Z a-z 0-9 . _ ~ -), then the command to run after --")
    p.set_defaults(func=_lock)
