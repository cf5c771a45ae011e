"""Run one node in its own process, driven by JSON lines on stdin (a test harness).

Each request line ``{"id": n, "op": "propose"|"read"|"status", ...}`` gets one response line
``{"id": n, "ok": value}`` or ``{"id": n, "error": {...}}``. The first line printed is
``{"ready": true}`` once the peer port is bound. EOF on stdin stops the node.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

from consensus.errors import ConsensusError
from consensus.node import Consistency, Node, NodeConfig
from consensus.testing.machines import default_machines


async def _handle(node: Node, request: dict[str, Any]) -> Any:
    op = request["op"]
    if op == "propose":
        return await node.propose(
            request["machine"], request["command"], idempotency_key=request.get("key"), timeout=request.get("timeout_s")
        )
    if op == "read":
        result = await node.read_result(
            request["machine"], request["query"], consistency=Consistency(request.get("consistency", "linearizable"))
        )
        return {"value": result.value, "index": result.index}
    if op == "status":
        status = dataclasses.asdict(node.status())
        status["role"] = node.status().role.value
        return status
    raise ValueError(f"unknown op {op!r}")


async def _serve(args: argparse.Namespace) -> None:
    config = NodeConfig(
        node_id=args.id,
        peers=args.peers.split(","),
        data_dir=args.data_dir,
        compaction_min_entries=args.compaction_min_entries,
    )
    node = Node(config, default_machines())
    await node.start()
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def answer(request: dict[str, Any]) -> None:
        try:
            response = {"id": request.get("id"), "ok": await _handle(node, request)}
        except ConsensusError as exc:
            response = {"id": request.get("id"), "error": exc.to_dict()}
        except Exception as exc:
            response = {"id": request.get("id"), "error": {"code": "internal", "message": repr(exc)}}
        sys.stdout.write(json.dumps(response, default=str) + "\n")
        sys.stdout.flush()

    tasks = set()
    try:
        while line := await reader.readline():
            task = asyncio.create_task(answer(json.loads(line)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--peers", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--compaction-min-entries", type=int, default=5000)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
