"""``timeline.html``: one lane per process, a bar per op from invoke to completion.

Standalone: inline CSS, no scripts, no external assets. Bars are coloured by outcome (ok blue,
info orange, fail pink); crashed ops (info, or never completed) are hatched and run to the end
of the history. The nemesis lane on top shows fault intervals. Hover a bar for the op.
"""

from __future__ import annotations

import html
import json
from typing import Any, Sequence

from chaos.history import Op

from chaos.report.intervals import nemesis_intervals

MAX_CALLS = 20000
PX_PER_SECOND = 40
LANE_PX = 18

_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px} .meta{color:#555;margin-bottom:10px}
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border-radius:3px}
.wrap{overflow-x:auto;border:1px solid #ddd}
.grid{position:relative}
.lane{position:relative;height:%(lane)dpx;border-bottom:1px solid #f0f0f0}
.lane:hover{background:#fafafa}
.name{position:sticky;left:0;z-index:2;display:inline-block;width:70px;background:#fff;font-size:11px;
 color:#555;height:%(lane)dpx;line-height:%(lane)dpx;padding-left:4px;border-right:1px solid #ddd}
.op{position:absolute;top:2px;height:%(bar)dpx;border-radius:2px;min-width:2px;font-size:10px;overflow:hidden;
 white-space:nowrap;line-height:%(bar)dpx;color:#123;box-sizing:border-box;padding-left:2px}
.ok{background:#81BFFC}.fail{background:#FF1E90;color:#fff}.info{background:#FFA400}
.crashed{background:repeating-linear-gradient(45deg,#FFA400 0 4px,#ffe0a8 4px 8px)}
.fault{position:absolute;top:0;bottom:0;background:rgba(0,0,0,.07);pointer-events:none;z-index:0}
.nem{position:absolute;top:2px;height:%(bar)dpx;background:#999;color:#fff;font-size:10px;padding-left:3px;
 border-radius:2px;overflow:hidden;white-space:nowrap;line-height:%(bar)dpx}
.axis{position:relative;height:18px;border-bottom:1px solid #ccc;font-size:10px;color:#777}
.tick{position:absolute;top:2px}
""" % {"lane": LANE_PX, "bar": LANE_PX - 4}


def _calls(history: Sequence[Op]) -> list[tuple[Op, Op | None]]:
    pending: dict[Any, Op] = {}
    out: list[tuple[Op, Op | None]] = []
    for op in history:
        if not op.is_client:
            continue
        if op.type == "invoke":
            pending[op.process] = op
        elif op.process in pending:
            out.append((pending.pop(op.process), op))
    out.extend((inv, None) for inv in pending.values())
    out.sort(key=lambda c: c[0].index)
    return out


def _describe(inv: Op, done: Op | None) -> str:
    text = f"process {inv.process} {inv.f} {json.dumps(inv.value)}"
    if done is None:
        return text + " -> never completed"
    text += f" -> {done.type} {json.dumps(done.value)}"
    if done.node:
        text += f" on {done.node}"
    if done.get("error"):
        text += f" ({done.get('error')}: {done.get('message', '')})"
    t0, t1 = inv.time or 0, done.time or 0
    lines = f"{inv.line}-{done.line}" if inv.line and done.line else f"{inv.index + 1}-{done.index + 1}"
    return text + f"\ninvoke {t0 / 1e9:.3f}s, {(t1 - t0) / 1e6:.1f} ms; history lines {lines}"


def render(history: Sequence[Op], *, title: str = "timeline", summary: str = "") -> str:
    """Return the timeline page for ``history``."""
    calls = _calls(history)
    truncated = len(calls) > MAX_CALLS
    calls = calls[:MAX_CALLS]
    end = max([op.time or 0 for op in history] + [1])
    width = max(1200, int(end / 1e9 * PX_PER_SECOND))

    def x(t: int) -> float:
        return 70 + (t / end) * (width - 80)

    procs = sorted({inv.process for inv, _ in calls})
    lanes: dict[Any, list[str]] = {p: [] for p in procs}
    for inv, done in calls:
        t0 = inv.time or 0
        if done is None or done.type == "info":
            t1, cls = end, "crashed"
        else:
            t1, cls = (done.time or t0), done.type
        label = inv.f if done is None or done.type != "ok" else f"{inv.f} {json.dumps(done.value)}"
        lanes[inv.process].append(
            f'<div class="op {cls}" style="left:{x(t0):.1f}px;width:{max(2.0, x(t1) - x(t0)):.1f}px" '
            f'title="{html.escape(_describe(inv, done))}">{html.escape(label)}</div>')
    faults = nemesis_intervals(history, end)
    shading = "".join(f'<div class="fault" style="left:{x(a):.1f}px;width:{max(1.0, x(b) - x(a)):.1f}px"></div>'
                      for a, b, _ in faults)
    nem = "".join(f'<div class="nem" style="left:{x(a):.1f}px;width:{max(2.0, x(b) - x(a)):.1f}px" '
                  f'title="{html.escape(lbl or "fault")} {a / 1e9:.2f}s-{b / 1e9:.2f}s">{html.escape(lbl or "fault")}</div>'
                  for a, b, lbl in faults)
    step = max(1, int(end / 1e9 / 30) or 1)
    ticks = "".join(f'<span class="tick" style="left:{x(int(s * 1e9)):.1f}px">{s}s</span>'
                    for s in range(0, int(end / 1e9) + 1, step))
    rows = [f'<div class="axis" style="width:{width}px">{ticks}</div>',
            f'<div class="lane" style="width:{width}px"><span class="name">nemesis</span>{nem}</div>']
    rows += [f'<div class="lane" style="width:{width}px"><span class="name">process {p}</span>{"".join(lanes[p])}</div>'
             for p in procs]
    note = f"<p><b>Only the first {MAX_CALLS} ops are shown.</b></p>" if truncated else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<div class='meta'>{html.escape(summary)} {len(calls)} ops, {len(procs)} processes, "
            f"{end / 1e9:.1f}s. Hover a bar for the op.</div>"
            "<div class='legend'><span class='ok'>ok</span><span class='fail'>fail</span>"
            "<span class='crashed'>info (crashed: may take effect any time after)</span>"
            "<span style='background:rgba(0,0,0,.1)'>nemesis fault</span></div>"
            f"{note}<div class='wrap'><div class='grid' style='width:{width}px'>{shading}{''.join(rows)}</div></div>"
            "</body></html>\n")
