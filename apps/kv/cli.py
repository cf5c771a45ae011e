"""``consensus kv get|put|del|list|watch``: the config store from the shell, in etcdctl's words.

::

    consensus kv put app/db/host 10.0.0.5 --endpoints URL          # OK
    consensus kv put app/db/host 10.0.0.6 --prev-revision 7 ...    # compare-and-swap (0: create only)
    consensus kv get app/db/host ...                               # app/db/host NEWLINE 10.0.0.6
    consensus kv get app/ --prefix ...                             # every key under app/, in key order
    consensus kv del app/db/host ...                               # 1 (how many were deleted)
    consensus kv list app/ ...                                     # the keys under app/, one a line
    consensus kv watch app/ --prefix --rev 1 ...                   # PUT NEWLINE key NEWLINE value, as etcdctl

``--json`` prints JSON lines instead. A missing key prints nothing and exits 0 (as etcdctl); a
failed compare-and-swap or any other error exits 1 with one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from apps.kv import rules
from apps.kv.client import KVClient, KeyValue
from consensus.cli import UsageError
from consensus.client import Client
from consensus.client.commands import _common, _run
from consensus.errors import InvalidRequest, RevisionMismatch


def _print_kv(kv: KeyValue, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(dataclasses.asdict(kv)))
    elif args.print_value_only:
        print(kv.value)
    else:
        print(kv.key)
        print(kv.value)


def _get(kv: KVClient, args: argparse.Namespace) -> Any:
    async def run() -> int:
        if not args.prefix:
            found = await kv.get(args.key, args.consistency)
            if found is not None:
                _print_kv(found, args)
            return 0
        shown = 0
        async for found in kv.list_all(args.key, args.consistency):
            if args.limit is not None and shown >= args.limit:
                break
            _print_kv(found, args)
            shown += 1
        return 0

    return run()


def _put(kv: KVClient, args: argparse.Namespace) -> Any:
    async def run() -> int:
        result = await kv.put(args.key, args.value, args.prev_revision)
        print(json.dumps({"revision": result.revision, "prev": result.prev and dataclasses.asdict(result.prev)}) if args.json else "OK")
        return 0

    return run()


def _delete(kv: KVClient, args: argparse.Namespace) -> Any:
    async def run() -> int:
        result = await kv.delete(args.key, args.prev_revision)
        print(json.dumps(dataclasses.asdict(result)) if args.json else result.deleted)
        return 0

    return run()


def _list(kv: KVClient, args: argparse.Namespace) -> Any:
    async def run() -> int:
        shown = 0
        async for found in kv.list_all(args.key or "", args.consistency):
            if args.limit is not None and shown >= args.limit:
                break
            print(json.dumps(dataclasses.asdict(found)) if args.json else found.key)
            shown += 1
        return 0

    return run()


def _watch(kv: KVClient, args: argparse.Namespace) -> Any:
    async def run() -> int:
        seen = 0
        async for event in kv.watch(args.key, args.rev):
            if not args.prefix and event.key != args.key:
                continue  # one key: filtered here (a prefix watch of the key would also match longer keys)
            if args.json:
                print(json.dumps(dataclasses.asdict(event)), flush=True)
            else:
                print(f"{event.type.upper()}\n{event.key}\n{event.value if event.value is not None else ''}", flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return 0
        return 0

    return run()


_ACTIONS = {"get": _get, "put": _put, "del": _delete, "list": _list, "watch": _watch}


def _main(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.rev is not None and args.rev < 1:
        raise UsageError("--rev must be at least 1")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.action == "put" and args.value is None:
        raise UsageError("put needs KEY and VALUE")
    if args.action != "put" and args.value is not None:
        raise UsageError(f"{args.action} takes one KEY, not a VALUE")
    if args.action != "list" and args.key is None:
        raise UsageError(f"{args.action} needs a KEY")

    async def action(client: Client) -> int:
        kv = KVClient(client)
        try:
            return await _ACTIONS[args.action](kv, args)  # type: ignore[no-any-return]
        except RevisionMismatch as exc:
            current = exc.detail["mod_revision"] if isinstance(exc.detail, dict) else 0
            raise RevisionMismatch(f"{exc.message} (current mod_revision {current})") from None

    try:  # a bad key or value is misuse: nothing is sent
        if args.action == "list" or args.prefix:
            rules.check_prefix(args.key or "", "the prefix")
        else:
            rules.check_key(args.key, "the key")
        if args.value is not None:
            rules.check_value(args.value)
    except InvalidRequest as exc:
        raise UsageError(exc.message) from None
    return _run(args, action)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("kv", help="get, put, delete, list and watch config-store keys (etcdctl's words)",
                              description="Use the config store (the kv app) as etcdctl uses etcd.")
    p.add_argument("action", choices=list(_ACTIONS), help="get KEY | put KEY VALUE | del KEY | list [PREFIX] | watch KEY")
    p.add_argument("key", nargs="?", metavar="KEY", help="the key (with --prefix, or for list: the prefix)")
    p.add_argument("value", nargs="?", metavar="VALUE", help="put: the new value")
    p.add_argument("--prefix", action="store_true", help="get, watch: every key that starts with KEY")
    p.add_argument("--prev-revision", type=int, metavar="R", help="put, del: only if the key's mod_revision is R (0: only if absent)")
    p.add_argument("--rev", type=int, metavar="R", help="watch: from revision R (default: changes from now on)")
    p.add_argument("--limit", type=int, metavar="N", help="get --prefix, list: at most N keys")
    p.add_argument("--count", type=int, metavar="N", help="watch: stop after N events")
    p.add_argument("--consistency", choices=["linearizable", "stale"], default="linearizable", help="get, list")
    p.add_argument("--print-value-only", action="store_true", help="get: print values only")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    _common(p)
    p.add_argument("--token-file", metavar="F", help="the cluster's bearer token")
    p.set_defaults(func=_main)
