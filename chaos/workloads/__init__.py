"""Workloads: op generators, clients that record Jepsen ops through the apps' typed clients, and
their checkers.

``make_workload(name)`` builds one: ``register`` (config store, get / put / CAS on revisions),
``counter`` (counter app), ``kv`` (config store, get / put / delete / txn), ``set`` (config-store
keys under a prefix), ``lock`` (lock service and a fenced register) and ``bank`` (transfers in
transactions, across Raft groups when there are several).
"""

from __future__ import annotations

from typing import Any, Callable

from chaos.workloads.bank import BankWorkload, bank_ops
from chaos.workloads.base import CONSISTENCIES, OpSpec, Outcome, Workload, classify_error, ok
from chaos.workloads.counter import CounterWorkload, counter_ops
from chaos.workloads.kv import KvWorkload, kv_ops
from chaos.workloads.lock import LockProcess, LockWorkload, lock_step
from chaos.workloads.register import RegisterWorkload, register_ops
from chaos.workloads.set import SetWorkload, set_ops

__all__ = ["WORKLOADS", "PLANNED", "CONSISTENCIES", "Workload", "OpSpec", "Outcome", "ok", "classify_error",
           "make_workload", "register_ops", "bank_ops", "BankWorkload", "counter_ops", "kv_ops", "set_ops", "lock_step", "RegisterWorkload",
           "CounterWorkload", "KvWorkload", "SetWorkload", "LockWorkload", "LockProcess", "UnknownWorkload"]

WORKLOADS: dict[str, Callable[..., Workload]] = {"register": RegisterWorkload, "counter": CounterWorkload,
                                                 "lock": LockWorkload, "kv": KvWorkload, "set": SetWorkload,
                                                 "bank": BankWorkload}

# Named in the design, waiting for their apps.
PLANNED: dict[str, str] = {}


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
