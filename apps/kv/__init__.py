"""The config store app: keys with revisions, compare-and-swap, transactions and watch (etcd v3's model).

- ``KVMachine``: the replicated state machine (``apps.kv.machine``), machine name ``"kv"``;
- HTTP routes under ``/v1/kv``, ``/v1/txn``, ``/v1/watch`` (``apps.kv.routes``);
- ``KVClient`` (async) and ``SyncKVClient``: typed clients on ``consensus.client``;
- ``consensus kv get|put|del|list|watch`` (``apps.kv.cli``).

``APP`` is what ``consensus serve --apps kv`` loads. See docs/kv.md.
"""

from apps.kv.client import (
    Compare,
    DeleteResult,
    KeyValue,
    KVClient,
    Op,
    Page,
    PutResult,
    SyncKVClient,
    TxnResult,
    Watch,
    WatchEvent,
)
from apps.kv.machine import MACHINE, KVMachine
from apps.kv.routes import routes
from consensus.server.apps import AppSpec

APP = AppSpec(
    name="kv",
    machines=lambda: {MACHINE: KVMachine()},
    routes=routes,
    client=KVClient,
    description="config store: keys with revisions, compare-and-swap, transactions, watch",
)

__all__ = ["APP", "Compare", "DeleteResult", "KVClient", "KVMachine", "KeyValue", "Op", "Page", "PutResult",
           "SyncKVClient", "TxnResult", "Watch", "WatchEvent"]
