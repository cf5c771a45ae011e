"""The simulated network: per-pair connections, delays, drops, duplicates, reordering, partitions.

Each unordered pair of nodes has one connection (as pysyncobj has one TCP connection per pair).
A message travels as bytes (pickled and unpickled, as on the wire), so nodes never share
objects. A message sent on a connection that closed before it arrived is lost, as with TCP.

Faults:

- ``block(a, b)``: messages between a and b are dropped silently; the connection is noticed dead
  after a detection delay (pysyncobj's connection timeout), then reconnects fail until
  ``unblock``; after it, the pair reconnects after a retry delay;
- ``crash`` of a node closes its connections at once (the peers see a reset);
- per-message noise, drawn from the world's random stream: drop, duplicate, and delay spikes
  (a spike makes later messages overtake earlier ones: reordering).
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from pysyncobj.node import TCPNode
from pysyncobj.transport import Transport

if TYPE_CHECKING:
    from consensus.testing.sim.world import World


@dataclass
class Noise:
    drop: float = 0.0
    duplicate: float = 0.0
    spike: float = 0.0  # probability that a message is delayed by a spike
    spike_seconds: tuple[float, float] = (0.05, 0.5)
    delay_seconds: tuple[float, float] = (0.0005, 0.003)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


class SimTransport(Transport):  # type: ignore[misc]
    """One node's end of the simulated network, given to pysyncobj as its transport."""

    def __init__(self, network: "Network", node_id: str, others: list[str]) -> None:
        super().__init__(None, None, None)
        self.network = network
        self.node_id = node_id
        self.peers: dict[str, TCPNode] = {p: TCPNode(p) for p in others}

    # pysyncobj's Transport interface
    def addNode(self, node: Any) -> None:
        self.peers[node.id] = node
        self.network.connect_later(self.node_id, node.id)

    def dropNode(self, node: Any) -> None:
        self.peers.pop(node.id, None)

    def send(self, node: Any, message: Any) -> bool:
        self.network.world.checks.on_send(self.node_id, message)
        return self.network.send(self.node_id, node.id, message)

    def destroy(self) -> None:
        self.network.detach(self.node_id)

    # called by the network
    def deliver(self, sender: str, message: Any) -> None:
        node = self.peers.get(sender) or TCPNode(sender)
        core = self.network.world.nodes[self.node_id].core
        if core is None:
            self._onMessageReceived(node, message)
            return
        with core.message_round():  # as one poll of the real engine's tick reads it
            self._onMessageReceived(node, message)

    def connected(self, peer: str) -> None:
        if peer in self.peers:
            self._onNodeConnected(self.peers[peer])

    def disconnected(self, peer: str) -> None:
        if peer in self.peers:
            self._onNodeDisconnected(self.peers[peer])


