"""``consensus status``, ``consensus members add|remove`` and ``consensus leader transfer``."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any, Awaitable, Callable

from consensus.cli import CommandError, UsageError
from consensus.client._client import Client
from consensus.errors import ConsensusError

_ENDPOINT = re.compile(r"(https?://)?([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):\d{1,5}/?")
_ADDRESS = re.compile(r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):\d{1,5}")
_COLUMNS = ("ENDPOINT", "ID", "ROLE", "IS LEADER", "RAFT TERM", "LEADER", "COMMIT INDEX", "APPLIED INDEX", "LOG SIZE", "ERRORS")


def _endpoints(text: str) -> list[str]:
    endpoints = [e.strip() for e in text.split(",") if e.strip()]
    if not endpoints:
        raise UsageError("--endpoints needs at least one URL")
    for endpoint in endpoints:
        if not _ENDPOINT.fullmatch(endpoint):
            raise UsageError(f"--endpoints takes URLs like http://127.0.0.1:8001, not {endpoint!r}")
    return endpoints


def _read_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError as exc:
        raise UsageError(f"cannot read --token-file {path}: {exc.strerror or exc}") from None


def _client(args: argparse.Namespace) -> Client:
    return Client(_endpoints(args.endpoints), timeout=args.timeout, token=_read_token(getattr(args, "token_file", None)))


def _run(args: argparse.Namespace, action: Callable[[Client], Awaitable[int]]) -> int:
    if not 0 < args.timeout <= 60:
        raise UsageError("--timeout must be more than 0 and at most 60 seconds")
    client = _client(args)

    async def go() -> int:
        async with client:
            return await action(client)

    try:
        return asyncio.run(go())
    except ConsensusError as exc:
        raise CommandError(exc.message) from None


def _row(url: str, status: dict[str, Any]) -> list[str]:
    return [
        url,
        str(status.get("id")),
        str(status.get("role")),
        "true" if status.get("role") == "leader" else "false",
        str(status.get("term")),
        str(status.get("leader") or ""),
        str(status.get("commit_index")),
        str(status.get("last_applied")),
        str(status.get("log_size")),
        "",
    ]


def _group_bodies(status: dict[str, Any]) -> list[dict[str, Any]]:
    return list(status.get("groups") or [status])


def _status_rows(results: list[tuple[str, Any]]) -> list[list[str]]:
    """One row per endpoint; with several Raft groups, one per (endpoint, group) and a GROUP column."""
    grouped = any(isinstance(r, dict) and any(b.get("group", "default") != "default" for b in _group_bodies(r))
                  for _, r in results)
    rows = [list(_COLUMNS)]
    if grouped:
        rows[0].insert(1, "GROUP")
    for url, result in results:
        if not isinstance(result, dict):
            rows.append([url, *[""] * (len(rows[0]) - 2), result.message])
            continue
        for body in _group_bodies(result) if grouped else [result]:
            row = _row(url, body)
            if grouped:
                row.insert(1, str(body.get("group", "default")))
            rows.append(row)
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    async def action(client: Client) -> int:
        results = await client.statuses()
        failed = [(url, r) for url, r in results if isinstance(r, ConsensusError)]
        if args.json:
            print(json.dumps([r if isinstance(r, dict) else {"endpoint": url, "error": r.to_dict()} for url, r in results], indent=2))
        elif len(failed) < len(results):
            print(format_table(_status_rows(results)))
        if failed:
            for url, error in failed:
                print(f"consensus status: {error.message}", file=sys.stderr)
        return 1 if failed else 0

    return _run(args, action)


def _check_address(text: str) -> str:
    if not _ADDRESS.fullmatch(text):
        raise UsageError(f"a member address is HOST:PORT, not {text!r}")
    return text


def _members(args: argparse.Namespace) -> int:
    address = _check_address(args.address)
    if args.http is not None and args.action != "add":
        raise UsageError("--http only goes with members add")

    async def action(client: Client) -> int:
        if args.action == "add":
            await client.add_member(address, args.http)
            print(f"added member {address}")
        else:
            await client.remove_member(address)
            print(f"removed member {address}")
        return 0

    return _run(args, action)


def _leader(args: argparse.Namespace) -> int:
    to = _check_address(args.to) if args.to else None

    async def action(client: Client) -> int:
        result = await client.transfer_leader(to)
        print(f"leader is now {result['leader']}")
        return 0

    return _run(args, action)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoints", required=True, metavar="URL[,URL]", help="HTTP endpoints of the cluster's nodes")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="deadline for the command (default 5)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="show each endpoint's Raft state", description="Show each endpoint's Raft state as a table.")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_status)

    p = subparsers.add_parser("members", help="add or remove a member", description="Change the cluster's membership, one member at a time.")
    p.add_argument("action", choices=["add", "remove"])
    p.add_argument("address", metavar="ADDR", help="the member's Raft address, HOST:PORT")
    p.add_argument("--http", metavar="URL", help="(add) the new member's HTTP URL, so the leader can forward to it")
    _common(p)
    p.add_argument("--token-file", metavar="F", help="the cluster's bearer token")
    p.set_defaults(func=_members)

    p = subparsers.add_parser("leader", help="transfer leadership", description="Hand leadership to another member.")
    p.add_argument("action", choices=["transfer"])
    p.add_argument("--to", metavar="ADDR", help="the member to hand it to (default: the most caught-up follower)")
    _common(p)
    p.add_argument("--token-file", metavar="F", help="the cluster's bearer token")
    p.set_defaults(func=_leader)
