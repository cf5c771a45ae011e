"""Profile the processes of an HTTP write load with py-spy: where the leader's time goes.

While the load client sends counter increments to the leader, py-spy samples the leader, one
follower and the load client itself (``--nonblocking``, so the processes are not paused). Each
gets a raw collapsed-stack file (``profile-<role>.txt``, readable by flamegraph tools and
speedscope) and a summary: samples per thread, and the functions with the most samples, by
self time (the frame on top) and by inclusive time (anywhere on the stack). Idle threads are
not sampled, so a thread's share of samples is its share of busy time.

py-spy is optional (``pip install py-spy``); without it the scenario is skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_TOP = 15


def py_spy() -> str | None:
    return shutil.which("py-spy")


@dataclass
class ProfileSummary:
    role: str
    samples: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    def format(self) -> str:
        lines = [f"{self.role}: {self.samples} busy samples"]
        for thread, n in self.threads.most_common():
            lines.append(f"  thread {thread}: {_share(n, self.samples)}")
        lines.append("  self (top of stack):")
        lines += [f"    {_share(n, self.samples)}  {frame}" for frame, n in self.self_time.most_common(_TOP)]
        lines.append("  inclusive (anywhere on the stack):")
        lines += [f"    {_share(n, self.samples)}  {frame}" for frame, n in self.inclusive.most_common(_TOP)]
        return "\n".join(lines)


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:5.1f}%" if total else "  -  "


def _short(frame: str) -> str:
    """Turn ``func (/long/path/pkg/mod.py:12)`` into ``func (pkg/mod.py)``."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    parts = Path(match.group("file")).parts
    return f"{match.group('func')} ({'/'.join(parts[-2:])})"


def summarize(role: str, raw: str) -> ProfileSummary:
    """Summarize py-spy's raw output (``thread;frame;frame... count`` per line, outermost first)."""
    summary = ProfileSummary(role)
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "main"
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        if not frames:
            continue
        summary.samples += count
        summary.threads[_thread_name(thread)] += count
        summary.self_time[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            summary.inclusive[frame] += count
    return summary


def _thread_name(label: str) -> str:
    match = re.search(r'"([^"]+)"', label)
    return match.group(1) if match else label.split(" ")[-1].strip("()")


def record(pids: dict[str, int], seconds: float, out: Path, rate: int = 100) -> list[subprocess.Popen[bytes]]:
    """Start one py-spy per process (role -> pid); each writes ``out/profile-<role>.txt``."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for role, pid in pids.items():
        argv = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
                "--format", "raw", "--threads", "--nonblocking", "--output", str(out / f"profile-{role}.txt")]
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def summaries(roles: list[str], out: Path) -> list[ProfileSummary]:
    found = []
    for role in roles:
        path = out / f"profile-{role}.txt"
        if path.exists():
            found.append(summarize(role, path.read_text(errors="replace")))
    return found
