"""Prometheus metrics for ``GET /metrics``, as Toxiproxy's ``-proxy-metrics`` and ``-runtime-metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest

if TYPE_CHECKING:
    from chaos.toxiproxy.proxy import Proxy

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ("direction", "listener", "proxy", "upstream")


class Metrics:
    """Byte counters per proxy and direction, added to when a link ends (as upstream does)."""

    def __init__(self, *, proxy_metrics: bool, runtime_metrics: bool) -> None:
        self.registry = CollectorRegistry()
        self.proxy_metrics = proxy_metrics
        if proxy_metrics:
            self.received = Counter("toxiproxy_proxy_received_bytes_total", "Bytes received by the proxy",
                                    LABELS, registry=self.registry)
            self.sent = Counter("toxiproxy_proxy_sent_bytes_total", "Bytes sent by the proxy",
                                LABELS, registry=self.registry)
        if runtime_metrics:  # Python's runtime, where upstream exports Go's
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def record(self, proxy: "Proxy", direction: str, received: int, sent: int) -> None:
        if not self.proxy_metrics:
            return
        labels = (direction, proxy.listen, proxy.name, proxy.upstream)
        self.received.labels(*labels).inc(received)
        self.sent.labels(*labels).inc(sent)

    def render(self) -> bytes:
        return generate_latest(self.registry)
