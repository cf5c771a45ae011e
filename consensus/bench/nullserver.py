"""A do-nothing HTTP/1.1 server: every request's body is read and answered ``{}``.

The bench measures the load client against it in the same run, so a reader can tell when a
system's figure is bounded by the client rather than by the system. It must cost less per
request than the client, or the "ceiling" would be its own: so it is a bare asyncio protocol on
uvloop (when installed) that parses only what it needs to find where each request ends
(``Content-Length``), not a web framework.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _NullProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:  # pipelined requests are answered in order
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        self.transport.close()
                        return
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            self.transport.write(_ANSWER)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_NullProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m consensus.bench.nullserver")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # asyncio's own loop: slower, still far cheaper than a framework
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
