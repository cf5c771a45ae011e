"""Node processes: free ports, spawning ``consensus serve`` children, and stopping them by PID."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from consensus.server.local_cluster import child_env, die_with_parent, port_in_use

HOST = "127.0.0.1"
# Below Linux's ephemeral range (32768-60999): a port we pick there is never handed out as the
# source port of someone's outgoing connection, so a killed node (or a disabled proxy) can bind
# its port again when it comes back.
PORT_RANGE = (20000, 32000)


def port_free(port: int, host: str = HOST) -> bool:
    return not port_in_use(port, host)


def pick_ports(count: int, rng: random.Random | None = None) -> list[int]:
    """Return ``count`` distinct ports from ``PORT_RANGE`` that were free a moment ago."""
    rng = rng or random.Random()
    chosen: list[int] = []
    for _ in range(count * 50):
        port = rng.randrange(*PORT_RANGE)
        if port not in chosen and port_free(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"could not find {count} free ports in {PORT_RANGE[0]}-{PORT_RANGE[1]}")


def pid_alive(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class NodeProcess:
    """One ``consensus serve`` child: start it, signal it, and wait for it, always by PID.

    The argv is fixed at construction, so a restart uses the same ports, data dir and routes.
    Output (stdout and stderr) is appended to ``log``, across restarts.
    """

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The PID while the child runs (or is stopped by SIGSTOP), else None."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def spawn(self) -> int:
        """Start the child; return its PID."""
        if self.pid is not None:
            raise RuntimeError(f"{self.name} is already running as pid {self.pid}")
        self.starts += 1
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only use it from the
        # main thread; --exit-with-parent (a getppid watch in the child) covers every case.
        preexec = die_with_parent if threading.current_thread() is threading.main_thread() else None
        with open(self.log, "ab") as log:
            log.write(f"--- chaos cluster: starting {self.name} (start {self.starts}) at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=child_env(), preexec_fn=preexec)
        return self.proc.pid

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the child by PID; return False if it was not running."""
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
        return True

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the child to exit (and reap it); return whether it did."""
        if self.proc is None:
            return True
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.signal(signal.SIGKILL):
            if not await self.wait(10.0):
                raise RuntimeError(f"{self.name} (pid {self.proc.pid if self.proc else '?'}) survived SIGKILL for 10 s")

    async def terminate(self, timeout: float = 10.0) -> None:
        """SIGCONT (in case it is paused) and SIGTERM; SIGKILL if it has not exited after ``timeout``."""
        if self.pid is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if not await self.wait(timeout):
            await self.kill()


def serve_argv(raft: str, peers: str, http: str, data_dir: Path, apps: str, token_file: Path | None,
               dial_routes: dict[str, str]) -> list[str]:
    """Build the ``consensus serve`` command line of one node."""
    argv = [sys.executable, "-m", "consensus", "serve", "--id", raft, "--peers", peers, "--http", http,
            "--data-dir", str(data_dir), "--apps", apps, "--exit-with-parent"]
    if token_file is not None:
        argv += ["--token-file", str(token_file)]
    for peer, target in sorted(dial_routes.items()):
        argv += ["--dial-route", f"{peer}={target}"]
    return argv
