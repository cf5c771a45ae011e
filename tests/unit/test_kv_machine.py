"""The config store machine against a plain Python model (Hypothesis stateful), plus edge cases.

The model keeps keys as dicts and the watch window as a list it trims the simple way; every
step compares answers, and the invariants compare every key, every page and every watch
(or its 410) with the model. A rule restores a fresh machine from a snapshot mid-sequence.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from apps.kv import rules
from apps.kv.machine import KVMachine, check_command
from consensus.errors import Compacted, InvalidRequest, QuotaExceeded, RevisionMismatch
from consensus.machine import ApplyContext

KEYS = st.sampled_from(["a", "a/b", "a/c", "ab", "b", "é/x", ".."])
PREFIXES = st.sampled_from(["", "a", "a/", "b", "é", "zz"])
VALUES = st.sampled_from(["", "1", "two", "ünï", "x" * 20])
TARGETS = st.sampled_from(rules.TARGETS)
OPS = st.sampled_from(rules.COMPARE_OPS)


def ctx(seq: int) -> ApplyContext:
    return ApplyContext(index=seq, term=1, time_ns=seq, seq=seq)


def size(key: str, value: str) -> int:
    return len(key.encode()) + len(value.encode())


@st.composite
def txn_ops(draw):
    ops, written = [], set()
    for _ in range(draw(st.integers(0, 4))):
        kind, key = draw(st.sampled_from(["put", "delete", "get"])), draw(KEYS)
        if kind != "get" and key in written:
            continue  # a branch writes a key at most once
        if kind != "get":
            written.add(key)
        ops.append({kind: {"key": key, "value": draw(VALUES)} if kind == "put" else {"key": key}})
    return ops


@st.composite
def compares(draw):
    out = []
    for _ in range(draw(st.integers(0, 3))):
        target = draw(TARGETS)
        value = draw(VALUES) if target == "value" else draw(st.integers(0, 12))
        out.append({"key": draw(KEYS), "target": target, "op": draw(OPS), "value": value})
    return out


class KVModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = KVMachine()
        self.kvs: dict[str, dict] = {}
        self.revision = 0
        self.window: list[tuple[int, str, str, str | None]] = []  # retained events, oldest first
        self.compacted = 0
        self.max_keys, self.max_bytes, self.window_size = 1_000_000, 1 << 30, 10_000
        self.seq = 0

    # -- the model -------------------------------------------------------------------------------

    def kv(self, key):
        entry = self.kvs.get(key)
        return None if entry is None else {"key": key, **entry}

    def run(self, command):
        return self.machine.apply(command, ctx(self.seq))  # every rule takes its sequence number first

    def commit(self, ops):
        """Model of a transaction branch: stage, check quotas, write; return (responses, changed)."""
        staged = {k: (dict(v) if v else None) for k, v in self.kvs.items()}
        responses, writes = [], []
        for op in ops:
            kind, args = next(iter(op.items()))
            key = args["key"]
            prev = None if staged.get(key) is None else {"key": key, **staged[key]}
            if kind == "get":
                responses.append(("get", prev))
            elif kind == "put":
                entry = staged.get(key)
                staged[key] = {"value": args["value"], "create_revision": entry["create_revision"] if entry else self.seq,
                               "mod_revision": self.seq, "version": entry["version"] + 1 if entry else 1}
                writes.append(("put", key, args["value"]))
                responses.append(("put", prev))
            else:
                if staged.get(key) is not None:
                    writes.append(("delete", key, None))
                staged[key] = None
                responses.append(("delete", 0 if prev is None else 1))
        new = {k: v for k, v in staged.items() if v is not None}
        grow_keys = len(new) - len(self.kvs)
        grow_bytes = sum(size(k, v["value"]) for k, v in new.items()) - sum(size(k, v["value"]) for k, v in self.kvs.items())
        if writes and ((grow_keys > 0 and len(new) > self.max_keys) or (grow_bytes > 0 and self.used_bytes() + grow_bytes > self.max_bytes)):
            raise QuotaExceeded("model")
        if writes:
            self.kvs = new
            self.revision = self.seq
            self.window += [(self.seq, kind, key, value) for kind, key, value in writes]
            self.trim()
        answer = []
        for kind, data in responses:
            if kind == "get":
                answer.append({"get": data})
            elif kind == "put":
                answer.append({"put": {"revision": self.revision, "prev": data}})
            else:
                answer.append({"delete": {"deleted": data, "revision": self.revision}})
        return answer

    def used_bytes(self):
        return sum(size(k, v["value"]) for k, v in self.kvs.items())

    def trim(self):
        while len(self.window) > self.window_size:
            oldest = self.window[0][0]
            self.window = [e for e in self.window if e[0] != oldest]
            self.compacted = oldest

    def expect_refused(self, command, error):
        with pytest.raises(error) as info:
            self.run(command)
        return info.value

    # -- rules -----------------------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, prev=st.none() | st.integers(0, 12) | st.just("current"))
    def put(self, key, value, prev):
        self.seq += 1
        command = {"op": "put", "key": key, "value": value}
        current = self.kvs.get(key, {}).get("mod_revision", 0)
        if prev is not None:
            command["prev_revision"] = current if prev == "current" else prev
        if prev is not None and command["prev_revision"] != current:
            error = self.expect_refused(command, RevisionMismatch)
            assert error.detail == self.kv(key) and error.definite
            return
        try:
            expected = self.commit([{"put": {"key": key, "value": value}}])[0]["put"]
        except QuotaExceeded:
            self.expect_refused(command, QuotaExceeded)
            return
        assert self.run(command) == expected

    @rule(key=KEYS, prev=st.none() | st.integers(0, 12) | st.just("current"))
    def delete(self, key, prev):
        self.seq += 1
        command = {"op": "delete", "key": key}
        current = self.kvs.get(key, {}).get("mod_revision", 0)
        if prev is not None:
            command["prev_revision"] = current if prev == "current" else prev
            if command["prev_revision"] != current:
                assert self.expect_refused(command, RevisionMismatch).detail == self.kv(key)
                return
        assert self.run(command) == self.commit([{"delete": {"key": key}}])[0]["delete"]

    @rule(compare=compares(), success=txn_ops(), failure=txn_ops())
    def txn(self, compare, success, failure):
        self.seq += 1
        command = {"op": "txn", "compare": compare, "success": success, "failure": failure}
        succeeded = all(self.holds(c) for c in compare)
        try:
            responses = self.commit(success if succeeded else failure)
        except QuotaExceeded:
            self.expect_refused(command, QuotaExceeded)
            return
        assert self.run(command) == {"succeeded": succeeded, "responses": responses, "revision": self.revision}

    def holds(self, c):
        entry = self.kvs.get(c["key"])
        if c["target"] == "value" and entry is None:
            return False
        actual = entry[c["target"]] if entry else 0
        return {"==": actual == c["value"], "!=": actual != c["value"], "<": actual < c["value"], ">": actual > c["value"]}[c["op"]]

    @rule(window=st.integers(1, 8) | st.just(10_000), max_keys=st.integers(0, 6) | st.just(1_000_000),
          max_bytes=st.integers(0, 40) | st.just(1 << 30))
    def configure(self, window, max_keys, max_bytes):
        self.seq += 1
        settings_ = {"watch_window": window, "max_keys": max_keys, "max_bytes": max_bytes}
        assert self.run({"op": "configure", "settings": settings_}) == dict(settings_, txn_retention_s=600)
        self.window_size, self.max_keys, self.max_bytes = window, max_keys, max_bytes
        self.trim()

    @rule()
    def snapshot_and_restore(self):
        blob = self.machine.snapshot()
        restored = KVMachine()
        restored.restore(blob)
        assert restored.snapshot() == blob  # identical state (what state_digest hashes)
        self.machine = restored

    @rule(command=st.sampled_from([
        {"op": "put", "key": "", "value": "x"}, {"op": "put", "key": "a\n", "value": "x"},
        {"op": "put", "key": "k" * 513, "value": "x"}, {"op": "put", "key": "é" * 257, "value": "x"},
        {"op": "put", "key": "a", "value": "x" * (rules.MAX_VALUE_BYTES + 1)}, {"op": "put", "key": "a", "value": 5},
        {"op": "put", "key": "a", "value": "x", "prev_revision": -1}, {"op": "delete", "key": "\x7f"},
        {"op": "txn", "success": [{"put": {"key": "a", "value": "1"}}, {"delete": {"key": "a"}}]},
        {"op": "txn", "compare": [{"key": "a", "target": "version", "op": "==", "value": "1"}]},
        {"op": "txn", "compare": [{"key": "a", "target": "value", "op": "<=", "value": "1"}]},
        {"op": "txn", "success": [{"put": {"key": "a"}}]}, {"op": "txn", "success": [{}]},
        {"op": "configure", "settings": {"watch_window": 0}}, {"op": "configure", "settings": {"nope": 1}},
        {"op": "bogus"},
    ]))
    def bad_input_changes_nothing(self, command):
        self.seq += 1
        before = self.machine.snapshot()
        self.expect_refused(command, InvalidRequest)
        assert self.machine.snapshot() == before

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def every_key_matches(self):
        for key in ["a", "a/b", "a/c", "ab", "b", "é/x", ".."]:
            assert self.machine.query({"op": "get", "key": key}) == self.kv(key)

    @invariant()
    def pages_match(self):
        for prefix in ["", "a", "a/"]:
            expected = [self.kv(k) for k in sorted(self.kvs) if k.startswith(prefix)]
            got, after = [], None
            while True:
                query = {"op": "list", "prefix": prefix, "limit": 2, **({"after": after} if after is not None else {})}
                page = self.machine.query(query)
                assert page["revision"] == self.revision
                got += page["kvs"]
                if not page["more"]:
                    break
                after = page["kvs"][-1]["key"]
            assert got == expected

    @invariant()
    def watches_match(self):
        for prefix in ["", "a/"]:
            for start in range(1, self.seq + 3):
                if start <= self.compacted:
                    with pytest.raises(Compacted) as info:
                        self.machine.query({"op": "watch", "prefix": prefix, "from_revision": start})
                    assert info.value.oldest_revision == self.compacted + 1
                    continue
                expected = [{"type": t, "key": k, "value": v, "revision": r}
                            for r, t, k, v in self.window if r >= start and k.startswith(prefix)]
                answer = self.machine.query({"op": "watch", "prefix": prefix, "from_revision": start})
                assert answer == {"events": expected, "next_revision": max(start, self.revision + 1)}

    @invariant()
    def usage_matches(self):
        status = self.machine.query({"op": "status"})
        assert (status["keys"], status["bytes"], status["revision"], status["compact_revision"], status["events"]) == \
            (len(self.kvs), self.used_bytes(), self.revision, self.compacted, len(self.window))


TestKVModel = KVModel.TestCase
TestKVModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_a_watch_page_never_splits_a_revision():
    machine = KVMachine()
    ops = [{"put": {"key": f"k{i}", "value": "v"}} for i in range(3)]
    machine.apply({"op": "txn", "success": ops}, ctx(1))  # three events at revision 1
    machine.apply({"op": "put", "key": "z", "value": "v"}, ctx(2))
    first = machine.watch("", 1, limit=1)
    assert [e["revision"] for e in first["events"]] == [1, 1, 1] and first["next_revision"] == 2
    second = machine.watch("", first["next_revision"], limit=1)
    assert [e["key"] for e in second["events"]] == ["z"] and second["next_revision"] == 3


def test_a_watch_from_now_starts_after_the_current_revision():
    machine = KVMachine()
    machine.apply({"op": "put", "key": "a", "value": "1"}, ctx(5))
    assert machine.watch("", None) == {"events": [], "next_revision": 6}


def test_quota_refuses_a_whole_transaction():
    machine = KVMachine()
    machine.apply({"op": "configure", "settings": {"max_keys": 1}}, ctx(1))
    with pytest.raises(QuotaExceeded) as info:
        machine.apply({"op": "txn", "success": [{"put": {"key": "a", "value": "1"}}, {"put": {"key": "b", "value": "2"}}]}, ctx(2))
    assert info.value.detail["quota"] == "max_keys" and machine.kvs == {} and machine.revision == 0
    machine.apply({"op": "put", "key": "a", "value": "1"}, ctx(3))
    machine.apply({"op": "put", "key": "a", "value": "2"}, ctx(4))  # overwriting adds no key


def test_validation_names_what_is_wrong():
    with pytest.raises(InvalidRequest, match="1 to 512 bytes"):
        check_command({"op": "put", "key": "é" * 257, "value": ""})
    with pytest.raises(InvalidRequest, match="control character"):
        check_command({"op": "put", "key": "a\tb", "value": ""})
    with pytest.raises(InvalidRequest, match="lone surrogate"):
        check_command({"op": "put", "key": "a", "value": "\ud800"})
    with pytest.raises(InvalidRequest, match="more than once"):
        check_command({"op": "txn", "success": [{"put": {"key": "a", "value": ""}}, {"put": {"key": "a", "value": ""}}]})
    check_command({"op": "put", "key": "é" * 256, "value": "x" * rules.MAX_VALUE_BYTES})  # exactly at the limits
