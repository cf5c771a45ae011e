"""The replicated half of two-phase commit, inside the config store machine of each group.

Two tables, both deterministic (time only from ``ctx.time_ns``) and in the snapshot:

- **records** (on the coordinator group, the group of the transaction's first key): ``id ->
  (state, participants, result)``; ``pending -> committed | aborted`` by ``txn_decide``, a
  compare-and-set: the first decision wins, a later one gets the winner back. That change is the
  commit point. ``txn_decide`` aborting a record that does not exist creates it aborted, so a
  resolver that gets there before the coordinator's ``txn_begin`` fences it out.
- **intents** (on every participant group): ``txn_prepare`` checks that each key read is still
  at the ``mod_revision`` the coordinator read and carries no other transaction's write intent,
  and that no key it writes is locked by another transaction; then it read-locks the keys read
  (shared) and write-locks the keys written (exclusive, with the writes to apply), and votes
  yes. ``txn_finish`` applies the writes (committed) or drops them (aborted) and releases the
  locks. Plain puts, deletes and single-group transactions refuse to write a locked key
  (``IntentHeld``, definite 409 naming the holder and its age). Reads ignore intents: they see
  the last committed value (a prepared transaction is not visible until it commits here).

Every step is idempotent under the transaction id: a prepare retried after the vote returns the
same vote; a prepare or finish for a transaction already finished here returns that outcome
(``finished``) and lays nothing, so a delayed retry cannot lock keys again.

**Garbage collection.** Finished entries and decided records are kept for ``retention`` (the
``txn_retention_s`` setting, default 600 s, the idempotency window) of leader-stamped time, then
dropped by the next command applied in the group:

- a participant's ``finished`` entry from its ``txn_finish``: it fences out a late prepare, which
  only a coordinator still running the request can send (its deadline is at most 60 s);
- a record only once it is *forgotten*: ``txn_forget`` (sent by whoever finished the transaction
  on every participant: the coordinator, a resolver, a client retry) says no participant holds
  its locks any more, so no resolver can ever need the decision again. A record that is never
  forgotten (its coordinator died between the finishes and the forget) is kept. The retention
  counts from the forget, so a client retry under the same idempotency key within the window
  still finds the committed record and its result (exactly-once), and a late resolver still
  gets the right answer.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from consensus.errors import InvalidRequest

PENDING, COMMITTED, ABORTED = "pending", "committed", "aborted"
DECISIONS = (COMMITTED, ABORTED)
MAX_TXN_ID = 128
MAX_PARTICIPANTS = 64


@dataclass
class Prepared:
    """One transaction's locks and pending writes in this group."""

    coordinator: str
    time_ns: int  # leader-stamped time of the prepare: how old the intent is
    reads: list[str]
    writes: list[dict[str, Any]]  # kv ops ({"put": {...}} / {"delete": {...}}) to apply at commit


MAX_LISTED = 100  # transactions named by one txn_active query


