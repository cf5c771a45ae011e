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
# A sample whose top frame is one of these waits for I/O: py-spy cannot always tell it is idle.
_WAITS = {("select", "selectors.py"), ("poll", "selectors.py"), ("poll", "poller.py"), ("wait", "threading.py")}


def py_spy() -> str | None:
    return shutil.which("py-spy")


@dataclass
class ProfileSummary:
    role: str
    samples: int = 0  # busy samples: waits in select/poll are counted apart
    waiting: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    packages: Counter[str] = field(default_factory=Counter)  # self time by package or module
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    def format(self) -> str:
        lines = [f"{self.role}: {self.samples} busy samples ({self.waiting} more waiting in select/poll, left out)"]
        for thread, n in self.threads.most_common():
            lines.append(f"  thread {thread}: {_share(n, self.samples)}")
        lines.append("  self time by package:")
        lines += [f"    {_share(n, self.samples)}  {package}" for package, n in self.packages.most_common(_TOP)]
        lines.append("  self (top of stack):")
        lines += [f"    {_share(n, self.samples)}  {frame}" for frame, n in self.self_time.most_common(_TOP)]
        lines.append("  inclusive (anywhere on the stack; entry points and the event loop's own frames left out):")
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


def package_of(frame: str) -> str:
    """Name the package a frame's file belongs to: ``aiohttp``, ``consensus.server``, ``asyncio``, ..."""
    match = _FRAME.match(frame.strip())
    path = match.group("file") if match else ""
    parts = Path(path).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    for root in ("consensus", "apps", "chaos"):
        if root in parts:
            rest = parts[parts.index(root) + 1:]
            return f"{root}.{rest[0].removesuffix('.py')}" if rest else root
    if len(parts) >= 2 and parts[-2] not in ("lib", "python3.11") and not parts[-2].startswith("python"):
        return parts[-2]  # a stdlib package such as asyncio or json
    return parts[-1].removesuffix(".py") if parts else "?"


# Frames on every stack of their thread (entry points, the event loop's own loop): no information.
_ROOTS = {"<module>", "main", "run", "Runner.run", "_run_code", "_run_module_as_main", "BaseEventLoop.run_forever",
          "BaseEventLoop.run_until_complete", "BaseEventLoop._run_once", "Thread._bootstrap", "Thread._bootstrap_inner",
          "Thread.run", "Handle._run"}


def _is_root(frame: str) -> bool:
    match = _FRAME.match(frame.strip())
    return match is not None and match.group("func") in _ROOTS


def _is_wait(frame: str) -> bool:
    match = _FRAME.match(frame.strip())
    if not match:
        return False
    func = match.group("func").rsplit(".", 1)[-1]
    return (func, Path(match.group("file")).name) in _WAITS


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
        if _is_wait(frames[-1]):
            summary.waiting += count
            continue
        summary.samples += count
        summary.threads[_thread_name(thread)] += count
        summary.packages[package_of(frames[-1])] += count
        summary.self_time[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames if not _is_root(f)}:
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


def main(argv: list[str] | None = None) -> int:
    """Print the summaries of the profile-*.txt files in a directory again."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m consensus.bench.profile RESULTS_DIR/profile", file=sys.stderr)
        return 2
    roles = sorted(p.stem.removeprefix("profile-") for p in Path(args[0]).glob("profile-*.txt"))
    for summary in summaries(roles, Path(args[0])):
        print(summary.format())
    return 0


def summaries(roles: list[str], out: Path) -> list[ProfileSummary]:
    found = []
    for role in roles:
        path = out / f"profile-{role}.txt"
        if path.exists():
            found.append(summarize(role, path.read_text(errors="replace")))
    return found


if __name__ == "__main__":
    raise SystemExit(main())
