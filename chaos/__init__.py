"""raftwork's chaos harness: Toxiproxy, cluster control, nemeses, workloads, checkers."""
