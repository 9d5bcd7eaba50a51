"""An experiment, not a contender: the floor server with stdin and stdout served by the event
loop (asyncio pipe transports) instead of the SDK's default, which hands every line read and
every write to a worker thread (anyio.wrap_file). Same MCPServer, same no-op tool, same
`stdio_server()` framing and JSON-RPC; only where the bytes are read and written differs.

The per-call suite times its no-op call next to the floor's, which measures what the SDK's
thread hops cost per call (docs/benchmarks.md). It skips the SDK's descriptor diversion (fd 1
pointed at stderr while serving) and runs on POSIX pipes only: an experiment, not a server.
"""

import asyncio
import os

from mcp.server import MCPServer
from mcp.server.stdio import stdio_server

server = MCPServer("floor")


@server.tool()
def noop() -> str:
    """Do nothing."""
    return "ok"


class _Lines:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> "_Lines":
        return self

    async def __anext__(self) -> str:
        line = await self._reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class _Writer:
    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport

    async def write(self, data: str) -> None:
        self._transport.write(data.encode("utf-8"))

    async def flush(self) -> None:
        return None


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(0), "rb"))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(os.dup(1), "wb"))
    lowlevel = server._lowlevel_server
    async with stdio_server(stdin=_Lines(reader), stdout=_Writer(transport)) as (read_stream, write_stream):  # type: ignore[arg-type]
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


if __name__ == "__main__":
    asyncio.run(main())
