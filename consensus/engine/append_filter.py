"""Never truncate a follower's log for entries it already holds (Raft section 5.3).

pysyncobj's follower deletes every entry after ``prevLogIdx`` whenever an AppendEntries message
arrives with a ``prevLogIdx`` below its last entry, then appends what the message carries. The
leader's send position rewinds each time an older acknowledgement arrives, so with entries sent
as soon as they are queued, followers routinely receive entries they already hold, delete them
(and anything after them), and re-append. Deleting entries a follower has acknowledged is unsafe:
the leader may already count them towards a commit.

Raft says: delete only from the first entry that *conflicts* (same index, different term).
``trim_append`` rewrites such a message before pysyncobj sees it so that it starts where the
follower's log stops matching:

- entries the follower already holds with the same term are dropped from the message, and
  ``prevLogIdx``/``prevLogTerm`` move forward to the last of them;
- if the follower holds entries *beyond* the message that carry the message's own term, they were
  sent by this same leader (one leader per term), so they are in the leader's log: the message
  moves ``prevLogIdx`` to the follower's last entry and acknowledges them instead of deleting them;
- anything else (a real conflict, entries of older terms) is left for pysyncobj to handle.
"""

from __future__ import annotations

from typing import Any, Callable


def trim_append(message: dict[str, Any], term_at: Callable[[int], int | None], last_index: int) -> dict[str, Any]:
    """Return ``message`` with redundant entries removed (or the message itself if nothing to do)."""
    if message.get("type") != "append_entries" or "prevLogIdx" not in message or "transmission" in message:
        return message
    prev = message["prevLogIdx"]
    if prev is None or term_at(prev) != message.get("prevLogTerm"):
        return message  # a mismatch at prev: pysyncobj answers with a reset, as Raft says
    entries = message.get("entries") or []
    matched = 0
    for entry in entries:
        idx, term = entry[1], entry[2]
        if term_at(idx) != term:
            break
        matched += 1
    new_prev = entries[matched - 1][1] if matched else prev
    rest = entries[matched:]
    if not rest and last_index > new_prev:
        # Everything sent is already here and the follower has more: keep the tail if it is this
        # leader's own (same term), otherwise let pysyncobj truncate it as before.
        leader_term = message.get("term")
        if all(term_at(i) == leader_term for i in range(new_prev + 1, last_index + 1)):
            new_prev = last_index
    if new_prev == prev:
        return message
    trimmed = dict(message)
    trimmed["prevLogIdx"] = new_prev
    trimmed["prevLogTerm"] = term_at(new_prev)
    trimmed["entries"] = rest
    return trimmed
