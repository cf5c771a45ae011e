"""The leader's handling of AppendEntries replies (``next_node_idx``), per Raft Figure 2.

pysyncobj 0.3.17 sets ``nextIndex`` to the acknowledged index + 1 on every success that raises
``matchIndex``, so an older acknowledgement arriving after newer entries were sent moves
``nextIndex`` backwards and the leader re-sends entries the follower holds (the re-sends that,
with pysyncobj's follower, deleted acknowledged entries). Replies also carry no term, so a reply
meant for this node's leadership of an earlier term can raise ``matchIndex`` in a later one.

Here:

- every reply carries the follower's term (``FollowerRules`` and the send wrapper add it): a
  reply from a later term deposes this leader at once (Raft: "if an RPC response contains a term
  greater than currentTerm, set currentTerm and convert to follower"); a reply from an earlier
  term is ignored;
- a success raises ``matchIndex`` and ``nextIndex`` to what it proves and never lowers either;
- a refusal sets ``nextIndex`` to the follower's hint (the first index of its conflicting term,
  or its log end), never below 1; ``matchIndex`` never moves down (a follower never loses an
  entry it acknowledged: they are synced before the reply);
- a late refusal is ignored. Every AppendEntries carries the follower's probe number
  (``rw_probe``), raised each time a refusal moves ``nextIndex``; a refusal echoes the number of
  the message it refuses, so one of a message sent before the last move is old news (etcd-io/raft
  drops stale rejections for the same reason). Taking an old hint sent the leader back to
  entries, or a snapshot, the follower had long since acknowledged, and on a network that
  duplicates and delays messages it did so for every copy (scenario ``stale_refusal_snapshot``).
  Of a burst of messages refused for one gap, the first refusal moves ``nextIndex`` and the rest
  are dropped instead of each re-sending the whole gap.
"""

from __future__ import annotations

from typing import Any, Callable

from consensus.engine.internals import FOLLOWER, LEADER, Raft


class LeaderRules:
    def __init__(self, raft: Raft, clock: Callable[[], float]) -> None:
        self.raft = raft
        self.clock = clock
        self.rejections = 0  # refused AppendEntries seen as leader (log repair round trips)
        self.stale_refusals = 0  # refusals of messages sent before nextIndex last moved: ignored
        self.probe: dict[Any, int] = {}  # node -> number of refusals that moved its nextIndex

    def tag(self, node: Any, message: dict[str, Any]) -> None:
        """Stamp an outgoing AppendEntries with the follower's probe number."""
        message["rw_probe"] = self.probe.get(node, 0)

    def on_reply(self, node: Any, message: dict[str, Any]) -> None:
        raft = self.raft
        term = message.get("term", raft.current_term)
        if term > raft.current_term:
            raft.set_current_term(term, None)
            if raft.state != FOLLOWER:
                raft.set_state(FOLLOWER)
            raft.leader = None
            return
        if raft.state != LEADER or term < raft.current_term or node not in raft.match_index:
            return
        raft.last_response_time[node] = self.clock()
        next_index = message["next_node_idx"]
        if message["success"]:
            if next_index - 1 > raft.match_index[node]:
                raft.match_index[node] = next_index - 1
            if next_index > raft.next_index[node]:
                raft.next_index[node] = next_index
        elif message["reset"]:
            probe = message.get("rw_probe")
            if probe is not None and probe != self.probe.get(node, 0):
                self.stale_refusals += 1
                return
            self.probe[node] = self.probe.get(node, 0) + 1
            self.rejections += 1
            raft.next_index[node] = max(1, next_index)
            raft.next_heartbeat_time = 0  # repair now, not at the next heartbeat
