"""Prometheus metrics for one node's HTTP server, in a registry of its own.

Raft state (role, term, commit and applied index) is read from ``node.status()`` at scrape time,
so a scrape always shows the present; request counts, latencies, proposals and errors are
counted as they happen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consensus.engine import Role

if TYPE_CHECKING:
    from consensus.node import Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _RaftCollector(Collector):
    def __init__(self, node: "Node") -> None:
        self.node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.node.status()
        role = GaugeMetricFamily("raftwork_raft_role", "1 for this node's current Raft role", labels=["role"])
        for r in Role:
            role.add_metric([r.value], 1.0 if status.role is r else 0.0)
        yield role
        yield GaugeMetricFamily("raftwork_raft_term", "current Raft term", value=status.term)
        yield GaugeMetricFamily("raftwork_raft_commit_index", "highest log index known committed", value=status.commit_index)
        yield GaugeMetricFamily("raftwork_raft_last_applied", "highest log index applied here", value=status.last_applied)
        yield GaugeMetricFamily("raftwork_raft_log_entries", "entries in the log since the last snapshot", value=status.log_size)
        yield GaugeMetricFamily("raftwork_raft_has_quorum", "1 when a leader sees a quorum", value=1.0 if status.has_quorum else 0.0)
        yield GaugeMetricFamily("raftwork_raft_leader_known", "1 when this node knows a leader", value=1.0 if status.leader else 0.0)


class _LoadCollector(Collector):
    def __init__(self, load: Callable[[], tuple[int, int]]) -> None:
        self.load = load

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connections, in_flight = self.load()
        yield GaugeMetricFamily("raftwork_http_connections", "HTTP connections open now", value=connections)
        yield GaugeMetricFamily("raftwork_http_requests_in_flight", "HTTP requests being answered now", value=in_flight)


class Metrics:
    """The metrics of one server; ``load`` returns (open connections, requests in flight)."""

    def __init__(self, node: "Node", load: Callable[[], tuple[int, int]] = lambda: (0, 0)) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_RaftCollector(node))
        self.registry.register(_LoadCollector(load))
        self.requests = Counter(
            "raftwork_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "raftwork_http_request_duration_seconds",
            "time to answer an HTTP request",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter("raftwork_http_errors", "HTTP error answers by error code", ["code"], registry=self.registry)
        self.proposals = Counter(
            "raftwork_proposals", "commands proposed by this node, by outcome", ["machine", "outcome"], registry=self.registry
        )
        self.forwarded = Counter(
            "raftwork_forwarded_requests", "requests forwarded to the leader, by outcome", ["outcome"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
