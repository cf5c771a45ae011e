"""Reach pysyncobj 0.3.17's private Raft state, in exactly one place.

pysyncobj keeps its Raft state in name-mangled attributes (``self.__raftLog`` is stored as
``_SyncObj__raftLog``). The adapter's Raft rules (``follower``, ``leader``, ``elections``) need
to read and set a few of them; they do it only through ``Raft`` below, so the list of what
raftwork touches inside pysyncobj is this file. Private methods are called the same way; where
the adapter *replaces* one, it sets an instance attribute of the mangled name, which Python finds
before the class's function (functions are non-data descriptors), so pysyncobj's own calls
``self.__name(...)`` reach the replacement. pysyncobj's files are never edited.

Every name here was read from pysyncobj 0.3.17 (``syncobj.py``); ``check_version`` refuses any
other version at start-up, since a different release may name or use these differently.
"""

from __future__ import annotations

from typing import Any, Callable

import pysyncobj
from pysyncobj.version import VERSION as PYSYNCOBJ_VERSION

SUPPORTED_PYSYNCOBJ = "0.3.17"

FOLLOWER, CANDIDATE, LEADER = 0, 1, 2  # pysyncobj's _RAFT_STATE
REGULAR, NO_OP, MEMBERSHIP = 0, 1, 2  # pysyncobj's _COMMAND_TYPE (first byte of a log entry)


class UnsupportedEngine(RuntimeError):
    """The installed pysyncobj is not the version the adapter was written against."""


def check_version() -> None:
    """Raise ``UnsupportedEngine`` unless pysyncobj is the pinned version."""
    if PYSYNCOBJ_VERSION != SUPPORTED_PYSYNCOBJ:
        raise UnsupportedEngine(
            f"raftwork needs pysyncobj=={SUPPORTED_PYSYNCOBJ} (its Raft fixes reach into that "
            f"release's internals), but {PYSYNCOBJ_VERSION} is installed at {pysyncobj.__file__}"
        )


def _field(name: str) -> property:
    mangled = "_SyncObj__" + name

    def get(self: "Raft") -> Any:
        return getattr(self.so, mangled)

    def set_(self: "Raft", value: Any) -> None:
        setattr(self.so, mangled, value)

    return property(get, set_, doc=f"pysyncobj's ``self.__{name}``")


class Raft:
    """A view of one ``SyncObj``'s Raft state: the fields and private methods the adapter uses."""

    log = _field("raftLog")  # the journal: a sequence of (command bytes, index, term)
    current_term = _field("raftCurrentTerm")
    voted_for = _field("votedForNodeId")
    state = _field("raftState")  # FOLLOWER, CANDIDATE or LEADER
    leader = _field("raftLeader")  # a Node, or None
    commit_index = _field("raftCommitIndex")
    last_applied = _field("raftLastApplied")
    leader_commit_index = _field("leaderCommitIndex")
    election_deadline = _field("raftElectionDeadline")  # monotonic seconds
    transfer_in_progress = _field("transferInProgress")
    next_index = _field("raftNextIndex")  # {Node: int}, on the leader
    match_index = _field("raftMatchIndex")  # {Node: int}, on the leader
    last_response_time = _field("lastResponseTime")  # {Node: monotonic seconds}, on the leader
    next_heartbeat_time = _field("newAppendEntriesTime")  # the leader sends AppendEntries after this
    other_nodes = _field("otherNodes")  # set of Node: the other voting members
    connected_nodes = _field("connectedNodes")
    self_node = _field("selfNode")
    transport = _field("transport")
    commands_queue = _field("commandsQueue")
    waiting_reply = _field("commandsWaitingReply")  # {request id: callback}: forwarded, unanswered
    waiting_commit = _field("commandsWaitingCommit")  # {log index: [(term, callback)]}
    conf = _field("conf")

    def __init__(self, so: Any) -> None:
        self.so = so

    # -- private methods ---------------------------------------------------------------------

    def handle_message(self) -> Callable[[Any, Any], None]:
        """pysyncobj's own message handler (bound), for the messages the adapter passes on."""
        return self.so._SyncObj__onMessageReceived  # type: ignore[no-any-return]

    def set_current_term(self, term: int, voted_for: str | None) -> None:
        self.so._SyncObj__setCurrentTerm(term, voted_for)

    def set_state(self, state: int) -> None:
        self.so._SyncObj__setState(state)

    def on_leader_changed(self) -> None:
        """Fail every forwarded command still waiting for the leader's answer (LEADER_CHANGED)."""
        self.so._SyncObj__onLeaderChanged()

    def change_cluster(self, request: Any, reverse: bool = False) -> bool:
        return self.so._SyncObj__doChangeCluster(request, reverse)  # type: ignore[no-any-return]

    def parse_change_cluster(self, command: bytes) -> Any:
        return self.so._SyncObj__parseChangeClusterRequest(command)

    def load_snapshot(self) -> None:
        """Load the snapshot file in place (state, last applied, members) and reset the journal to it."""
        self.so._SyncObj__loadDumpFile(clearJournal=True)

    def generate_timeout(self) -> float:
        return self.so._SyncObj__generateRaftTimeout()  # type: ignore[no-any-return]

    def send_append_entries(self) -> None:
        """Send AppendEntries (a heartbeat where nothing is new) to every connected peer now."""
        self.so._SyncObj__sendAppendEntries()

    def connected_to_anyone(self) -> bool:
        return self.so._SyncObj__connectedToAnyone()  # type: ignore[no-any-return]

    def replace_method(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Make pysyncobj's own ``self.__name(...)`` calls reach ``fn``; return the original."""
        mangled = "_SyncObj__" + name
        original = getattr(self.so, mangled)
        setattr(self.so, mangled, fn)
        return original  # type: ignore[no-any-return]

    # -- derived -----------------------------------------------------------------------------

    def first_index(self) -> int:
        return self.log[0][1]  # type: ignore[no-any-return]

    def last_index(self) -> int:
        return self.log[-1][1]  # type: ignore[no-any-return]

    def last_term(self) -> int:
        return self.log[-1][2]  # type: ignore[no-any-return]

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``, or None when the log does not hold it."""
        first = self.first_index()
        if index < first or index > self.last_index():
            return None
        return self.log[index - first][2]  # type: ignore[no-any-return]

    def entry(self, index: int) -> tuple[bytes, int, int]:
        return self.log[index - self.first_index()]  # type: ignore[no-any-return]

    def majority(self) -> int:
        return (len(self.other_nodes) + 1) // 2 + 1

    def node_id(self) -> str:
        return self.self_node.id  # type: ignore[no-any-return]
