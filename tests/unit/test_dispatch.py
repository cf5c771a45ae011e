"""The total dispatcher, driven directly: pure, deterministic, never raises."""

from __future__ import annotations

import pytest

from consensus import codec
from consensus.dispatch import SYSTEM, Dispatcher, encode_entry
from consensus.errors import Rejected
from consensus.machine import ReplicatedObject, command, query
from consensus.testing.machines import KV


def op(machine, cmd, key=None):
    return [machine, codec.pack(cmd), key]


def entry(*ops, time_ns=1_000):
    return encode_entry(time_ns, list(ops))


def put(k, v):
    return {"method": "put", "args": [k, v]}


def test_every_failure_is_a_value_and_later_commands_still_apply():
    d = Dispatcher({"kv": KV()})
    outcomes = d.apply(
        entry(
            op("kv", {"method": "boom", "args": ["bad"]}),
            op("nope", put("a", 1)),
            [1, 2],  # a malformed envelope
            op("kv", put("a", 1)),
        ),
        index=5,
    )
    assert [o.kind for o in outcomes] == ["rejected", "invalid", "invalid", "ok"]
    assert "bad" in outcomes[0].value
    assert d.machines["kv"].data == {"a": 1}


def test_unreadable_entry_is_skipped_not_raised():
    d = Dispatcher({"kv": KV()})
    assert d.apply(b"\xc1garbage", index=3) == []
    assert d.apply(entry(op("kv", put("a", 1))), index=4)[0].kind == "ok"


def test_rejected_carries_reason_and_detail():
    d = Dispatcher({"kv": KV()})
    [outcome] = d.apply(entry(op("kv", {"method": "cas", "args": ["a", 1, 2]})), index=2)
    assert outcome.kind == "rejected" and outcome.value == "value mismatch"
    assert outcome.detail == {"current": None}


def test_context_time_never_goes_backwards_and_seq_is_per_command():
    d = Dispatcher({"kv": KV()})
    stamp = {"method": "stamp"}
    first = d.apply(entry(op("kv", stamp), op("kv", stamp), time_ns=5_000), index=10, term=2)
    later = d.apply(entry(op("kv", stamp), time_ns=4_000), index=11, term=2)  # an older clock
    unstamped = d.apply(encode_entry(0, [op("kv", stamp)]), index=12, term=3)  # no time at all
    stamps = [o.value for o in first + later + unstamped]
    assert [s[0] for s in stamps] == [10, 10, 11, 12]
    assert [s[1] for s in stamps] == [2, 2, 2, 3]  # each entry's own term
    assert [s[2] for s in stamps] == [5_000, 5_000, 5_000, 5_000]
    assert [s[3] for s in stamps] == [1, 2, 3, 4]


def test_idempotency_key_replays_the_first_outcome():
    d = Dispatcher({"kv": KV()})
    inc = {"method": "incr", "args": ["n"]}
    a = d.apply(entry(op("kv", inc, "k1")), index=2)[0]
    b = d.apply(entry(op("kv", inc, "k1")), index=3)[0]
    assert (a.value, b.value) == (1, 1) and b.duplicate and not a.duplicate
    assert d.machines["kv"].data["n"] == 1
    # Rejections are replayed too: the retry gets the same answer.
    cas = {"method": "cas", "args": ["n", 99, 100]}
    r1 = d.apply(entry(op("kv", cas, "k2")), index=4)[0]
    r2 = d.apply(entry(op("kv", cas, "k2")), index=5)[0]
    assert r1.kind == r2.kind == "rejected"


def test_idempotency_table_is_bounded_and_expires_by_leader_time():
    d = Dispatcher({"kv": KV()})
    # Limits are replicated state: set by a log entry, never by a node's configuration.
    d.apply(entry(op(SYSTEM, {"op": "set_limits", "limits": {"idempotency_capacity": 3, "idempotency_ttl": 100}}),
                  time_ns=999), index=1)
    inc = {"method": "incr", "args": ["n"]}
    for i in range(5):
        d.apply(entry(op("kv", inc, f"k{i}"), time_ns=1_000 + i), index=2 + i)
    assert list(d.dedup) == ["k2", "k3", "k4"]
    d.apply(entry(time_ns=1_104), index=10)  # time passes: k2 (1002) and k3 (1003) are over 100 old
    assert list(d.dedup) == ["k4"]
    # An expired key applies again.
    assert d.apply(entry(op("kv", inc, "k2"), time_ns=1_105), index=11)[0].value == 6


def test_snapshot_restores_machines_time_sequence_and_idempotency():
    d = Dispatcher({"kv": KV()})
    inc = {"method": "incr", "args": ["n"]}
    d.apply(entry(op("kv", inc, "key"), time_ns=7_000), index=2)
    d.apply(entry(op("kv", put("s", [1, {"x": b"\x00"}])), time_ns=8_000), index=3)
    blob = d.snapshot()
    e = Dispatcher({"kv": KV()})
    e.restore(blob)
    assert e.machines["kv"].data == d.machines["kv"].data
    assert (e.time_ns, e.seq, e.last_index) == (8_000, 2, 3)
    assert e.apply(entry(op("kv", inc, "key"), time_ns=9_000), index=4)[0].duplicate