class Network:
    def __init__(self, world: "World", noise: Noise, detect_seconds: tuple[float, float] = (0.2, 3.5),
                 retry_seconds: tuple[float, float] = (0.2, 0.7)) -> None:
        self.world = world
        self.noise = noise
        self.detect_seconds = detect_seconds
        self.retry_seconds = retry_seconds
        self.endpoints: dict[str, SimTransport] = {}
        self.epoch: dict[tuple[str, str], int] = {}  # connection number; odd = connected
        self.blocked: set[tuple[str, str]] = set()  # ordered (src, dst): messages dropped
        self.sent = 0
        self.delivered = 0
        self._fifo: dict[tuple[str, str], float] = {}  # (src, dst) -> latest in-order arrival time
        # One random stream per directed link, so a message's fate does not depend on the order in
        # which a node sends to its peers (pysyncobj iterates sets, whose order varies by process).
        self._link_rng: dict[tuple[str, str], random.Random] = {}
        # Scripted scenarios hold chosen messages on a link and release them in the order they like.
        self._holds: dict[tuple[str, str], Callable[[dict[str, Any]], bool]] = {}
        # pysyncobj declares a connection dead when it *sends* after this long without reading
        # anything from it (its connectionTimeout, checked on send): an idle link dies on use.
        self.read_timeout = 3.5
        self._last_read: dict[tuple[str, str], float] = {}  # (reader, writer) -> time
        self.held: dict[tuple[str, str], list[tuple[int, bytes, dict[str, Any]]]] = {}

    # -- endpoints ---------------------------------------------------------------------------

    def attach(self, transport: SimTransport) -> None:
        self.endpoints[transport.node_id] = transport
        for peer in transport.peers:
            self.connect_later(transport.node_id, peer)

    def detach(self, node_id: str) -> None:
        if self.endpoints.pop(node_id, None) is None:
            return
        for pair in list(self.epoch):
            if node_id in pair and self.is_connected(*pair):
                self._disconnect(pair)

    def is_connected(self, a: str, b: str) -> bool:
        return self.epoch.get(_pair(a, b), 0) % 2 == 1

    # -- connections -------------------------------------------------------------------------

    def connect_later(self, a: str, b: str) -> None:
        pair = _pair(a, b)
        if self.is_connected(*pair):
            return
        self.world.after(self.world.rng.uniform(*self.retry_seconds), lambda: self._try_connect(pair),
                         f"connect {pair[0]}-{pair[1]}")

    def _try_connect(self, pair: tuple[str, str]) -> None:
        a, b = pair
        if self.is_connected(a, b) or a not in self.endpoints or b not in self.endpoints:
            return
        if (a, b) in self.blocked or (b, a) in self.blocked:
            self.connect_later(a, b)  # keeps retrying while the link is cut
            return
        if b not in self.endpoints[a].peers and a not in self.endpoints[b].peers:
            return
        self.epoch[pair] = self.epoch.get(pair, 0) + 1
        self._last_read[(a, b)] = self._last_read[(b, a)] = self.world.now
        self.endpoints[a].connected(b)
        self.endpoints[b].connected(a)

    def _disconnect(self, pair: tuple[str, str]) -> None:
        self.epoch[pair] = self.epoch.get(pair, 0) + 1
        a, b = pair
        for me, peer in ((a, b), (b, a)):
            endpoint = self.endpoints.get(me)
            if endpoint is not None:
                endpoint.disconnected(peer)
        self.connect_later(a, b)

    def block(self, src: str, dst: str) -> None:
        """Drop messages from src to dst; a cut connection is noticed after a detection delay."""
        self.blocked.add((src, dst))
        pair = _pair(src, dst)
        epoch = self.epoch.get(pair, 0)

        def detect() -> None:
            if ((src, dst) in self.blocked) and self.epoch.get(pair, 0) == epoch and self.is_connected(*pair):
                self._disconnect(pair)

        self.world.after(self.world.rng.uniform(*self.detect_seconds), detect, f"detect cut {src}->{dst}")

    def unblock(self, src: str, dst: str) -> None:
        self.blocked.discard((src, dst))
        self.connect_later(src, dst)

    # -- messages ----------------------------------------------------------------------------

    def hold(self, src: str, dst: str, which: Callable[[dict[str, Any]], bool] = lambda m: True) -> None:
        """Keep messages from src to dst that match ``which`` until released or dropped."""
        self._holds[(src, dst)] = which
        self.held.setdefault((src, dst), [])

    def release(self, src: str, dst: str, count: int | None = None) -> int:
        """Deliver the first ``count`` held messages (all by default) now, in the order they were sent."""
        held = self.held.get((src, dst), [])
        count = len(held) if count is None else min(count, len(held))
        for epoch, data, _ in held[:count]:
            self.world.at(self.world.now, lambda e=epoch, d=data: self._deliver(src, dst, e, d), None)  # type: ignore[misc]
        del held[:count]
        return count

    def drop_held(self, src: str, dst: str) -> int:
        held = self.held.get((src, dst), [])
        count = len(held)
        held.clear()
        return count

    def unhold(self, src: str, dst: str) -> None:
        self._holds.pop((src, dst), None)

    def send(self, src: str, dst: str, message: Any) -> bool:
        pair = _pair(src, dst)
        if not self.is_connected(src, dst):
            return False
        if self.world.now - self._last_read.get((src, dst), self.world.now) > self.read_timeout:
            self._disconnect(pair)
            return False
        self.sent += 1
        data = pickle.dumps(message, protocol=2)
        which = self._holds.get((src, dst))
        if which is not None and which(message):
            self.held[(src, dst)].append((self.epoch[pair], data, message))
            return True
        rng = self._link_rng.get((src, dst))
        if rng is None:
            rng = self._link_rng[(src, dst)] = random.Random(f"{self.world.seed}:{src}:{dst}")
        noise = self.noise
        if (src, dst) in self.blocked or rng.random() < noise.drop:
            return True  # lost on the way; the sender cannot tell
        copies = 2 if rng.random() < noise.duplicate else 1
        epoch = self.epoch[pair]
        now = self.world.now
        for _ in range(copies):
            if rng.random() < noise.spike:
                # Held up and overtaken by later messages: the reordering TCP hides within one
                # connection but a network with retries and reconnections does not.
                at = now + rng.uniform(*noise.delay_seconds) + rng.uniform(*noise.spike_seconds)
            else:  # in order, as on one TCP connection
                at = max(now + rng.uniform(*noise.delay_seconds), self._fifo.get((src, dst), 0.0))
                self._fifo[(src, dst)] = at
            self.world.at(at, lambda: self._deliver(src, dst, epoch, data), None)
        return True

    def _deliver(self, src: str, dst: str, epoch: int, data: bytes) -> None:
        if self.epoch.get(_pair(src, dst)) != epoch or (src, dst) in self.blocked:
            return  # the connection it was sent on is gone
        endpoint = self.endpoints.get(dst)
        if endpoint is None:
            return
        self.delivered += 1
        self._last_read[(dst, src)] = self.world.now
        endpoint.deliver(src, pickle.loads(data))
        self.world.node_touched(dst)
