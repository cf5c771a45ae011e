"""``chaos toxiproxy-cli``: toxiproxy-cli's words for any Toxiproxy server (embedded or Go).

::

    chaos toxiproxy-cli --host http://127.0.0.1:8474 list
    chaos toxiproxy-cli create -l 127.0.0.1:26379 -u 127.0.0.1:6379 redis
    chaos toxiproxy-cli toxic add -t latency -a latency=100 -a jitter=20 --downstream redis
    chaos toxiproxy-cli toxic update -n latency_downstream -a latency=300 redis
    chaos toxiproxy-cli toxic remove -n latency_downstream redis
    chaos toxiproxy-cli toggle redis; chaos toxiproxy-cli inspect redis; chaos toxiproxy-cli delete redis

As toxiproxy-cli: ``--host`` (or ``TOXIPROXY_URL``) names the server, a toxic's name defaults to
``<type>_<stream>``, its stream to downstream, attributes are ``-a key=value``. Deviation: ``-h``
is help, not the host (argparse). Errors are one line, exit 1; bad flags exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

import requests

from chaos.toxiproxy.client import InvalidToxic, NotFound, Proxy, ProxyExists, ServerError, Toxiproxy

DEFAULT_HOST = "http://localhost:8474"


class _Failed(Exception):
    """The server refused or could not be reached: one line, exit 1."""


def _proxy(api: Toxiproxy, name: str) -> Proxy:
    proxy = api.get_proxy(name)
    if proxy is None:
        raise _Failed(f"proxy {name!r} not found")
    return proxy


def _attributes(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _Failed(f"an attribute is key=value, not {pair!r}")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                raise _Failed(f"attribute {key} needs a number, not {value!r}") from None
    return out


def _toxics_lines(proxy: Proxy) -> list[str]:
    lines = []
    for name, toxic in sorted(proxy.toxics().items()):
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(toxic.attributes.items()))
        lines.append(f"  {name}: type={toxic.type} stream={toxic.stream} toxicity={toxic.toxicity:g} attributes=[{attrs}]")
    return lines or ["  (no toxics)"]


def _list(api: Toxiproxy, args: argparse.Namespace, out: TextIO) -> None:
    proxies = api.proxies()
    rows = [["Name", "Listen", "Upstream", "Enabled", "Toxics"]]
    rows += [[p.name, p.listen, p.upstream, "enabled" if p.enabled else "disabled", str(len(p.toxics()) or "None")]
             for _, p in sorted(proxies.items())]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=out)
    if not proxies:
        print("no proxies; create one with: chaos toxiproxy-cli create -l HOST:PORT -u HOST:PORT NAME", file=out)


def _inspect(api: Toxiproxy, args: argparse.Namespace, out: TextIO) -> None:
    p = _proxy(api, args.proxy)
    print(f"Name: {p.name}\tListen: {p.listen}\tUpstream: {p.upstream}\tEnabled: {'enabled' if p.enabled else 'disabled'}",
          file=out)
    print("\n".join(_toxics_lines(p)), file=out)


def _create(api: Toxiproxy, args: argparse.Namespace, out: TextIO) -> None:
    p = api.create(upstream=args.upstream, name=args.proxy, listen=args.listen)
    print(f"Created new proxy {p.name} listening on {p.listen}", file=out)


def _toggle(api: Toxiproxy, args: argparse.Namespace, out: TextIO) -> None:
    p = _proxy(api, args.proxy)
    p.update(enabled=not p.enabled)
    print(f"Proxy {p.name} is now {'enabled' if p.enabled else 'disabled'}", file=out)


def _delete(api: Toxiproxy, args: argparse.Namespace, out: TextIO) -> None:
    api.destroy(_proxy(api, args.proxy).name)
    print(f"Deleted proxy {args.proxy}", file=out)


def _stream(args: argparse.Namespace) -> str:
    if args.upstream and args.downstream:
        raise _Failed("give --upstream or --downstream, not both")
    return "upstream" if args.upstream else "downstream"


def _toxic_add(api: Toxiproxy, args: argparse.Namespace, out: TextIO) -> None:
    p, stream = _proxy(api, args.proxy), _stream(args)
    name = args.toxicName or f"{args.type}_{stream}"
    p.add_toxic(name=name, type=args.type, stream=stream, toxicity=args.toxicity, attributes=_attributes(args.attribute))
    print(f"Added {stream} {args.type} toxic '{name}' on proxy '{p.name}'", file=out)


def _toxic_update(api: Toxiproxy, args: argparse.Namespace, out: TextIO) -> None:
    p = _proxy(api, args.proxy)
    p.update_toxic(args.toxicName, attributes=_attributes(args.attribute) or None, toxicity=args.toxicity)
    print(f"Updated toxic '{args.toxicName}' on proxy '{p.name}'", file=out)


def _toxic_remove(api: Toxiproxy, args: argparse.Namespace, out: TextIO) -> None:
    p = _proxy(api, args.proxy)
    p.destroy_toxic(args.toxicName)
    print(f"Removed toxic '{args.toxicName}' on proxy '{p.name}'", file=out)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if getattr(args, "action", None) is None:
        print("chaos toxiproxy-cli: error: a command is required: list, inspect, create, toggle, delete, toxic",
              file=err)
        return 2
    host = args.host or os.environ.get("TOXIPROXY_URL") or DEFAULT_HOST
    host = host if "://" in host else f"http://{host}"
    try:
        with Toxiproxy(host, timeout=5.0) as api:
            args.action(api, args, out)
    except _Failed as exc:
        print(f"chaos toxiproxy-cli: {exc}", file=err)
        return 1
    except (ProxyExists, NotFound, InvalidToxic) as exc:
        body = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        print(f"chaos toxiproxy-cli: {type(exc).__name__}: {body.strip()}", file=err)
        return 1
    except ServerError as exc:
        print(f"chaos toxiproxy-cli: {exc}", file=err)
        return 1
    except requests.RequestException as exc:
        print(f"chaos toxiproxy-cli: cannot reach toxiproxy at {host}: {type(exc).__name__}", file=err)
        return 1
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("toxiproxy-cli", help="drive any Toxiproxy server with toxiproxy-cli's commands",
                              description="list, inspect, create, toggle and delete proxies, and add, update and "
                                          "remove toxics, on any Toxiproxy server.")
    p.add_argument("--host", default=None, help=f"Toxiproxy API URL (default $TOXIPROXY_URL or {DEFAULT_HOST})")
    p.set_defaults(func=run, action=None)
    words = p.add_subparsers(metavar="COMMAND", parser_class=type(p))
    for name, aliases, action, help_ in (("list", ["l", "li", "ls"], _list, "list all proxies"),
                                         ("inspect", ["i", "ins"], _inspect, "show a proxy and its toxics"),
                                         ("toggle", ["tog"], _toggle, "enable a disabled proxy, disable an enabled one"),
                                         ("delete", ["d"], _delete, "delete a proxy")):
        w = words.add_parser(name, aliases=aliases, help=help_)
        if name != "list":
            w.add_argument("proxy", metavar="PROXY")
        w.set_defaults(action=action)
    w = words.add_parser("create", aliases=["c", "new"], help="create a proxy")
    w.add_argument("proxy", metavar="NAME")
    w.add_argument("--listen", "-l", required=True, metavar="HOST:PORT")
    w.add_argument("--upstream", "-u", required=True, metavar="HOST:PORT")
    w.set_defaults(action=_create)
    toxic = words.add_parser("toxic", aliases=["t"], help="add, update or remove a toxic")
    verbs = toxic.add_subparsers(metavar="VERB", parser_class=type(p))
    for verb, aliases, action in (("add", ["a"], _toxic_add), ("update", ["u"], _toxic_update),
                                  ("remove", ["r", "delete", "d"], _toxic_remove)):
        v = verbs.add_parser(verb, aliases=aliases)
        v.add_argument("proxy", metavar="PROXY")
        v.add_argument("--toxicName", "-n", required=verb != "add", default=None, help="the toxic's name")
        if verb != "remove":
            v.add_argument("--attribute", "-a", action="append", default=[], metavar="KEY=VALUE")
            v.add_argument("--toxicity", "--tox", type=float, default=None if verb == "update" else 1.0)
        if verb == "add":
            v.add_argument("--type", "-t", required=True, help="latency, bandwidth, slow_close, timeout, slicer, ...")
            v.add_argument("--upstream", "-u", action="store_true", help="on the client -> server stream")
            v.add_argument("--downstream", "-d", action="store_true", help="on the server -> client stream (default)")
        v.set_defaults(action=action)
    toxic.set_defaults(action=None)
