"""Garbage collection of finished cross-group transactions in the kv machine (pure, leader time
passed in): what is dropped when, what is never dropped, and that snapshots keep the schedule."""

from __future__ import annotations

from apps.kv.machine import KVMachine
from consensus.machine import ApplyContext

SECOND = 10**9


class Group:
    """One kv machine fed commands at explicit leader times."""

    def __init__(self) -> None:
        self.machine = KVMachine()
        self.seq = 0

    def apply(self, command: dict, at_s: float) -> object:
        self.seq += 1
        return self.machine.apply(command, ApplyContext(index=self.seq, term=1, time_ns=int(at_s * SECOND), seq=self.seq))

    def record(self, txn: str) -> object:
        return self.machine.query({"op": "txn_record", "id": txn})


def committed(g: Group, txn: str, at_s: float) -> None:
    g.apply({"op": "txn_begin", "id": txn, "participants": ["g1"]}, at_s)
    g.apply({"op": "txn_prepare", "id": txn, "coordinator": "g1", "reads": [], "writes": [{"put": {"key": txn, "value": "v"}}]}, at_s)
    g.apply({"op": "txn_decide", "id": txn, "decision": "committed", "result": {"succeeded": True, "responses": []}}, at_s)


def test_a_forgotten_record_and_its_finish_go_after_the_retention_and_not_before():
    g = Group()
    g.apply({"op": "configure", "settings": {"txn_retention_s": 10}}, 0)
    committed(g, "t", 1)
    g.apply({"op": "txn_finish", "id": "t", "decision": "committed"}, 2)
    assert g.apply({"op": "txn_forget", "id": "t"}, 3)["forgotten"] is True
    g.apply({"op": "put", "key": "x", "value": "1"}, 11.9)  # finished at 2: kept until 12
    assert g.record("t")["state"] == "committed" and "t" in g.machine.txns.finished
    late = g.apply({"op": "txn_prepare", "id": "t", "coordinator": "g1", "reads": [], "writes": [{"put": {"key": "t", "value": "w"}}]}, 11.9)
    assert late["vote"] == "finished"  # within the retention a late prepare still lays nothing
    g.apply({"op": "put", "key": "x", "value": "2"}, 12)
    assert "t" not in g.machine.txns.finished and g.record("t") is not None  # forgotten at 3: kept until 13
    g.apply({"op": "put", "key": "x", "value": "3"}, 13)
    assert g.record("t") is None
    assert g.machine.query({"op": "get", "key": "t"})["value"] == "v"  # the values stay


def test_a_record_never_forgotten_is_kept_however_old_and_a_pending_one_cannot_be_forgotten():
    g = Group()
    g.apply({"op": "configure", "settings": {"txn_retention_s": 1}}, 0)
    committed(g, "held", 1)  # decided, locks still held (nobody finished it)
    g.apply({"op": "txn_begin", "id": "open", "participants": ["g1"]}, 1)
    assert g.apply({"op": "txn_forget", "id": "open"}, 2)["forgotten"] is False
    g.apply({"op": "put", "key": "x", "value": "1"}, 1000)
    assert g.record("held")["state"] == "committed" and g.record("open")["state"] == "pending"
    assert g.machine.query({"op": "txn_active"})["pending"] == [{"id": "open", "participants": ["g1"]}]
    assert g.machine.query({"op": "txn_active"})["prepared"] == ["held"]


def test_restore_keeps_the_collection_schedule():
    g = Group()
    g.apply({"op": "configure", "settings": {"txn_retention_s": 5}}, 0)
    for i, at in enumerate((1, 2, 3)):
        committed(g, f"t{i}", at)
        g.apply({"op": "txn_finish", "id": f"t{i}", "decision": "committed"}, at)
        g.apply({"op": "txn_forget", "id": f"t{i}"}, at)
    data = g.machine.snapshot()
    twin = Group()
    twin.machine.restore(data)
    twin.seq = g.seq
    assert twin.machine.snapshot() == data
    for group in (g, twin):
        group.apply({"op": "put", "key": "x", "value": "1"}, 7)  # t0 (at 1) and t1 (at 2) are due
    assert g.machine.snapshot() == twin.machine.snapshot()
    assert [g.record(f"t{i}") is None for i in range(3)] == [True, True, False]


def test_a_snapshot_from_before_collection_restores_with_everything_kept():
    g = Group()
    committed(g, "t", 1)
    g.apply({"op": "txn_finish", "id": "t", "decision": "committed"}, 1)
    import msgpack

    state = msgpack.unpackb(g.machine.snapshot(), raw=False)
    state["txns"]["records"] = [r[:4] for r in state["txns"]["records"]]  # the old shapes, without times
    state["txns"]["finished"] = [[t, d[:2]] for t, d in state["txns"]["finished"]]
    old = KVMachine()
    old.restore(msgpack.packb(state, use_bin_type=True))
    old.apply({"op": "put", "key": "x", "value": "1"}, ApplyContext(index=99, term=1, time_ns=10**6 * SECOND, seq=99))
    assert old.query({"op": "txn_record", "id": "t"})["state"] == "committed" and "t" in old.txns.finished
