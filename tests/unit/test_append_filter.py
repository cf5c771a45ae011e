"""The AppendEntries filter keeps entries a follower already holds (Raft section 5.3)."""

from __future__ import annotations

from consensus.engine.append_filter import trim_append


def follower(terms):
    """A follower log: {index: term} for indexes 1..n."""
    log = {i + 1: t for i, t in enumerate(terms)}
    return (lambda idx: log.get(idx)), len(terms)


def ae(prev, prev_term, entries, term=2, commit=0):
    return {
        "type": "append_entries",
        "term": term,
        "commit_index": commit,
        "prevLogIdx": prev,
        "prevLogTerm": prev_term,
        "entries": [(b"x", idx, t) for idx, t in entries],
    }


def test_resent_entries_and_this_leaders_tail_are_acknowledged_not_deleted():
    term_at, last = follower([1, 1, 2, 2, 2, 2])
    msg = ae(prev=2, prev_term=1, entries=[(3, 2), (4, 2)])
    out = trim_append(msg, term_at, last)
    assert out["prevLogIdx"] == 6 and out["prevLogTerm"] == 2 and out["entries"] == []


def test_new_entries_after_held_ones_are_appended_from_the_right_place():
    term_at, last = follower([1, 1, 2])
    out = trim_append(ae(prev=1, prev_term=1, entries=[(2, 1), (3, 2), (4, 2), (5, 2)]), term_at, last)
    assert out["prevLogIdx"] == 3 and [e[1] for e in out["entries"]] == [4, 5]


def test_a_real_conflict_is_left_to_truncate():
    term_at, last = follower([1, 1, 1, 1])  # entries 3 and 4 came from an old leader
    msg = ae(prev=2, prev_term=1, entries=[(3, 2)])
    out = trim_append(msg, term_at, last)
    assert out["prevLogIdx"] == 2 and [e[1] for e in out["entries"]] == [3]  # pysyncobj deletes 3.. and appends


def test_a_tail_from_older_terms_is_not_vouched_for():
    term_at, last = follower([1, 1, 1, 1])
    msg = ae(prev=2, prev_term=2, entries=[])  # prev term mismatch: untouched
    assert trim_append(msg, term_at, last) is msg
    heartbeat = ae(prev=2, prev_term=1, entries=[], term=2)
    assert trim_append(heartbeat, term_at, last) is heartbeat  # entries 3-4 (term 1) may conflict


def test_other_messages_pass_untouched():
    term_at, last = follower([1, 2])
    for msg in ({"type": "request_vote", "term": 3}, {"type": "append_entries", "term": 2, "serialized": b"", "commit_index": 0},
                dict(ae(prev=1, prev_term=1, entries=[(2, 2)]), transmission="start")):
        assert trim_append(msg, term_at, last) is msg
    plain = ae(prev=2, prev_term=2, entries=[(3, 2)])
    assert trim_append(plain, term_at, last) is plain  # nothing held beyond prev: nothing to trim
