"""The config store state machine: keys with revisions, compare-and-swap, transactions, watch.

Each key holds ``value``, ``create_revision``, ``mod_revision`` and ``version`` (etcd's v3 data
model). The store's revision is the ``ctx.seq`` of the last command that changed it: strictly
increasing, identical on every replica, and kept by snapshots (``ctx.seq`` is unique per command
while a log index is not: one entry carries many commands). A revision may skip numbers (other
machines' commands and refused ones use sequence numbers too).

Commands (plain data, as they travel in the log):

- ``{"op": "put", "key", "value", "prev_revision"?}`` -> ``{"revision", "prev": kv | None}``;
  with ``prev_revision`` only if the key's ``mod_revision`` is that (0: only if the key does not
  exist), else ``RevisionMismatch`` (409) whose detail is the current kv (or None);
- ``{"op": "delete", "key", "prev_revision"?}`` -> ``{"deleted": 0 | 1, "revision"}``;
- ``{"op": "txn", "compare": [...], "success": [...], "failure": [...]}`` ->
  ``{"succeeded", "responses", "revision"}``: every compare holds -> the success ops, else the
  failure ops, all at one revision, all or nothing (a quota that the whole would break refuses all);
- ``{"op": "configure", "settings": {...}}`` -> the settings (see ``apps.kv.rules``).

Queries: ``{"op": "get", "key"}`` -> kv or None; ``{"op": "list", "prefix", "limit"?, "after"?}``
-> ``{"kvs", "more", "revision"}``; ``{"op": "watch", "prefix", "from_revision"?}`` ->
``{"events", "next_revision"}`` (``Compacted`` once ``from_revision`` left the window);
``{"op": "status"}`` -> settings, usage and revisions.

Two-phase commit across groups (``apps.kv.twophase``): ``txn_begin``, ``txn_decide``,
``txn_forget`` (the transaction record), ``txn_prepare``, ``txn_finish`` (intents), and the
queries ``gets`` (several keys at once), ``txn_validate``, ``txn_record``, ``txn_active`` (pending
records and prepared transactions, for operators and the chaos harness) and ``get_intent`` (a
key and the write intent on it, for readers that resolve old intents). A put, delete or txn that
writes a key locked by a prepared transaction is refused with ``IntentHeld`` (definite 409).
Finished transactions are dropped after ``txn_retention_s`` (see ``apps.kv.twophase``).

The watch window keeps the last ``watch_window`` events (whole revisions) in revision order;
``compact_revision`` is the newest revision dropped from it. Pure and deterministic.
"""

from __future__ import annotations

import bisect
from typing import Any, Callable, Iterable

import msgpack

from apps.kv import rules
from apps.kv.twophase import COMMITTED, DECISIONS, Prepared, TxnTables, check_groups, check_txn_id, write_keys
from consensus.errors import Compacted, IntentHeld, InvalidRequest, QuotaExceeded, RevisionMismatch
from consensus.machine import ApplyContext

MACHINE = "kv"

# A key's record: (value, create_revision, mod_revision, version). Tuples are immutable, so a
# shallow copy of the table is a consistent view (the snapshot capture relies on it).
Record = tuple[str, int, int, int]
# A watch event: (revision, type, key, value or None); tuples sort by revision first.
Event = tuple[int, str, str, "str | None"]

