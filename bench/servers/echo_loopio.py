"""An experiment, not a contender: no MCP SDK at all. Reads JSON-RPC lines from stdin with the
event loop (as retab_mcp/stdio.py does) and answers each request at once with a fixed
`tools/call`-shaped result, `initialize` included.

Timed next to the floor's no-op call, it separates what the pipes and the two processes' wake-ups
cost from what the SDK's per-request pipeline (dispatcher, runner, middleware, context, result
models) costs (docs/benchmarks.md).
"""

import asyncio
import json
import os
import sys

RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(0), "rb"))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(os.dup(1), "wb"))
    while line := await reader.readline():
        message = json.loads(line)
        if "id" in message and "method" in message:
            answer = {"jsonrpc": "2.0", "id": message["id"], "result": RESULT}
            transport.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
