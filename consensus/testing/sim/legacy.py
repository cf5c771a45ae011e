"""The engine as it was before the Raft fixes, to show what the simulation finds in it.

``LegacyCore`` runs the same pysyncobj, journal, transport and clock as ``RaftCore`` but answers
Raft messages the way raftwork 0.1.0 did (commit a756cd8): pysyncobj's own AppendEntries
handling behind that release's ``trim_append`` filter (kept below, verbatim, as evidence), its own
reply handling on the leader, no pre-vote, no vote filtering. ``python -m consensus.testing.sim
--legacy`` sweeps seeds against it; the note on the engine-safety issue says what it found.
"""

from __future__ import annotations

from typing import Any, Callable

from consensus.engine import wire
from consensus.engine.core import RaftCore


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


class LegacyCore(RaftCore):
    def _handle(self, node: Any, message: Any) -> None:
        if wire.check(message) is not None:
            return
        kind = message["type"]
        if kind in ("rw_prevote", "rw_prevote_resp", "rw_ping"):
            return
        if kind == "next_node_idx" and message["reset"] and self.raft.state == 2:
            self.leader.rejections += 1  # counted for the repair measurement only
        if kind == "append_entries" and len(self.raft.log):
            message = trim_append(message, self.raft.term_at, self.raft.last_index())
        self._pysyncobj_on_message(node, message)

    def _before_tick(self) -> None:
        pass  # pysyncobj campaigns on its own: no pre-vote

    def _keepalive(self) -> None:
        pass  # idle links between followers die on first use
