"""A local etcd cluster for the baseline: N ``etcd`` processes on free loopback ports.

Debian's ``etcd-server`` package (``apt-get install etcd-server``) gives etcd 3.4.23, which
fsyncs its WAL on every commit (3.4 has no switch to turn that off). Each member has its own
data dir under the bench's; the cluster is stopped by PID on exit, also on failure. The JSON
gateway (``/v3/kv/put`` and friends) is served on the client port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

from consensus.bench.clusters import LocalCluster, NodeState
from consensus.bench.procs import free_ports

INSTALL_HINT = "etcd is not installed (on Debian: apt-get install etcd-server); the etcd baseline is skipped"


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def etcd_version() -> str | None:
    binary = etcd_binary()
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    first = out.splitlines()[0] if out else ""
    return first.split(":", 1)[-1].strip() or None


class EtcdCluster(LocalCluster):
    system = "etcd"

    def __init__(self, n: int, data_dir: str | Path) -> None:
        super().__init__(n, data_dir)
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.binary = binary
        ports = free_ports(2 * n)
        self.client_ports, self.peer_ports = ports[:n], ports[n:]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.client_ports]
        self.initial_cluster = ",".join(f"e{i + 1}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        self.token = f"bench-{uuid.uuid4().hex[:8]}"  # a fresh cluster id: no stray member can join
        self._started: set[int] = set()

    def argv(self, i: int) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        return [
            self.binary, "--name", f"e{i + 1}", "--data-dir", str(self.data_dir / f"e{i + 1}"),
            "--listen-client-urls", self.urls[i], "--advertise-client-urls", self.urls[i],
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster, "--initial-cluster-token", self.token,
            "--initial-cluster-state", "existing" if i in self._started else "new",
            "--logger", "zap", "--log-level", "warn",
        ]  # fmt: skip

    def start_node(self, i: int) -> None:
        super().start_node(i)
        self._started.add(i)

    def status(self, i: int) -> NodeState | None:
        request = urllib.request.Request(self.urls[i] + "/v3/maintenance/status", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=1) as response:  # noqa: S310 (loopback only)
                body = json.loads(response.read())
        except (OSError, ValueError):
            return None
        me = body.get("header", {}).get("member_id")
        leader = body.get("leader")
        role = "leader" if leader and leader == me else ("follower" if leader and leader != "0" else "candidate")
        applied = int(body.get("raftAppliedIndex", body.get("raftIndex", 0)))
        return NodeState(role, int(body.get("raftTerm", 0)), applied, int(body.get("raftIndex", 0)))
