"""Pre-vote, and votes that cannot disrupt a healthy leader (Raft thesis sections 9.6 and 4.2.3).

pysyncobj campaigns as soon as a follower's election timer runs out: it raises its term and asks
for votes. A node that was cut off and comes back does exactly that, and its higher term forces
the healthy leader to step down (an election nobody needed). A follower whose log is behind
campaigns too, fails (nobody votes for it), and has raised every term on the way.

``ElectionRules`` runs before each engine tick and on the election messages:

- pre-vote: when the timer runs out, instead of letting pysyncobj campaign, the node asks the
  others ``rw_prevote`` ("would you vote for me at term T+1?") without changing any state. A
  voter says yes only if T+1 is above its term, the candidate's log is at least as up to date as
  its own, and it has not heard from a leader within the minimum election timeout. With a
  majority of yeses the timer is set to fire now and pysyncobj campaigns for real. A refusal
  carries the voter's term; a candidate behind on terms adopts it (as etcd does), so a candidate
  with the best log cannot be stuck behind a term it never saw;
- a leadership transfer (pysyncobj's ``timeout_now``) skips pre-vote, and its vote requests are
  tagged ``rw_transfer`` so voters honour them even while they hear from the current leader;
- any other ``request_vote`` is dropped by a node that heard from a leader within the minimum
  election timeout, or that is the leader: a disruptive server cannot depose a working leader;
- a node that cannot persist its vote (journal unavailable) neither campaigns nor votes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from consensus.engine.internals import FOLLOWER, LEADER, Raft

Send = Callable[[Any, dict[str, Any]], Any]


@dataclass
class _Round:
    term: int
    votes: set[str] = field(default_factory=set)


class ElectionRules:
    def __init__(
        self,
        raft: Raft,
        send: Send,
        clock: Callable[[], float],
        min_timeout: float,
        blocked: Callable[[], str | None],
    ) -> None:
        self.raft = raft
        self.send = send
        self.clock = clock
        self.min_timeout = min_timeout
        self.blocked = blocked  # a reason not to campaign or vote, or None
        self.last_leader_contact = float("-inf")
        self._round: _Round | None = None
        self._won_term: int | None = None
        self.transfer_tick = False  # this tick's campaign is a leadership transfer
        self.prevote_rounds = 0

    def leader_contact(self) -> None:
        """Called on every AppendEntries from a current leader."""
        self.last_leader_contact = self.clock()
        self._round = None

    def _leader_is_fresh(self) -> bool:
        return self.raft.state == LEADER or self.clock() - self.last_leader_contact < self.min_timeout

    def before_tick(self) -> None:
        """Turn a campaign pysyncobj is about to start into a pre-vote round, unless it was won."""
        raft = self.raft
        self.transfer_tick = False
        if raft.state == LEADER:
            self._round = None
            return
        now = self.clock()
        if raft.election_deadline > now or not raft.connected_to_anyone():
            return
        if raft.transfer_in_progress:
            self.transfer_tick = True
            return
        if self.blocked() is not None:
            raft.election_deadline = now + raft.generate_timeout()
            return
        if self._won_term is not None and self._won_term == raft.current_term + 1:
            self._won_term = None
            return  # pre-vote won: let pysyncobj campaign in this tick
        self._won_term = None
        raft.election_deadline = now + raft.generate_timeout()
        self.prevote_rounds += 1
        self._round = _Round(raft.current_term + 1, {raft.node_id()})
        if len(self._round.votes) >= raft.majority():
            self._won(self._round.term)
            return
        request = {"type": "rw_prevote", "term": self._round.term, "last_log_index": raft.last_index(),
                   "last_log_term": raft.last_term()}
        for node in list(raft.other_nodes):
            self.send(node, dict(request))

    def _won(self, term: int) -> None:
        self._round = None
        self._won_term = term
        self.raft.election_deadline = 0.0

    def on_prevote(self, node: Any, message: dict[str, Any]) -> None:
        raft = self.raft
        up_to_date = (message["last_log_term"], message["last_log_index"]) >= (raft.last_term(), raft.last_index())
        leaderless = not self._leader_is_fresh() and self.blocked() is None
        granted = message["term"] > raft.current_term and up_to_date and leaderless
        if leaderless and not up_to_date and raft.state != LEADER:
            # Someone looks for a leader and our log is better than theirs: we are the one who can
            # win, so ask now instead of waiting for our own timer (one election round, not two).
            raft.election_deadline = min(raft.election_deadline, self.clock())
        self.send(node, {"type": "rw_prevote_resp", "term": message["term"], "granted": granted,
                         "voter_term": raft.current_term})

    def on_prevote_reply(self, node: Any, message: dict[str, Any]) -> None:
        raft = self.raft
        if not message["granted"]:
            if message["voter_term"] > raft.current_term and raft.state != LEADER and self.blocked() is None:
                raft.set_current_term(message["voter_term"], None)
                if raft.state != FOLLOWER:
                    raft.set_state(FOLLOWER)
            return
        round_ = self._round
        if round_ is None or message["term"] != round_.term or round_.term != raft.current_term + 1:
            return
        round_.votes.add(node.id)
        if len(round_.votes) >= raft.majority():
            self._won(round_.term)

    def accept_vote_request(self, message: dict[str, Any]) -> bool:
        """Whether pysyncobj may see this ``request_vote`` (see the module docstring)."""
        if self.blocked() is not None:
            return False
        if message.get("rw_transfer"):
            return True
        return not self._leader_is_fresh()

    def on_send(self, message: dict[str, Any]) -> None:
        if self.transfer_tick and message.get("type") == "request_vote":
            message["rw_transfer"] = True
