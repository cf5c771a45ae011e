"""Child processes of a local cluster: free loopback ports, the child environment, and one
``NodeProcess`` that starts, signals and reaps a child, always by its PID.

A child never outlives its parent: it is started with ``PR_SET_PDEATHSIG`` (from the main
thread, where that signal is reliable) and ``consensus serve --exit-with-parent`` watches
``getppid()`` as well.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

import consensus

HOST = "127.0.0.1"
# Below Linux's ephemeral range (32768-60999): a port picked there is never handed out as the
# source port of someone's outgoing connection, so a killed node (or a re-enabled proxy) can bind
# its port again when it comes back.
PORT_RANGE = (20000, 32000)
_PR_SET_PDEATHSIG = 1
_KILL_WAIT = 10.0


def port_in_use(port: int, host: str = HOST) -> bool:
    """Tell whether ``host:port`` cannot be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def pick_ports(count: int, rng: random.Random | None = None) -> list[int]:
    """Return ``count`` distinct ports from ``PORT_RANGE`` that were free a moment ago."""
    rng = rng or random.Random()
    chosen: list[int] = []
    for _ in range(count * 50):
        port = rng.randrange(*PORT_RANGE)
        if port not in chosen and not port_in_use(port):
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


def child_env() -> dict[str, str]:
    """Return the environment for children: they import this very copy of the package."""
    root = str(Path(consensus.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the child's parent watch still stops it


def last_line(path: Path) -> str:
    """Return the last non-empty line of a log file ("" if there is none)."""
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


class NodeProcess:
    """One child: start it, signal it and wait for it, always by PID.

    The argv is fixed at construction, so a restart uses the same ports, data dir and routes.
    Output (stdout and stderr) is appended to ``log`` across restarts, with a marker line at
    every start.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = Path(log)
        self.env = dict(env or {})  # set in the child on top of ``child_env()`` (test hooks)
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
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"--- local cluster: starting {self.name} (start {self.starts}) at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env={**child_env(), **self.env}, preexec_fn=preexec)
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
        if self.signal(signal.SIGKILL) and not await self.wait(_KILL_WAIT):
            raise RuntimeError(f"{self.name} (pid {self.proc.pid if self.proc else '?'}) survived SIGKILL for {_KILL_WAIT:g} s")

    async def terminate(self, timeout: float = 10.0) -> None:
        """SIGCONT (in case it is paused) and SIGTERM; SIGKILL if it has not exited after ``timeout``."""
        if self.pid is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if not await self.wait(timeout):
            await self.kill()

    def terminate_sync(self, timeout: float = 10.0) -> int | None:
        """Blocking :meth:`terminate` for code without an event loop; return the exit code."""
        if self.proc is None:
            return None
        if self.pid is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(_KILL_WAIT)
        return self.proc.returncode
