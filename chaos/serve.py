"""``chaos serve``: browse the store in a web browser (Jepsen's ``lein run serve``).

``/`` lists every run, newest first, with its verdict, workload, nemesis and time, linking its
page and files; ``/runs/<test>/<time>/`` shows one run (the checkers' summaries, the plots, the
files); ``/files/<test>/<time>/<path>`` serves a file of a run. Pages are plain HTML with inline
CSS and no scripts. Only files inside the store are served.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from chaos import store
from chaos.verdict import Verdict

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:20px;color:#222}
h1{font-size:20px;margin:0 0 12px} table{border-collapse:collapse}
th,td{padding:4px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6} a{color:#1a5fb4;text-decoration:none} a:hover{text-decoration:underline}
.verdict{font-weight:600;padding:1px 6px;border-radius:3px}
.valid{background:#dcf5dc;color:#17692c}.invalid{background:#fbdada;color:#b00020}
.unknown,.interrupted,.crashed,.incomplete{background:#fff2cc;color:#7a5b00}
pre{background:#fafafa;border:1px solid #eee;padding:8px;overflow-x:auto} img{max-width:100%;border:1px solid #eee}
.files a{margin-right:10px}
"""
_SHOWN_FILES = ("timeline.html", "results.json", "history.jsonl", "history.edn", "test.json", "run.log",
                "latency-raw.png", "latency-quantiles.png", "rate.png")


def run_summary(run: Path) -> dict[str, Any]:
    """Return what the index shows of one run (read from its ``test.json`` and ``results.json``)."""
    test = _read_json(run / store.TEST)
    results = store.load_results(run)
    if results is None:
        verdict = "incomplete"
    elif isinstance(results.get("crashed"), str):
        verdict = "interrupted" if results["crashed"] == "interrupted" else "crashed"
    else:
        verdict = Verdict.from_json(results.get("valid")).value
    ops = (results or {}).get("ops", {})
    return {"test": run.parent.name, "stamp": run.name, "time": _when(run.name), "verdict": verdict,
            "workload": test.get("workload", "?"), "nemesis": test.get("nemesis", "?"), "seed": test.get("seed"),
            "nodes": test.get("nodes"), "ops": ops.get("invokes"), "files": [f for f in _SHOWN_FILES if (run / f).is_file()]}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _when(stamp: str) -> str:
    try:
        moment = datetime.strptime(stamp[:19], "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc)
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(title: str, body: str) -> web.Response:
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")
    return web.Response(text=text, content_type="text/html")


def _file_url(run: dict[str, Any], name: str) -> str:
    return f"/files/{quote(run['test'])}/{quote(run['stamp'])}/{quote(name)}"


def _badge(verdict: str) -> str:
    return f"<span class='verdict {verdict}'>{verdict.upper()}</span>"


class StoreBrowser:
    """The web application over one store directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/runs/{test}/{stamp}/", self.run_page)
        app.router.add_get("/files/{test}/{stamp}/{path:.+}", self.file)
        return app

    def _run_dir(self, request: web.Request) -> Path:
        run = (self.root / request.match_info["test"] / request.match_info["stamp"]).resolve()
        if run.parent.parent != self.root or not (run / store.TEST).is_file():
            raise web.HTTPNotFound(text="no such run")
        return run

    async def index(self, request: web.Request) -> web.Response:
        runs = [run_summary(run) for run in store.runs(self.root)]
        rows = []
        for r in runs:
            page = f"/runs/{quote(r['test'])}/{quote(r['stamp'])}/"
            files = " ".join(f"<a href='{_file_url(r, f)}'>{html.escape(f)}</a>" for f in r["files"])
            rows.append(f"<tr class='run'><td><a href='{page}'>{html.escape(r['time'])}</a></td>"
                        f"<td>{html.escape(r['test'])}</td><td class='workload'>{html.escape(str(r['workload']))}</td>"
                        f"<td class='nemesis'>{html.escape(str(r['nemesis']))}</td><td>{_badge(r['verdict'])}</td>"
                        f"<td>{r['nodes'] or ''}</td><td>{r['ops'] if r['ops'] is not None else ''}</td>"
                        f"<td>{r['seed'] if r['seed'] is not None else ''}</td><td class='files'>{files}</td></tr>")
        table = ("<table><tr><th>time</th><th>test</th><th>workload</th><th>nemesis</th><th>verdict</th><th>nodes</th>"
                 f"<th>ops</th><th>seed</th><th>files</th></tr>{''.join(rows)}</table>") if rows else \
            "<p>No runs yet: <code>chaos test</code> writes them here.</p>"
        return _page("chaos store", f"<h1>chaos store: {html.escape(str(self.root))}</h1>"
                                    f"<p>{len(runs)} run(s), newest first.</p>{table}")

    async def run_page(self, request: web.Request) -> web.Response:
        run = self._run_dir(request)
        r = run_summary(run)
        results = store.load_results(run) or {}
        lines = [f"{name}: {check.get('summary', check.get('valid'))}" for name, check in (results.get("checkers") or {}).items()]
        if isinstance(results.get("crashed"), str):
            lines.insert(0, f"the run did not finish: {results['crashed']}")
        images = "".join(f"<p><img alt='{f}' src='{_file_url(r, f)}'></p>" for f in r["files"] if f.endswith(".png"))
        logs = sorted(p.name for p in (run / "nodes").glob("*.log"))
        files = " ".join(f"<a href='{_file_url(r, f)}'>{html.escape(f)}</a>" for f in r["files"])
        files += " " + " ".join(f"<a href='{_file_url(r, 'nodes/' + f)}'>nodes/{html.escape(f)}</a>" for f in logs)
        body = (f"<p><a href='/'>all runs</a></p><h1>{html.escape(r['test'])} {html.escape(r['time'])} {_badge(r['verdict'])}</h1>"
                f"<p>workload {html.escape(str(r['workload']))}, nemesis {html.escape(str(r['nemesis']))}, "
                f"{r['nodes']} nodes, seed {r['seed']}</p><p class='files'>{files}</p>"
                f"<pre>{html.escape(chr(10).join(lines))}</pre>{images}")
        return _page(f"{r['test']} {r['stamp']}", body)

    async def file(self, request: web.Request) -> web.StreamResponse:
        run = self._run_dir(request)
        path = (run / request.match_info["path"]).resolve()
        if run not in path.parents or not path.is_file():
            raise web.HTTPNotFound(text="no such file")
        headers = {"Content-Type": "text/plain; charset=utf-8"} if path.suffix in (".log", ".jsonl", ".edn") else None
        return web.FileResponse(path, headers=headers)


async def serve(root: Path, host: str, port: int) -> None:
    """Serve ``root`` until SIGINT or SIGTERM; print the URL once listening."""
    runner = web.AppRunner(StoreBrowser(root).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"serving {root} on http://{host}:{bound}/ (Ctrl-C stops)", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    root = Path(args.store)
    if not root.is_dir():
        print(f"chaos serve: error: no store at {root}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(root, args.host, args.port))
    except OSError as exc:
        print(f"chaos serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="browse the store in a web browser",
                              description="Serve a web page listing every stored run with its verdict, workload, "
                                          "nemesis and time, linking its files and timeline. Ctrl-C stops it.")
    p.add_argument("--store", default="store", help="store directory (default store/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.set_defaults(func=run)