_COMMANDS: dict[str, tuple[set[str], set[str]]] = {
    "put": ({"op", "key", "value"}, {"op", "key", "value", "prev_revision"}),
    "delete": ({"op", "key"}, {"op", "key", "prev_revision"}),
    "txn": ({"op"}, {"op", "compare", "success", "failure"}),
    "configure": ({"op", "settings"}, {"op", "settings"}),
    "txn_begin": ({"op", "id", "participants"}, {"op", "id", "participants"}),
    "txn_decide": ({"op", "id", "decision"}, {"op", "id", "decision", "result"}),
    "txn_prepare": ({"op", "id", "coordinator", "reads", "writes"}, {"op", "id", "coordinator", "reads", "writes"}),
    "txn_finish": ({"op", "id", "decision"}, {"op", "id", "decision"}),
    "txn_forget": ({"op", "id"}, {"op", "id"}),
}
_QUERIES: dict[str, tuple[set[str], set[str]]] = {
    "get": ({"op", "key"}, {"op", "key"}),
    "list": ({"op"}, {"op", "prefix", "limit", "after"}),
    "watch": ({"op"}, {"op", "prefix", "from_revision", "limit"}),
    "status": ({"op"}, {"op"}),
    "gets": ({"op", "keys"}, {"op", "keys"}),
    "txn_validate": ({"op", "reads"}, {"op", "reads"}),
    "txn_record": ({"op", "id"}, {"op", "id"}),
    "txn_active": ({"op"}, {"op"}),
    "get_intent": ({"op", "key"}, {"op", "key"}),
}


def kv_json(key: str, record: Record | None) -> dict[str, Any] | None:
    """Return the JSON form of a key's record (None for a missing key)."""
    if record is None:
        return None
    value, create, mod, version = record
    return {"key": key, "value": value, "create_revision": create, "mod_revision": mod, "version": version}


def event_json(event: Event) -> dict[str, Any]:
    revision, kind, key, value = event
    return {"type": kind, "key": key, "value": value, "revision": revision}


def _size(key: str, value: str) -> int:
    return len(key.encode()) + len(value.encode())


def check_command(command: Any) -> dict[str, Any]:
    """Check a command's shape and values; raise ``InvalidRequest`` (nothing is submitted)."""
    op = _check_op(command, _COMMANDS, "command")
    if op in ("put", "delete"):
        rules.check_key(command["key"])
        if op == "put":
            rules.check_value(command["value"])
        if "prev_revision" in command:
            rules.check_revision(command["prev_revision"], "prev_revision")
    elif op == "txn":
        rules.check_txn(command)
    elif op == "configure":
        rules.check_settings(command["settings"])
    else:
        check_txn_id(command["id"])
        if op == "txn_begin":
            check_groups(command["participants"], "participants")
        elif op in ("txn_decide", "txn_finish") and command["decision"] not in DECISIONS:
            raise InvalidRequest(f"decision must be one of {', '.join(DECISIONS)}")
        elif op == "txn_prepare":
            check_groups([command["coordinator"]], "coordinator")
            _check_reads(command["reads"])
            rules.check_ops(command["writes"], "writes")
            if any("get" in w for w in command["writes"]):
                raise InvalidRequest("writes holds puts and deletes only")
    return command


def _check_reads(reads: Any) -> None:
    """A read set is ``[[key, mod_revision], ...]`` (0: the key did not exist)."""
    if not isinstance(reads, list) or len(reads) > rules.MAX_TXN_OPS + rules.MAX_TXN_COMPARES:
        raise InvalidRequest("reads must be a list of [key, mod_revision] pairs")
    for item in reads:
        if not isinstance(item, list) or len(item) != 2:
            raise InvalidRequest("reads must be a list of [key, mod_revision] pairs")
        rules.check_key(item[0])
        rules.check_revision(item[1], "a read's mod_revision")


def check_query(query: Any) -> dict[str, Any]:
    op = _check_op(query, _QUERIES, "query")
    if op in ("get", "get_intent"):
        rules.check_key(query["key"])
    elif op == "gets":
        if not isinstance(query["keys"], list) or len(query["keys"]) > rules.MAX_TXN_OPS + rules.MAX_TXN_COMPARES:
            raise InvalidRequest("keys must be a list of keys")
        for key in query["keys"]:
            rules.check_key(key)
    elif op == "txn_validate":
        _check_reads(query["reads"])
    elif op == "txn_record":
        check_txn_id(query["id"])
    elif op in ("list", "watch"):
        rules.check_prefix(query.get("prefix", ""))
        if op == "list" and query.get("after") is not None:
            rules.check_prefix(query["after"], "after")
        if query.get("limit") is not None and not rules.is_count(query["limit"], 1, rules.MAX_PAGE):
            raise InvalidRequest(f"limit must be an integer from 1 to {rules.MAX_PAGE}")
        if op == "watch" and query.get("from_revision") is not None:
            if not rules.is_count(query["from_revision"], 1):
                raise InvalidRequest("from_revision must be an integer from 1 to 2^63-1")
    return query


