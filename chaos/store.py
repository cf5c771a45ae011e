"""The run store: ``store/<test-name>/<timestamp>/`` with the history, results, config, logs, report.

::

    store/
      latest -> register-partition/20261128T233001.123Z
      register-partition/
        latest -> 20261128T233001.123Z
        20261128T233001.123Z/
          test.json  history.jsonl  history.edn  results.json  run.log  cluster.json  nodes/n1.log ...
          latency-raw.png  latency-quantiles.png  rate.png  timeline.html

The store keeps files; it draws nothing (the runner calls :mod:`chaos.report`).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from chaos.history import Op, to_edn, write_jsonl

HISTORY, HISTORY_EDN, RESULTS, TEST, RUN_LOG = "history.jsonl", "history.edn", "results.json", "test.json", "run.log"


def timestamp(now: datetime | None = None) -> str:
    """Return a sortable UTC timestamp with milliseconds, e.g. ``20261128T233001.123Z``."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"


def new_run_dir(root: Path, test_name: str, now: datetime | None = None) -> Path:
    """Create and return a fresh run directory for ``test_name`` under ``root``."""
    base = root / test_name
    base.mkdir(parents=True, exist_ok=True)
    stamp = timestamp(now)
    path, n = base / stamp, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = base / f"{stamp}-{n}"


def _relink(link: Path, target: str) -> None:
    """Point symlink ``link`` at ``target`` atomically (a temporary link renamed over it)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def update_latest(root: Path, run_dir: Path) -> None:
    """Point ``root/latest`` and ``root/<test>/latest`` at ``run_dir`` (relative links)."""
    run_dir = run_dir.resolve()
    _relink(root / "latest", os.path.relpath(run_dir, root.resolve()))
    _relink(run_dir.parent / "latest", run_dir.name)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_history(run_dir: Path, history: Sequence[Op], header: Mapping[str, Any] | None = None) -> Path:
    """Write ``history.jsonl`` (the header line, then one op a line) and its EDN export ``history.edn``."""
    path = run_dir / HISTORY
    write_jsonl(history, path, header)
    (run_dir / HISTORY_EDN).write_text(to_edn(history), encoding="utf-8")
    return path


def copy_node_logs(cluster: Any, run_dir: Path) -> list[Path]:
    """Copy each node's log into ``run_dir/nodes/<name>.log``; missing logs are skipped."""
    out = []
    target = run_dir / "nodes"
    for node in getattr(cluster, "nodes", ()):
        log = getattr(node, "log", None)
        if log is None or not Path(log).is_file():
            continue
        target.mkdir(exist_ok=True)
        dest = target / f"{node.name}.log"
        shutil.copyfile(log, dest)
        out.append(dest)
    return out


def node_logs(run_dir: Path) -> dict[str, Path]:
    """Return the stored node logs of a run: name -> path."""
    return {p.stem: p for p in sorted((run_dir / "nodes").glob("*.log"))}


class StoreError(ValueError):
    """A run directory that cannot be read; the message is one line."""


def resolve_run(path: str | Path | None, root: str | Path = "store") -> Path:
    """Return the run directory ``path`` names (default ``<root>/latest``), links resolved."""
    run = Path(path) if path else Path(root) / "latest"
    if run.is_dir() and not (run / HISTORY).exists() and (run / "latest").exists():
        run = run / "latest"  # a store root or a test directory: its latest run
    if not run.exists():
        raise StoreError(f"no run at {run}")
    run = run.resolve()
    if not (run / HISTORY).is_file():
        raise StoreError(f"{run} has no {HISTORY}")
    return run


def load_test(run_dir: Path) -> dict[str, Any]:
    path = run_dir / TEST
    if not path.is_file():
        raise StoreError(f"{run_dir} has no {TEST}")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise StoreError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: not a JSON object")
    return data


def load_results(run_dir: Path) -> dict[str, Any] | None:
    """Return a run's ``results.json``, or None if it has none (or it is unreadable)."""
    try:
        data = json.loads((run_dir / RESULTS).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def runs(root: Path) -> list[Path]:
    """Return every run directory under ``root`` (``<test>/<timestamp>/``), newest first."""
    found = [p for p in Path(root).glob("*/*") if p.is_dir() and not p.is_symlink() and (p / TEST).is_file()]
    return sorted(found, key=lambda p: (p.name, p.parent.name), reverse=True)