def test_replicas_fed_the_same_log_end_in_the_same_state():
    log = [
        entry(op("kv", {"method": "incr", "args": ["a"]}, f"k{i % 7}"), op("kv", put(f"p{i}", i)), time_ns=i * 10)
        for i in range(200)
    ]
    replicas = [Dispatcher({"kv": KV()}) for _ in range(3)]
    for r in replicas:
        for i, payload in enumerate(log, start=2):
            r.apply(payload, i)
    assert len({r.snapshot() for r in replicas}) == 1


class Inventory(ReplicatedObject):
    def __init__(self):
        self.items = {}

    @command
    def add(self, sku: str, n: int) -> int:
        if n <= 0:
            raise Rejected("n must be positive")
        self.items[sku] = self.items.get(sku, 0) + n
        return self.items[sku]

    @query
    def count(self, sku: str) -> int:
        return self.items.get(sku, 0)


def test_replicated_object_validates_calls_before_they_reach_the_log():
    inv = Inventory()
    inv.validate({"method": "add", "args": ["x", 1]})
    for bad in ({"method": "count", "args": ["x"]}, {"method": "add"}, {"method": "missing"}, {"method": "add", "args": "x"}):
        with pytest.raises(Exception) as info:
            inv.validate(bad)
        assert getattr(info.value, "code", None) == "invalid_request"


def test_replicated_object_snapshot_round_trips_public_state_only():
    inv = Inventory()
    inv._scratch = "not state"
    d = Dispatcher({"inv": inv})
    d.apply(entry(op("inv", {"method": "add", "args": ["x", 3]})), index=2)
    copy = Inventory()
    copy.restore(inv.snapshot())
    assert copy.items == {"x": 3} and not hasattr(copy, "_scratch")
    assert Inventory.method_kind("add") == "command" and Inventory.method_kind("count") == "query"


class Leases:
    """A toy time-dependent machine: names that expire ``ttl`` ns of leader time after they are put."""

    def __init__(self):
        self.deadlines = {}
        self.expired = []  # (name, seq of the advance that expired it)

    def apply(self, command, ctx):
        self.deadlines[command["name"]] = ctx.time_ns + command["ttl"]
        return ctx.seq

    def wants_time(self):
        return bool(self.deadlines)

    def advance_time(self, ctx):
        for name, deadline in sorted(self.deadlines.items()):
            if deadline <= ctx.time_ns:
                del self.deadlines[name]
                self.expired.append((name, ctx.seq))

    def query(self, query):
        return sorted(self.deadlines)

    def snapshot(self):
        return codec.pack(self.deadlines)

    def restore(self, data):
        self.deadlines = codec.unpack(data)


def test_time_entries_expire_leases_at_the_same_log_position_with_fresh_seqs():
    d = Dispatcher({"leases": Leases()})
    assert not d.wants_time
    seq_a = d.apply(entry(op("leases", {"name": "a", "ttl": 100}), time_ns=1_000), index=2)[0].value
    assert d.wants_time
    d.apply(encode_entry(1_050, []), index=3)  # a time entry before the deadline
    assert d.machines["leases"].expired == []
    d.apply(encode_entry(1_100, []), index=4)  # at the deadline
    [(name, seq)] = d.machines["leases"].expired
    assert name == "a" and seq > seq_a
    assert not d.wants_time
    # Once nothing wants time, later entries do not call the hook (nor spend sequence numbers).
    before = d.seq
    d.apply(encode_entry(2_000, []), index=5)
    assert d.seq == before


def test_a_new_term_advances_time_even_when_the_clock_did_not_move():
    d = Dispatcher({"leases": Leases()})
    d.apply(entry(op("leases", {"name": "a", "ttl": 10_000}), time_ns=1_000), index=2, term=1)
    seq = d.seq
    d.apply(encode_entry(1_000, []), index=3, term=2)
    assert d.seq == seq + 1 and d.term == 2


def test_specific_error_codes_travel_in_the_outcome():
    from consensus.errors import Compacted, LockHeld

    class Picky:
        def apply(self, command, ctx):
            if command["what"] == "held":
                raise LockHeld("held by s1", detail={"holders": ["s1"]})
            raise Compacted("too old", oldest_revision=7)

        def query(self, query):
            raise Compacted("too old", oldest_revision=9)

        def snapshot(self):
            return b""

        def restore(self, data):
            pass

    d = Dispatcher({"p": Picky()})
    held, compacted = d.apply(entry(op("p", {"what": "held"}), op("p", {"what": "old"})), index=2)
    assert (held.kind, held.code, held.detail) == ("rejected", "lock_held", {"holders": ["s1"]})
    assert (compacted.kind, compacted.code, compacted.detail) == ("invalid", "compacted", {"oldest_revision": 7})
    assert d.query("p", {}).detail == {"oldest_revision": 9}
