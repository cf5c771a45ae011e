"""The follower's AppendEntries, as Raft's Figure 2 says (taken over from pysyncobj).

pysyncobj 0.3.17 deletes every entry after ``prevLogIdx`` whenever a message starts below the
follower's last entry, even entries it already holds and acknowledged, and replies with its
whole log end as the match. With a leader that re-sends (it rewinds ``nextIndex`` on older
acknowledgements), a follower deletes entries the leader already counted towards a commit: an
acknowledged write can vanish (simulation scenario ``lost_ack_resend``). This module answers the
message instead of pysyncobj:

1. a message from an older term is refused, with our term, so a deposed leader learns it;
2. chunked messages (``transmission`` start/process/finish) are reassembled first; pysyncobj
   labels the chunks wrongly (``finish`` can come early), so a chunk labelled ``finish`` that
   does not yet unpickle waits for more;
3. if the log has no entry at ``prevLogIdx`` with ``prevLogTerm``, refuse; the refusal names the
   first index of the conflicting term (Raft section 5.3's optimisation), so the leader skips a
   whole term per round trip instead of one entry per heartbeat;
4. entries already held with the same term are skipped; at the first entry whose term differs,
   the log is truncated from there (and pysyncobj's membership changes in the deleted entries
   are rolled back, newest first), and the rest is appended;
5. the reply's match is ``prevLogIdx + len(entries)``, what this message proved, never the log's
   end; the commit index becomes ``min(leaderCommit, match)``;
6. appends are synced to disk before the reply is sent: the owner opens a round for each tick
   (``begin_round``), replies wait in it, and after the tick's one sync covering every message
   read in it they go out (``end_round``): group commit, as a leader batches entries;
7. a snapshot (InstallSnapshot, Figure 13) is received into its own file and installed only if
   it is news: when its last entry is committed here, or held here with the same term, the log
   already holds everything it holds and is kept (rule 6); only otherwise is the state replaced
   and the log reset to it (rule 7). pysyncobj installs whatever arrives and clears the journal,
   so a snapshot sent on an old refusal to a follower that had caught up since deleted entries
   it acknowledged (scenario ``stale_refusal_snapshot``);
8. a refusal echoes the message's probe number (``rw_probe``), so the leader can tell a late
   refusal from a current one (``LeaderRules``).

The term, leader and election-timer bookkeeping stay pysyncobj's: it is handed the message's
header (term, commit 0), which runs exactly that part of its handler.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any, Callable

import msgpack

from consensus.engine.internals import Raft

log = logging.getLogger("consensus.engine")

Send = Callable[[Any, dict[str, Any]], Any]


class FollowerRules:
    """Answer ``append_entries`` messages for one node."""

    def __init__(self, raft: Raft, send: Send, on_leader_contact: Callable[[], None], snapshots: Any) -> None:
        self.raft = raft
        self.send = send
        self.on_leader_contact = on_leader_contact
        self.snapshots = snapshots  # a SnapshotStore
        self.snapshots_kept = 0  # snapshots received and not installed: the log already held them
        self._pysyncobj_handler = raft.handle_message()
        self._chunks: dict[Any, bytes] = {}
        self._acknowledged: tuple[int, int] = (0, 0)  # (term, highest index acknowledged in it)
        self._echo: int | None = None
        self._probe: int | None = None
        self._round: list[tuple[Any, dict[str, Any]]] | None = None  # replies waiting for the tick's sync

    def on_append_entries(self, node: Any, message: dict[str, Any]) -> None:
        raft = self.raft
        self._echo = message.get("rw_seq")  # the leader's read round, echoed in the reply (read_index)
        self._probe = message.get("rw_probe")  # echoed in a refusal (LeaderRules)
        if message["term"] < raft.current_term:
            self._reply(node, raft.last_index() + 1, success=False, reset=False)
            return
        # Term, leader and election timer first: the reply must carry the term just adopted.
        self._pysyncobj_handler(node, {"type": "append_entries", "term": message["term"], "commit_index": 0})
        self.on_leader_contact()
        if "prevLogIdx" not in message:
            if message.get("serialized") is not None:
                self._on_snapshot_chunk(node, message["serialized"])
            return
        entries = message.get("entries") or []
        transmission = message.get("transmission")
        if transmission is not None:
            whole = self._reassemble(node, transmission, message.get("data") or b"")
            if whole is None:  # more chunks to come; keep the leader's liveness view fresh
                self._reply(node, raft.last_index() + 1, success=False, reset=False)
                return
            entries = [whole]
        match = self._append(node, message["prevLogIdx"], message["prevLogTerm"], entries)
        if match is None:
            return
        leader_commit = message["commit_index"]
        raft.leader_commit_index = leader_commit
        commit = min(leader_commit, match)
        if commit > raft.commit_index:
            raft.commit_index = commit
            raft.log.setRaftCommitIndex(commit)

    def _on_snapshot_chunk(self, node: Any, chunk: Any) -> None:
        raft = self.raft
        try:
            file_name = self.snapshots.receive(node, chunk)
            if file_name is None:
                return  # more chunks to come (pysyncobj's follower does not answer these either)
            index, term = self.snapshots.last_entry(file_name)
        except (OSError, ValueError, msgpack.UnpackException) as exc:
            self.snapshots.abandon()
            log.warning("%s could not receive a snapshot from %s: %s", raft.node_id(), node, exc)
            return
        held = index <= raft.commit_index or (raft.first_index() <= index <= raft.last_index()
                                              and raft.term_at(index) == term)
        if held:
            os.unlink(file_name)
            self.snapshots_kept += 1
            log.info("%s kept its log over a snapshot ending at %d: it already holds that entry",
                     raft.node_id(), index)
        else:
            self.snapshots.install(file_name)
            raft.load_snapshot()
            if raft.last_applied > raft.commit_index:  # a snapshot holds only committed entries
                raft.commit_index = raft.last_applied
                raft.log.setRaftCommitIndex(raft.commit_index)
        self._reply(node, index + 1, success=True, reset=False)

    def _reassemble(self, node: Any, transmission: str, data: bytes) -> Any:
        if transmission == "start":
            self._chunks[node] = bytes(data)
            return None
        if node not in self._chunks:
            return None  # a chunk of a transfer whose start we never saw: wait for a fresh start
        self._chunks[node] += bytes(data)
        if transmission != "finish":
            return None
        try:
            entry = pickle.loads(self._chunks[node])
        except Exception:  # pysyncobj may label a chunk "finish" before the last one
            return None
        del self._chunks[node]
        return tuple(entry)

    def _append(self, node: Any, prev: Any, prev_term: Any, entries: list[Any]) -> int | None:
        """Apply rules 3-6; return the index this message proved (None when refused)."""
        raft = self.raft
        first, last = raft.first_index(), raft.last_index()
        if prev is None or prev > last:
            self._reply(node, last + 1, success=False, reset=True)
            return None
        if prev < first:
            # Our snapshot covers prev: everything up to `first` is committed, hence the leader's.
            entries = [e for e in entries if e[1] > first]
            prev, prev_term = first, raft.term_at(first)
        if raft.term_at(prev) != prev_term:
            self._reply(node, self._first_index_of_term(prev), success=False, reset=True)
            return None
        match = entries[-1][1] if entries else prev
        with raft.log.batch():
            for entry in entries:
                command, index, term = entry[0], entry[1], entry[2]
                if index <= raft.last_index():
                    if raft.term_at(index) == term:
                        continue  # already held: never delete what we may have acknowledged
                    self._truncate_from(index)
                raft.log.add(command, index, term)
                change = raft.parse_change_cluster(command)
                if change is not None:
                    raft.change_cluster(change)
        # Synced by the batch, or (in a round) by the sync before the round's replies go out.
        self._reply(node, match + 1, success=True, reset=False)
        term = raft.current_term
        if self._acknowledged[0] != term or match > self._acknowledged[1]:
            self._acknowledged = (term, match)
        return match

    def _first_index_of_term(self, index: int) -> int:
        """The first index of the term our log holds at ``index`` (where the leader should resume)."""
        raft = self.raft
        term = raft.term_at(index)
        first = max(raft.first_index() + 1, raft.commit_index + 1)
        while index > first and raft.term_at(index - 1) == term:
            index -= 1
        return max(index, first)

    def _truncate_from(self, index: int) -> None:
        raft = self.raft
        term, acknowledged = self._acknowledged
        if term == raft.current_term and index <= acknowledged:
            # The leader of this term may count these entries towards a commit: never delete them.
            log.critical("%s deleting entries from index %d that it acknowledged to the leader of term %d",
                         raft.node_id(), index, term)
        if index <= raft.commit_index or index <= raft.last_applied:
            # Raft never deletes a committed entry; if this happens, safety was broken elsewhere.
            log.critical("%s truncating committed or applied log entries from index %d (commit %d, applied %d)",
                         raft.node_id(), index, raft.commit_index, raft.last_applied)
        for i in range(raft.last_index(), index - 1, -1):
            change = raft.parse_change_cluster(raft.entry(i)[0])
            if change is not None:
                raft.change_cluster(change, reverse=True)
        raft.log.deleteEntriesFrom(index - raft.first_index())

    # -- group commit ----------------------------------------------------------------------------

    def begin_round(self) -> None:
        self._round = []

    def end_round(self) -> None:
        """Send the round's replies, once the journal holds (synced) what they acknowledge."""
        replies, self._round = self._round or [], None
        if replies:
            self.raft.log.sync()
        for node, reply in replies:
            self.send(node, reply)

    def drop_round(self) -> None:
        self._round = None

    def _reply(self, node: Any, next_index: int, *, success: bool, reset: bool) -> None:
        reply = {"type": "next_node_idx", "next_node_idx": next_index, "reset": reset, "success": success,
                 "term": self.raft.current_term}
        if reset and self._probe is not None:
            reply["rw_probe"] = self._probe  # which of the leader's probes this refuses (a late one is dropped)
        if self._echo is not None:
            # Any reply in the leader's term confirms its leadership for the reads of this round
            # (ReadIndex, dissertation 6.4), refusals of a log mismatch included.
            reply["rw_seq"] = self._echo
        if self._round is not None:
            self._round.append((node, reply))
        else:
            self.send(node, reply)
