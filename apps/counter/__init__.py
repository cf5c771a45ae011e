"""The counter app: named 64-bit counters with increment, set and compare-and-set.

- ``CounterMachine``: the replicated state machine (``apps.counter.machine``);
- HTTP routes under ``/v1/counters`` (``apps.counter.routes``);
- ``CounterClient`` (async) and ``SyncCounterClient``: typed clients on ``consensus.client``.

``APP`` is what ``consensus serve --apps counter`` loads.
"""

from apps.counter.client import CounterClient, SyncCounterClient
from apps.counter.machine import CounterMachine
from apps.counter.routes import MACHINE, routes
from consensus.server.apps import AppSpec

APP = AppSpec(
    name="counter",
    machines=lambda: {MACHINE: CounterMachine()},
    routes=routes,
    client=CounterClient,
    description="named 64-bit counters: get, incr, set, compare-and-set",
)

__all__ = ["APP", "CounterClient", "CounterMachine", "SyncCounterClient"]
