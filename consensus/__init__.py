"""raftwork's consensus layer: replicated state machines on a Raft log."""