@dataclass
class TxnTables:
    # id -> [state, participants, result, forgotten_ns]: forgotten_ns is None until txn_forget
    records: dict[str, list[Any]] = field(default_factory=dict)
    prepared: dict[str, Prepared] = field(default_factory=dict)
    finished: dict[str, list[Any]] = field(default_factory=dict)  # id -> [decision, revision it left, finished_ns] here
    writers: dict[str, str] = field(default_factory=dict)  # key -> txn id holding its write intent
    readers: dict[str, set[str]] = field(default_factory=dict)  # key -> txn ids holding read locks
    now_ns: int = 0  # the latest leader-stamped time applied (ages in queries)
    # (since_ns, "record" | "finished", id) in the order their retention started: collect() pops
    # from the left. Derived from the tables (rebuilt on restore), so not in the snapshot itself.
    expiry: collections.deque[tuple[int, str, str]] = field(default_factory=collections.deque)

    # -- locks -------------------------------------------------------------------------------

    def holder(self, key: str, me: str | None = None, *, writing: bool) -> str | None:
        """Return another transaction that blocks ``me`` from reading (or writing) ``key``."""
        writer = self.writers.get(key)
        if writer is not None and writer != me:
            return writer
        if writing:
            for reader in sorted(self.readers.get(key, ())):
                if reader != me:
                    return reader
        return None

    def blocker(self, key: str, txn: str) -> dict[str, Any]:
        prepared = self.prepared[txn]
        return {"key": key, "txn": txn, "coordinator": prepared.coordinator,
                "age_ms": max(0, self.now_ns - prepared.time_ns) // 10**6}

    def lock(self, txn: str, prepared: Prepared) -> None:
        self.prepared[txn] = prepared
        for key in prepared.reads:
            self.readers.setdefault(key, set()).add(txn)
        for key in write_keys(prepared.writes):
            self.writers[key] = txn

    def unlock(self, txn: str) -> Prepared | None:
        prepared = self.prepared.pop(txn, None)
        if prepared is None:
            return None
        for key in prepared.reads:
            holders = self.readers.get(key)
            if holders is not None:
                holders.discard(txn)
                if not holders:
                    del self.readers[key]
        for key in write_keys(prepared.writes):
            if self.writers.get(key) == txn:
                del self.writers[key]
        return prepared

    # -- records -----------------------------------------------------------------------------

    def begin(self, txn: str, participants: list[str]) -> dict[str, Any]:
        if txn not in self.records:
            self.records[txn] = [PENDING, list(participants), None, None]
        return self.record_json(txn)

    def decide(self, txn: str, decision: str, result: Any) -> dict[str, Any]:
        record = self.records.get(txn)
        if record is None:
            if decision == COMMITTED:
                raise InvalidRequest(f"transaction {txn!r} has no record to commit")
            self.records[txn] = [ABORTED, [], None, None]  # fences out a coordinator that has not begun
        elif record[0] == PENDING:
            record[0] = decision
            record[2] = result if decision == COMMITTED else None
        return self.record_json(txn)

    def forget(self, txn: str) -> dict[str, Any] | None:
        """Note that every participant finished a decided transaction: its retention starts now."""
        record = self.records.get(txn)
        if record is not None and record[0] != PENDING and record[3] is None:
            record[3] = self.now_ns
            self.expiry.append((self.now_ns, "record", txn))
        return self.record_json(txn)

    def finish(self, txn: str, decision: str, revision: int) -> None:
        self.finished[txn] = [decision, revision, self.now_ns]
        self.expiry.append((self.now_ns, "finished", txn))

    def collect(self, retention_ns: int) -> int:
        """Drop the forgotten records and finished entries older than ``retention_ns``; return how many."""
        dropped = 0
        while self.expiry and self.expiry[0][0] + retention_ns <= self.now_ns:
            since, kind, txn = self.expiry.popleft()
            table = self.records if kind == "record" else self.finished
            entry = table.get(txn)
            if entry is not None and entry[-1] == since:
                del table[txn]
                dropped += 1
        return dropped

    def active(self) -> dict[str, Any]:
        """Return the pending records (with their participants) and the transactions prepared here."""
        pending = [{"id": t, "participants": list(r[1])} for t, r in sorted(self.records.items()) if r[0] == PENDING]
        return {"pending": pending[:MAX_LISTED], "prepared": sorted(self.prepared)[:MAX_LISTED],
                "records": len(self.records), "finished": len(self.finished)}

    def record_json(self, txn: str) -> dict[str, Any] | None:
        record = self.records.get(txn)
        if record is None:
            return None
        return {"id": txn, "state": record[0], "participants": list(record[1]), "result": record[2],
                "forgotten": record[3] is not None}

    # -- snapshots ---------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "records": [[t, *r] for t, r in sorted(self.records.items())],
            "prepared": [[t, p.coordinator, p.time_ns, p.reads, p.writes] for t, p in sorted(self.prepared.items())],
            "finished": sorted(self.finished.items()),
            "now_ns": self.now_ns,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "TxnTables":
        tables = cls()
        if not state:
            return tables
        # Snapshots written before garbage collection have no times: those entries are kept.
        tables.records = {t: [s, list(p), r, *(rest or [None])] for t, s, p, r, *rest in state["records"]}
        for t, coordinator, time_ns, reads, writes in state["prepared"]:
            tables.lock(t, Prepared(coordinator, time_ns, list(reads), list(writes)))
        tables.finished = {t: list(d) + [None] * (3 - len(d)) for t, d in state["finished"]}
        tables.now_ns = state["now_ns"]
        started = [(r[3], "record", t) for t, r in tables.records.items() if r[3] is not None]
        started += [(d[2], "finished", t) for t, d in tables.finished.items() if d[2] is not None]
        tables.expiry = collections.deque(sorted(started))
        return tables


def write_keys(ops: list[dict[str, Any]]) -> list[str]:
    """Return the keys that ``ops`` put or delete."""
    return [args["key"] for op in ops for kind, args in op.items() if kind in ("put", "delete")]


def check_txn_id(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TXN_ID or not value.isprintable():
        raise InvalidRequest(f"a transaction id is 1 to {MAX_TXN_ID} printable characters")
    return value


def check_groups(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_PARTICIPANTS or not all(isinstance(g, str) and g for g in value):
        raise InvalidRequest(f"{what} must be a list of at most {MAX_PARTICIPANTS} group names")
    return value
