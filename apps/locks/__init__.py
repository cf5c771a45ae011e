"""The lock service: sessions (leases), exclusive and shared locks, fencing tokens.

- ``LocksMachine``: the replicated state machine (``apps.locks.machine``);
- HTTP routes under ``/v1/sessions`` and ``/v1/locks`` (``apps.locks.routes``);
- ``LockClient`` (async) and ``SyncLockClient``: typed clients, with ``LockClient.lock()``;
- ``FencedStore``: a register that refuses writes with an older fencing token (``apps.locks.fenced``).

``APP`` is what ``consensus serve --apps locks`` loads; ``consensus lock`` is ``apps.locks.cli``.
"""

from apps.locks.client import Grant, LeaseLost, LockClient, LockState, Session, SyncLockClient
from apps.locks.fenced import FencedStore, StaleToken
from apps.locks.machine import LockLimits, LocksMachine
from apps.locks.routes import MACHINE, routes
from consensus.server.apps import AppSpec

APP = AppSpec(
    name="locks",
    machines=lambda: {MACHINE: LocksMachine()},
    routes=routes,
    client=LockClient,
    description="lock service: sessions with leases, exclusive and shared locks, fencing tokens",
)

__all__ = ["APP", "FencedStore", "Grant", "LeaseLost", "LockClient", "LockLimits", "LockState", "LocksMachine",
           "Session", "StaleToken", "SyncLockClient"]