def _check_op(message: Any, ops: dict[str, tuple[set[str], set[str]]], what: str) -> str:
    if not isinstance(message, dict):
        raise InvalidRequest(f"a kv {what} must be an object")
    op = message.get("op")
    if op not in ops:
        raise InvalidRequest(f"unknown kv {what} {str(op)[:40]!r}; expected one of {', '.join(ops)}")
    rules.check_fields(message, f"kv {what} {op!r}", *ops[op])
    return op  # type: ignore[no-any-return]


class KVMachine:
    """The config store; see the module docstring for commands and queries."""

    def __init__(self) -> None:
        self.kvs: dict[str, Record] = {}
        self.order: list[str] = []  # the keys, sorted (code point order is UTF-8 byte order)
        self.total_bytes = 0
        self.revision = 0
        self.settings: dict[str, int] = dict(rules.DEFAULT_SETTINGS)
        self.events: list[Event] = []  # events[self.head:] is the window (trimmed lazily, amortized O(1))
        self.head = 0
        self.compact_revision = 0
        self.txns = TxnTables()

    # -- the StateMachine protocol -------------------------------------------------------------

    def wants_time(self) -> bool:
        """While a transaction holds locks here, leader-stamped time must move on in the log even
        when nobody writes: that is how a lock grows old enough for anyone to resolve."""
        return bool(self.txns.prepared)

    def advance_time(self, ctx: ApplyContext) -> None:
        self._tick(ctx)

    def _tick(self, ctx: ApplyContext) -> None:
        """Move leader-stamped time on; drop finished transactions older than the retention."""
        self.txns.now_ns = max(self.txns.now_ns, ctx.time_ns)
        self.txns.collect(self.settings["txn_retention_s"] * 10**9)

    def validate(self, command: dict[str, Any]) -> None:
        check_command(command)

    def validate_query(self, query: dict[str, Any]) -> None:
        check_query(query)

    def apply(self, command: dict[str, Any], ctx: ApplyContext) -> Any:
        check_command(command)  # again: a replica never trusts what the proposer checked
        self._tick(ctx)
        op = command["op"]
        if op.startswith("txn_"):
            return self._two_phase(command, ctx)
        if op in ("put", "delete"):
            self._check_unlocked([command["key"]])
        elif op == "txn":
            self._check_unlocked(write_keys(command.get("success", []) + command.get("failure", [])))
        if op == "put":
            self._check_prev(command)
            ops = [{"put": {"key": command["key"], "value": command["value"]}}]
            response = self._commit(ops, ctx.seq)[1][0]["put"]
            return {"revision": response["revision"], "prev": response["prev"]}
        if op == "delete":
            self._check_prev(command)
            response = self._commit([{"delete": {"key": command["key"]}}], ctx.seq)[1][0]["delete"]
            return response
        if op == "txn":
            succeeded = all(self._holds(c) for c in command.get("compare", []))
            revision, responses = self._commit(command.get("success" if succeeded else "failure", []), ctx.seq)
            return {"succeeded": succeeded, "responses": responses, "revision": revision}
        self.settings.update(command["settings"])
        self._trim()
        return dict(self.settings)

    def query(self, query: dict[str, Any]) -> Any:
        check_query(query)
        op = query["op"]
        if op == "get":
            return kv_json(query["key"], self.kvs.get(query["key"]))
        if op == "gets":
            return {"kvs": [kv_json(k, self.kvs.get(k)) for k in query["keys"]], "revision": self.revision}
        if op == "txn_validate":
            return self._validate([tuple(r) for r in query["reads"]], None) or {"ok": True}
        if op == "txn_record":
            return self.txns.record_json(query["id"])
        if op == "txn_active":
            return self.txns.active()
        if op == "get_intent":
            key = query["key"]
            writer = self.txns.writers.get(key)
            return {"kv": kv_json(key, self.kvs.get(key)),
                    "intent": self.txns.blocker(key, writer) if writer is not None else None}
        if op == "list":
            return self._list(query.get("prefix", ""), query.get("limit") or rules.MAX_PAGE, query.get("after"))
        if op == "watch":
            return self.watch(query.get("prefix", ""), query.get("from_revision"), query.get("limit") or rules.MAX_WATCH_EVENTS)
        return {"settings": dict(self.settings), "keys": len(self.kvs), "bytes": self.total_bytes,
                "revision": self.revision, "compact_revision": self.compact_revision,
                "events": len(self.events) - self.head}

    # -- two-phase commit (see apps.kv.twophase) ---------------------------------------------------

    def _check_unlocked(self, keys: list[str]) -> None:
        for key in keys:
            holder = self.txns.holder(key, writing=True)
            if holder is not None:
                raise IntentHeld(f"key {key[:100]!r} is locked by transaction {holder[:64]}", detail=self.txns.blocker(key, holder))

    def _validate(self, reads: list[tuple[str, int]], me: str | None) -> dict[str, Any] | None:
        """Return why ``reads`` no longer hold (a key moved on, or another transaction will write it), or None."""
        for key, revision in reads:
            holder = self.txns.holder(key, me, writing=False)
            if holder is not None:
                return {"ok": False, "reason": "conflict", **self.txns.blocker(key, holder)}
            record = self.kvs.get(key)
            if (record[2] if record is not None else 0) != revision:
                return {"ok": False, "reason": "stale", "key": key}
        return None

    def _two_phase(self, command: dict[str, Any], ctx: ApplyContext) -> Any:
        op, txn, tables = command["op"], command["id"], self.txns
        if op == "txn_begin":
            return tables.begin(txn, command["participants"])
        if op == "txn_decide":
            return tables.decide(txn, command["decision"], command.get("result"))
        if op == "txn_forget":
            return tables.forget(txn)
        if txn in tables.finished:  # retried (or late) after this group finished it: never lock again
            state, revision, _ = tables.finished[txn]
            return {"vote": "finished", "state": state, "revision": revision}
        if op == "txn_prepare":
            if txn in tables.prepared:
                return {"vote": "yes"}
            reads = [(k, r) for k, r in command["reads"]]
            refused = self._validate(reads, txn)
            for key in write_keys(command["writes"]):
                holder = tables.holder(key, txn, writing=True)
                if refused is None and holder is not None:
                    refused = {"ok": False, "reason": "conflict", **tables.blocker(key, holder)}
            if refused is not None:
                refused.pop("ok")
                return {"vote": "no", **refused}
            staged, _ = self._stage(command["writes"], ctx.seq)
            try:
                self._check_quotas({k: r for k, r in staged.items() if r is not None or k in self.kvs})
            except QuotaExceeded as exc:
                return {"vote": "no", "reason": "quota", "message": exc.message}
            tables.lock(txn, Prepared(command["coordinator"], ctx.time_ns, [k for k, _ in reads], command["writes"]))
            return {"vote": "yes"}
        prepared = tables.unlock(txn)  # txn_finish
        if prepared is not None and command["decision"] == COMMITTED:
            self._commit(prepared.writes, ctx.seq, quotas=False)  # decided: quotas were checked at prepare
        tables.finish(txn, command["decision"], self.revision)
        return {"vote": "finished", "state": command["decision"], "revision": self.revision}

    # -- writes ----------------------------------------------------------------------------------

    def _check_prev(self, command: dict[str, Any]) -> None:
        if "prev_revision" not in command:
            return
        key, expected = command["key"], command["prev_revision"]
        record = self.kvs.get(key)
        current = record[2] if record is not None else 0
        if current != expected:
            raise RevisionMismatch(f"key {key[:100]!r} has mod_revision {current}, not {expected}",
                                   detail=kv_json(key, record))

    def _holds(self, compare: dict[str, Any]) -> bool:
        """Evaluate one compare as etcd does: a missing key has version and revisions 0, and
        every compare on the value of a missing key fails."""
        record = self.kvs.get(compare["key"])
        target = compare["target"]
        if target == "value":
            if record is None:
                return False
            actual: Any = record[0]
        else:
            index = {"create_revision": 1, "mod_revision": 2, "version": 3}[target]
            actual = record[index] if record is not None else 0
        expected = compare["value"]
        return {"==": actual == expected, "!=": actual != expected, "<": actual < expected, ">": actual > expected}[compare["op"]]

    def _stage(self, ops: Iterable[dict[str, Any]], revision: int) -> tuple[dict[str, Record | None], list[Callable[[int], dict[str, Any]]]]:
        """Work out what ``ops`` would do, reading their own writes; change nothing yet.

        Returns the staged writes (key -> new record, None to delete) and, per op, a function of
        the final store revision that gives its response.
        """
        staged: dict[str, Record | None] = {}
        answers: list[Callable[[int], dict[str, Any]]] = []
        for op in ops:
            kind, args = next(iter(op.items()))
            key = args["key"]
            current = staged[key] if key in staged else self.kvs.get(key)
            prev = kv_json(key, current)
            if kind == "get":
                answers.append(lambda final, prev=prev: {"get": prev})
            elif kind == "put":
                create, version = (current[1], current[3] + 1) if current is not None else (revision, 1)
                staged[key] = (args["value"], create, revision, version)
                answers.append(lambda final, prev=prev: {"put": {"revision": final, "prev": prev}})
            else:
                if current is not None:
                    staged[key] = None
                deleted = 0 if current is None else 1
                answers.append(lambda final, deleted=deleted: {"delete": {"deleted": deleted, "revision": final}})
        return staged, answers

    def _commit(self, ops: Iterable[dict[str, Any]], revision: int, quotas: bool = True) -> tuple[int, list[dict[str, Any]]]:
        """Apply ``ops`` at ``revision`` all together (or raise, changing nothing)."""
        staged, answers = self._stage(ops, revision)
        changed = {k: r for k, r in staged.items() if r is not None or k in self.kvs}
        if changed:
            if quotas:
                self._check_quotas(changed)
            for key, record in changed.items():
                self._write(key, record, revision)
            self.revision = revision
            self._trim()
        return self.revision, [answer(self.revision) for answer in answers]

    def _check_quotas(self, changed: dict[str, Record | None]) -> None:
        added_keys = sum(1 for k, r in changed.items() if r is not None and k not in self.kvs) - \
            sum(1 for k, r in changed.items() if r is None)
        added_bytes = 0
        for key, record in changed.items():
            old = self.kvs.get(key)
            added_bytes += (_size(key, record[0]) if record is not None else 0) - (_size(key, old[0]) if old is not None else 0)
        max_keys, max_bytes = self.settings["max_keys"], self.settings["max_bytes"]
        if added_keys > 0 and len(self.kvs) + added_keys > max_keys:
            raise QuotaExceeded(f"the store holds {len(self.kvs)} keys; max_keys is {max_keys}",
                                detail={"quota": "max_keys", "limit": max_keys, "used": len(self.kvs)})
        if added_bytes > 0 and self.total_bytes + added_bytes > max_bytes:
            raise QuotaExceeded(f"the store holds {self.total_bytes} bytes; this needs {added_bytes} more and max_bytes is {max_bytes}",
                                detail={"quota": "max_bytes", "limit": max_bytes, "used": self.total_bytes})

    def _write(self, key: str, record: Record | None, revision: int) -> None:
        old = self.kvs.get(key)
        if old is not None:
            self.total_bytes -= _size(key, old[0])
        if record is None:
            del self.kvs[key]
            del self.order[bisect.bisect_left(self.order, key)]
            self.events.append((revision, "delete", key, None))
            return
        if old is None:
            bisect.insort(self.order, key)
        self.kvs[key] = record
        self.total_bytes += _size(key, record[0])
        self.events.append((revision, "put", key, record[0]))

    def _trim(self) -> None:
        """Drop the oldest events beyond the window, whole revisions at a time."""
        events, window = self.events, self.settings["watch_window"]
        while len(events) - self.head > window:
            self.compact_revision = events[self.head][0]
            self.head += 1
            while self.head < len(events) and events[self.head][0] == self.compact_revision:
                self.head += 1
        if self.head > 1024 and self.head * 2 > len(events):
            del events[: self.head]
            self.head = 0

    # -- reads -----------------------------------------------------------------------------------

    def _list(self, prefix: str, limit: int, after: str | None) -> dict[str, Any]:
        order = self.order
        start = bisect.bisect_left(order, prefix)
        if after is not None and after >= prefix:
            start = max(start, bisect.bisect_right(order, after))
        kvs: list[dict[str, Any]] = []
        size = 0
        i = start
        while i < len(order) and order[i].startswith(prefix) and len(kvs) < limit and size < rules.MAX_PAGE_BYTES:
            key = order[i]
            record = self.kvs[key]
            kvs.append(kv_json(key, record))  # type: ignore[arg-type]
            size += _size(key, record[0])
            i += 1
        more = i < len(order) and order[i].startswith(prefix)
        return {"kvs": kvs, "more": more, "revision": self.revision}

    def watch(self, prefix: str, from_revision: int | None, limit: int = rules.MAX_WATCH_EVENTS) -> dict[str, Any]:
        """Return the window's events under ``prefix`` from ``from_revision`` (None: after now).

        At most ``limit`` events, but never part of a revision. ``next_revision`` is where the
        next call starts: past every event returned, and past everything this replica has
        applied when the scan reached the end (nothing later can have a smaller revision).
        """
        if from_revision is None:
            from_revision = self.revision + 1
        if from_revision <= self.compact_revision:
            raise Compacted(f"revisions up to {self.compact_revision} left the watch window "
                            f"({self.settings['watch_window']} events)", oldest_revision=self.compact_revision + 1)
        events = self.events
        i = bisect.bisect_left(events, (from_revision,), lo=self.head)
        found: list[dict[str, Any]] = []
        while i < len(events):
            event = events[i]
            if len(found) >= limit and event[0] != found[-1]["revision"]:
                return {"events": found, "next_revision": found[-1]["revision"] + 1}
            if event[2].startswith(prefix):
                found.append(event_json(event))
            i += 1
        return {"events": found, "next_revision": max(from_revision, self.revision + 1)}

    # -- snapshots -------------------------------------------------------------------------------

    def capture(self) -> Callable[[], bytes]:
        """Copy the state at memory speed now; return a function that encodes the copy (any thread)."""
        kvs = self.kvs.copy()
        order = self.order.copy()
        events = self.events[self.head:]
        header = {"v": 1, "revision": self.revision, "compact_revision": self.compact_revision,
                  "settings": dict(self.settings), "txns": self.txns.to_state()}

        def encode() -> bytes:
            state = dict(header, kvs=[[key, *kvs[key]] for key in order], events=[list(e) for e in events])
            return msgpack.packb(state, use_bin_type=True)  # type: ignore[no-any-return]

        return encode

    def snapshot(self) -> bytes:
        return self.capture()()

    def restore(self, data: bytes) -> None:
        state = msgpack.unpackb(data, raw=False)
        self.__init__()  # type: ignore[misc]
        self.revision = state["revision"]
        self.compact_revision = state["compact_revision"]
        self.settings.update(state["settings"])
        for key, value, create, mod, version in state["kvs"]:
            self.kvs[key] = (value, create, mod, version)
            self.total_bytes += _size(key, value)
        self.order = list(self.kvs)  # written in sorted order
        self.events = [(e[0], e[1], e[2], e[3]) for e in state["events"]]
        self.txns = TxnTables.from_state(state.get("txns"))
