"""The replicated half of two-phase commit (apps.kv.twophase inside KVMachine) against a model.

Two KVMachines play two groups (g1 holds the records). Hypothesis interleaves the steps of many
transactions, duplicated and late steps, resolvers aborting pending records, plain writes and
snapshot/restore. The model is serializable transactions: a transaction's writes appear
all at once when its record commits (the order of the commit points), never when it aborts.
Checked after every step: every group's committed values equal the model's wherever no
committed transaction is still unfinished there; a key is write-locked by at most one
transaction; a plain write to a locked key is refused; two transactions whose locks overlap
never both reach committed.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from apps.kv.machine import KVMachine
from consensus.errors import IntentHeld
from consensus.machine import ApplyContext

KEYS = ["a", "b", "c", "d"]
GROUP_OF = {"a": "g1", "b": "g1", "c": "g2", "d": "g2"}
TXNS = [f"t{i}" for i in range(6)]


class TwoPhase(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.groups = {"g1": KVMachine(), "g2": KVMachine()}
        self.seq = 0
        self.model: dict[str, str] = {}
        self.plans: dict[str, dict[str, list]] = {}  # txn -> group -> writes
        self.decided: dict[str, str] = {}
        self.finished: dict[str, set[str]] = {}

    def _apply(self, group: str, command: dict) -> object:
        self.seq += 1
        return self.groups[group].apply(command, ApplyContext(index=self.seq, term=1, time_ns=self.seq * 10**6, seq=self.seq))

    @rule(txn=st.sampled_from(TXNS), keys=st.sets(st.sampled_from(KEYS), min_size=1, max_size=3), value=st.text("xyz", max_size=2))
    def begin_and_prepare(self, txn, keys, value):
        if txn in self.plans:
            return
        plan: dict[str, list] = {}
        for key in sorted(keys):
            plan.setdefault(GROUP_OF[key], []).append({"put": {"key": key, "value": f"{txn}{value}"}})
        self.plans[txn] = plan
        self._apply("g1", {"op": "txn_begin", "id": txn, "participants": sorted(plan)})
        for group, writes in plan.items():
            self._apply(group, {"op": "txn_prepare", "id": txn, "coordinator": "g1", "reads": [], "writes": writes})

    @rule(txn=st.sampled_from(TXNS))
    def decide(self, txn):
        """The coordinator commits iff every participant voted yes (asked again: votes are idempotent)."""
        if txn not in self.plans:
            return
        votes = [self._apply(g, {"op": "txn_prepare", "id": txn, "coordinator": "g1", "reads": [], "writes": w})
                 for g, w in self.plans[txn].items()]
        decision = "committed" if all(v["vote"] == "yes" for v in votes) else "aborted"
        self._record(txn, self._apply("g1", {"op": "txn_decide", "id": txn, "decision": decision})["state"])

    @rule(txn=st.sampled_from(TXNS))
    def resolver_aborts(self, txn):
        self._record(txn, self._apply("g1", {"op": "txn_decide", "id": txn, "decision": "aborted"})["state"])

    def _record(self, txn: str, state: str) -> None:
        if state == "committed" and txn not in self.decided:
            for writes in self.plans[txn].values():  # the commit point: all of it, at once
                for op in writes:
                    self.model[op["put"]["key"]] = op["put"]["value"]
        self.decided.setdefault(txn, state)
        assert self.decided[txn] == state  # the first decision wins for good

    @rule(txn=st.sampled_from(TXNS), group=st.sampled_from(["g1", "g2"]))
    def finish(self, txn, group):
        if txn not in self.decided:
            return
        self._apply(group, {"op": "txn_finish", "id": txn, "decision": self.decided[txn]})
        self.finished.setdefault(txn, set()).add(group)

    @rule(key=st.sampled_from(KEYS), value=st.text("pq", max_size=2))
    def plain_put(self, key, value):
        group = GROUP_OF[key]
        locked = self.groups[group].txns.holder(key, writing=True) is not None
        try:
            self._apply(group, {"op": "put", "key": key, "value": value})
        except IntentHeld:
            assert locked
            return
        assert not locked
        self.model[key] = value

    @precondition(lambda self: self.seq > 0)
    @rule(group=st.sampled_from(["g1", "g2"]))
    def snapshot_and_restore(self, group):
        machine = self.groups[group]
        data = machine.snapshot()
        fresh = KVMachine()
        fresh.restore(data)
        assert fresh.snapshot() == data
        self.groups[group] = fresh

    @invariant()
    def values_match_the_model_where_nothing_committed_is_unfinished(self):
        pending = {op["put"]["key"] for txn, state in self.decided.items() if state == "committed"
                   for group, writes in self.plans[txn].items() if group not in self.finished.get(txn, set())
                   for op in writes}
        for key in KEYS:
            if key in pending:
                continue
            record = self.groups[GROUP_OF[key]].kvs.get(key)
            assert (record[0] if record else None) == self.model.get(key), key

    @invariant()
    def overlapping_locks_never_both_commit(self):
        committed = [t for t, s in self.decided.items() if s == "committed"]
        for i, t in enumerate(committed):
            for u in committed[i + 1:]:
                keys_t = {op["put"]["key"] for w in self.plans[t].values() for op in w}
                keys_u = {op["put"]["key"] for w in self.plans[u].values() for op in w}
                if keys_t & keys_u:
                    # Both may commit only one after the other: t finished on the shared keys' groups first, or u did.
                    shared = {GROUP_OF[k] for k in keys_t & keys_u}
                    assert shared <= self.finished.get(t, set()) or shared <= self.finished.get(u, set())


TestTwoPhase = TwoPhase.TestCase
TestTwoPhase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
