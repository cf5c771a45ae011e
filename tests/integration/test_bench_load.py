"""The load client against real servers: counts, budgets, and failures kept three-valued."""

from __future__ import annotations

import time

import pytest
from aiohttp import web

from consensus.bench import load
from consensus.bench.load import LoadSpec, run_load
from consensus.bench.procs import NullServer, free_ports


def test_the_load_client_process_measures_a_do_nothing_server():
    with NullServer() as null:
        result = load.run(LoadSpec("null", [null.url], concurrency=4, duration=0.5, warmup=0.1))
        budget = load.run(LoadSpec("null", [null.url], concurrency=4, duration=30, warmup=0, ops=50))
    assert result["ops"] > 0 and result["errors"] == {} and result["failed"] == result["unknown"] == 0
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["rate"] == pytest.approx(result["ops"] / result["seconds"], rel=0.01)
    assert budget["ops"] == 50 and budget["seconds"] < 30  # stopped by the budget, not the clock


def test_back_to_back_loads_share_one_client_process_and_close_stops_it():
    with NullServer() as null:
        load.run(LoadSpec("null", [null.url], concurrency=2, duration=0.2, warmup=0))
        first = load._shared.proc
        again = load.run(LoadSpec("null", [null.url], concurrency=2, duration=0.2, warmup=0))
        assert load._shared.proc is first and first.poll() is None and again["ops"] > 0
        load.close()
        assert first.poll() is not None and load._shared.proc is None
        assert load.run(LoadSpec("null", [null.url], concurrency=1, duration=0.2, warmup=0))["ops"] > 0  # a new one
    load.close()


def test_a_load_told_a_time_stops_at_its_first_success_issued_after_it():
    with NullServer() as null:
        client = load.LoadProcess()
        client.start(LoadSpec("null", [null.url], concurrency=2, duration=60, warmup=0, timeline=True, stop_on_line=True))
        try:
            since = time.monotonic()
            client.stop_at_first_success_since(since)
            result = client.result()
        finally:
            client.kill()
    assert result["seconds"] < 60 and result["ops"] >= 1  # ended by the first success, not by the clock
    assert max(start for start, _ in result["timeline"]) >= since


def test_a_closed_port_is_a_definite_failure_and_a_bad_spec_a_clear_error():
    port = free_ports(1)[0]
    result = load.run(LoadSpec("null", [f"http://127.0.0.1:{port}"], concurrency=2, duration=0.3, warmup=0))
    assert result["ops"] == 0 and set(result["errors"]) == {"connect"}
    assert result["failed"] == sum(result["errors"].values()) > 0 and result["unknown"] == 0
    with pytest.raises(ValueError, match="unknown workload"):
        LoadSpec("nope", ["http://127.0.0.1:1"]).check()


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_ports(1)[0]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_indeterminate_answers_are_unknown_and_unavailable_ones_failures():
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] % 2:
            return web.json_response({"error": {"code": "indeterminate", "message": "?", "definite": False}}, status=504)
        return web.json_response({"error": {"code": "unavailable", "message": "no leader", "definite": True}}, status=503)

    runner, url = await _serve(handler)
    try:
        result = await run_load(LoadSpec("rw-incr", [url], concurrency=1, duration=0.3, warmup=0))
    finally:
        await runner.cleanup()
    assert result["ops"] == 0
    assert result["errors"]["504 indeterminate"] == result["unknown"] > 0
    assert result["errors"]["503 unavailable"] == result["failed"] > 0


async def test_rotating_writers_move_off_a_dead_node_and_record_when_they_succeed():
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"name": "x", "value": 1})

    runner, url = await _serve(handler)
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    try:
        result = await run_load(LoadSpec("rw-incr", [dead, url], concurrency=3, duration=0.3, warmup=0, rotate=True,
                                         spread=False, timeline=True))
    finally:
        await runner.cleanup()
    assert result["errors"]["connect"] >= 1 and result["ops"] > 0
    assert len(result["timeline"]) == result["ops"]
    assert all(result["began"] <= start <= end for start, end in result["timeline"])
