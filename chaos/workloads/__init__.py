"""Workloads: op generators, clients that record Jepsen ops, and their checkers.

``make_workload(name)`` builds one. ``register`` and ``counter`` run on the counter app;
``set``, ``lock`` and ``kv`` need apps that do not exist yet and are refused by name.
"""

from __future__ import annotations

from typing import Any, Callable

from chaos.workloads.base import CONSISTENCIES, OpSpec, Outcome, Workload, classify_error, ok
from chaos.workloads.counter import CounterWorkload, counter_ops
from chaos.workloads.register import RegisterWorkload, register_ops

__all__ = ["WORKLOADS", "PLANNED", "CONSISTENCIES", "Workload", "OpSpec", "Outcome", "ok", "classify_error", "make_workload",
           "register_ops", "counter_ops", "RegisterWorkload", "CounterWorkload", "UnknownWorkload"]

WORKLOADS: dict[str, Callable[..., Workload]] = {"register": RegisterWorkload, "counter": CounterWorkload}

# Named in the design, waiting for their apps.
PLANNED = {
    "set": "the set workload needs a set app (add / read of all elements), which does not exist yet",
    "lock": "the lock workload needs the lock service app, which does not exist yet",
    "kv": "the kv workload needs the config store app, which does not exist yet",
}


class UnknownWorkload(ValueError):
    """Raised for a workload name that is not available; the message is one line."""


def make_workload(name: str, **options: Any) -> Workload:
    """Return the workload called ``name``."""
    if name in WORKLOADS:
        return WORKLOADS[name](**options)
    available = ", ".join(WORKLOADS)
    if name in PLANNED:
        raise UnknownWorkload(f"workload {name!r} is not available: {PLANNED[name]} (available: {available})")
    raise UnknownWorkload(f"unknown workload {name!r} (available: {available})")
