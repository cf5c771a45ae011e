"""A standalone HTML view of a linearizability result (inline CSS, no scripts, no assets).

Each partition is drawn as a timeline: one row per process, one bar per operation from its
invoke to its completion (crashed operations run to the right edge, hatched). Bars in the
longest linearizable prefix are green and numbered in linearization order; the operation that
cannot be linearized is red; the rest are grey. Hovering a bar shows the operation and the
model state after it. A table below lists the prefix step by step.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from .linear import LinearizabilityResult, PartitionResult
from .models import UNKNOWN
from ..verdict import Verdict

__all__ = ["render", "write_view"]

_MAX_PARTITIONS = 20  # invalid and unknown partitions always shown; valid ones up to this many

_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px} h2{font-size:15px;margin-top:24px}
.valid{color:#17692c}.invalid{color:#b00020}.unknown{color:#8a6d00}
.tl{position:relative;border:1px solid #ccc;background:#fafafa;overflow-x:auto}
.row{position:relative;height:22px;border-bottom:1px dotted #e2e2e2}
.lbl{position:absolute;left:0;width:70px;padding-left:4px;color:#666;line-height:22px}
.op{position:absolute;top:3px;height:16px;border-radius:3px;font-size:11px;line-height:16px;overflow:hidden;
white-space:nowrap;padding:0 2px;box-sizing:border-box;min-width:3px}
.lin{background:#8fd19e;border:1px solid #2e7d32}.fail{background:#ff8a80;border:2px solid #b00020}
.rest{background:#ddd;border:1px solid #aaa}
.crashed{background-image:repeating-linear-gradient(45deg,transparent 0 4px,rgba(0,0,0,.15) 4px 6px)}
table{border-collapse:collapse;margin-top:8px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.note{color:#555}
"""


def _verdict(valid: Verdict) -> tuple[str, str]:
    if valid is Verdict.VALID:
        return "valid", "linearizable"
    if valid is Verdict.INVALID:
        return "invalid", "not linearizable"
    return "unknown", "unknown (timed out)"


def _describe(call: Any) -> str:
    out = UNKNOWN if call.crashed else call.output
    shown = "?" if out is UNKNOWN else repr(out)
    return f"{call.f}({'' if call.input is None else repr(call.input)}) -> {shown}"


def _timeline(part: PartitionResult, width_px: int = 1400) -> str:
    calls = list(part.calls) + list(part.pruned)
    if not calls:
        return "<p class=note>no operations</p>"
    order = {cid: n for n, cid in enumerate(part.linearization)}
    states = dict(zip(part.linearization, part.states))
    # Positions ranked within this partition, so a key's ops spread over the full width.
    rank = {pos: n for n, pos in enumerate(sorted({c.call for c in calls} | {c.ret for c in calls if c.ret is not None}))}
    lo, hi = 0, len(rank)
    scale = (width_px - 80) / max(1, hi - lo)
    pruned = {c.id for c in part.pruned}
    processes = sorted({c.process for c in calls}, key=str)
    rows = []
    for proc in processes:
        bars = []
        for c in (c for c in calls if c.process == proc):
            start = rank[c.call]
            end = hi if c.ret is None else rank[c.ret] + 0.9
            left = 75 + (start - lo) * scale
            width = max(3.0, (end - start) * scale)
            if part.failing is not None and c.id == part.failing.id:
                cls, label = "fail", "✗"
            elif c.id in order:
                cls, label = "lin", str(order[c.id] + 1)
            else:
                cls, label = "rest", ""
            if c.crashed:
                cls += " crashed"
            tip = _describe(c) + (f"\nstep {order[c.id] + 1}, state after: {states[c.id]!r}" if c.id in order else "")
            tip += f"\nline {c.invoke.line}" + ("" if c.completion is None else f"-{c.completion.line}")
            if c.id in pruned:
                tip += "\n(crashed op pruned: cannot change the verdict)"
            bars.append(f'<div class="op {cls}" style="left:{left:.1f}px;width:{width:.1f}px" '
                        f'title="{html.escape(tip)}">{html.escape(label + " " + c.f)}</div>')
        rows.append(f'<div class=row><span class=lbl>p{html.escape(str(proc))}</span>{"".join(bars)}</div>')
    return f'<div class=tl style="width:{width_px}px">{"".join(rows)}</div>'


def _prefix_table(part: PartitionResult) -> str:
    by_id = {c.id: c for c in part.calls}
    rows = [f"<tr><td>{n + 1}</td><td>p{html.escape(str(by_id[cid].process))}</td>"
            f"<td>{html.escape(_describe(by_id[cid]))}</td><td>{html.escape(repr(state))}</td></tr>"
            for n, (cid, state) in enumerate(zip(part.linearization, part.states))]
    if part.failing is not None:
        f = part.failing
        rows.append(f"<tr class=invalid><td>✗</td><td>p{html.escape(str(f.process))}</td>"
                    f"<td>{html.escape(_describe(f))}</td><td>cannot be linearized here</td></tr>")
    return "<table><tr><th>step</th><th>process</th><th>operation</th><th>state after</th></tr>" + "".join(rows) + "</table>"


def render(result: LinearizabilityResult, *, title: str = "history") -> str:
    """Return the HTML page for ``result``."""
    cls, text = _verdict(result.valid)
    parts = sorted(result.partitions, key=lambda p: (p.valid is Verdict.VALID, p.valid is not Verdict.INVALID))
    shown = ([p for p in parts if p.valid is not Verdict.VALID]
             + [p for p in parts if p.valid is Verdict.VALID][:_MAX_PARTITIONS])
    body = [f"<h1>{html.escape(title)}: <span class={cls}>{text}</span></h1>",
            f"<p class=note>model {html.escape(result.model)}, {result.ops} operations, "
            f"{len(result.partitions)} partition(s), {result.elapsed * 1000:.1f} ms. Green bars are the longest "
            f"linearizable prefix, numbered in linearization order; the red bar cannot be linearized after it; "
            f"hatched bars crashed (may take effect any time after their invoke, or never). Hover for details.</p>"]
    for part in shown:
        pcls, ptext = _verdict(part.valid)
        key = "" if part.key is None else f"key {part.key!r}: "
        body.append(f"<h2>{html.escape(key)}<span class={pcls}>{ptext}</span> "
                    f"<span class=note>({len(part.linearization)} of {len(part.calls)} ops linearized"
                    f"{f', {len(part.pruned)} crashed ops pruned' if part.pruned else ''})</span></h2>")
        body.append(_timeline(part))
        if part.valid is not Verdict.VALID:
            body.append(_prefix_table(part))
    if len(shown) < len(parts):
        body.append(f"<p class=note>{len(parts) - len(shown)} more valid partitions not drawn.</p>")
    return (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_view(result: LinearizabilityResult, directory: Path, *, source: str) -> Path:
    """Write the view of ``result`` for the file ``source`` into ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    src = Path(source)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{src.parent.name}_{src.name}" if src.parent.name else src.name)
    path = directory / f"{stem}.html"
    path.write_text(render(result, title=Path(source).name), encoding="utf-8")
    return path
