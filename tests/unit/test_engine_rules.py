"""Pure pieces of the engine adapter: peer message shapes and leader-stamped time."""

from __future__ import annotations

import pytest

from consensus.engine import payload, wire
from consensus.engine.stamping import LeaderClock


@pytest.mark.parametrize(
    "message",
    [
        {"type": "append_entries", "term": 3, "commit_index": 2, "entries": [(b"x", 3, 3)], "prevLogIdx": 2, "prevLogTerm": 1},
        {"type": "append_entries", "term": 3, "commit_index": 2, "serialized": (b"chunk", True, False)},
        {"type": "next_node_idx", "next_node_idx": 5, "reset": False, "success": True, "term": 3},
        {"type": "request_vote", "term": 4, "last_log_index": 9, "last_log_term": 3},
        {"type": "rw_prevote_resp", "term": 4, "granted": False, "voter_term": 5},
        {"type": "apply_command_response", "request_id": 1, "log_idx": 4, "log_term": 2},
    ],
)
def test_well_formed_messages_pass(message):
    assert wire.check(message) is None


@pytest.mark.parametrize(
    "message, reason",
    [
        ([1, 2], "not a dict"),
        ({"type": "bogus"}, "unknown message type"),
        ({"type": "append_entries", "commit_index": 1}, "without term"),
        ({"type": "append_entries", "term": True, "commit_index": 1}, "malformed term"),
        ({"type": "append_entries", "term": 1, "commit_index": 1, "entries": [(b"x", "2", 1)]}, "malformed entries"),
        ({"type": "append_entries", "term": 1, "commit_index": 1, "prevLogIdx": 3}, "without prevLogTerm"),
        ({"type": "append_entries", "term": 1, "commit_index": 1, "serialized": False}, "malformed serialized"),
        ({"type": "apply_command_response", "request_id": 1}, "without an error"),
    ],
)
def test_malformed_messages_are_named(message, reason):
    assert reason in wire.check(message)


class _Raft:
    def __init__(self):
        self.state = 2
        self.current_term = 1
        self.log = [(b"\x01", 1, 0)]


def _clock(wall_offset_s=0.0):
    now = {"mono": 100.0}
    raft = _Raft()
    clock = LeaderClock(raft, wall_ns=lambda: int((1_000 + now["mono"] + wall_offset_s) * 1e9),
                        mono=lambda: now["mono"], first_step_ns=3 * 10**9)
    return clock, raft, now


def test_time_follows_a_correct_wall_clock():
    clock, raft, now = _clock()
    first = clock.next_time()
    now["mono"] += 2.0
    assert clock.next_time() - first == pytest.approx(2e9, rel=1e-3)


def test_a_fast_leader_moves_time_at_most_the_first_step_then_at_most_ten_percent_fast():
    clock, raft, now = _clock(wall_offset_s=3600.0)
    raft.log.append((b"\x00" + b"p", 2, 1))
    base = clock._prev = 1_100 * 10**9  # the previous leader's last stamp
    t1 = clock.next_time()
    assert t1 - base == 3 * 10**9
    now["mono"] += 10.0
    assert clock.next_time() - t1 <= 11 * 10**9 + 10**6


def test_a_slow_leader_still_moves_time_and_never_backwards():
    clock, raft, now = _clock(wall_offset_s=-3600.0)
    clock._prev = 1_100 * 10**9
    t1 = clock.next_time()
    assert t1 >= 1_100 * 10**9
    now["mono"] += 10.0
    t2 = clock.next_time()
    assert 9 * 10**9 - 10**6 <= t2 - t1  # at least 0.9x real time, whatever the wall clock says


def test_payload_time_slot_round_trips():
    data = payload.with_time(0, b"body")
    assert payload.is_stamped_payload(data) and payload.time_of(data) == 0
    stamped = payload.restamp(data, 12345)
    assert payload.time_of(stamped) == 12345 and payload.body_of(stamped) == b"body"
    assert not payload.is_stamped_payload(b"") and not payload.is_stamped_payload(b"RW")
