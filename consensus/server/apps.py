"""Find the apps a node can serve: each is a state machine factory, HTTP routes and a client.

``consensus serve --apps counter,locks`` loads apps by name. Built-in apps are listed in
``BUILTIN_APPS`` as "module:attribute" strings and imported only when asked for (the
``consensus`` package never imports ``apps`` at import time: dependencies point one way).
Third-party apps register an ``AppSpec`` under the entry point group ``raftwork.apps``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from consensus.errors import InvalidRequest
from consensus.machine import StateMachine

if TYPE_CHECKING:
    from consensus.server.routing import Route

ENTRY_POINT_GROUP = "raftwork.apps"
BUILTIN_APPS: dict[str, str] = {
    "counter": "apps.counter:APP",
    "kv": "apps.kv:APP",
}


@dataclass(frozen=True)
class AppSpec:
    """What a node needs to serve one app."""

    name: str
    machines: Callable[[], Mapping[str, StateMachine]]  # fresh machines, keyed by machine name
    routes: Callable[[], Sequence["Route"]]
    client: type | None = None  # the typed client, e.g. apps.counter.CounterClient
    description: str = ""


def _entry_points() -> dict[str, Any]:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # broken metadata must not stop a node from starting with built-in apps
        return {}


def available_apps() -> list[str]:
    """Return the names of every app that can be loaded."""
    return sorted(set(BUILTIN_APPS) | set(_entry_points()))


def load_app(name: str) -> AppSpec:
    """Import and return the app called ``name``; raise ``InvalidRequest`` if there is none."""
    if name in BUILTIN_APPS:
        module_name, _, attribute = BUILTIN_APPS[name].partition(":")
        spec = getattr(importlib.import_module(module_name), attribute)
    elif name in _entry_points():
        spec = _entry_points()[name].load()
    else:
        raise InvalidRequest(f"unknown app {name!r}; available: {', '.join(available_apps())}")
    if not isinstance(spec, AppSpec):
        raise InvalidRequest(f"app {name!r} does not provide an AppSpec")
    return spec


def load_apps(names: Sequence[str]) -> list[AppSpec]:
    """Load several apps; reject duplicates and machine name clashes."""
    specs: list[AppSpec] = []
    machines: set[str] = set()
    for name in names:
        if any(s.name == name for s in specs):
            raise InvalidRequest(f"app {name!r} is listed twice")
        spec = load_app(name)
        clash = machines & set(spec.machines())
        if clash:
            raise InvalidRequest(f"app {name!r} reuses machine names {sorted(clash)}")
        machines |= set(spec.machines())
        specs.append(spec)
    return specs


def machines_for(specs: Sequence[AppSpec]) -> dict[str, StateMachine]:
    """Return fresh state machines for every app in ``specs``."""
    machines: dict[str, StateMachine] = {}
    for spec in specs:
        machines.update(spec.machines())
    return machines
