"""The floor: a bare `MCPServer` with one no-op tool.

Nothing else is imported, configured or validated, so its start-up is what any server built on
the same SDK pays at least. Over stdio by default; `--http PORT` serves Streamable HTTP on
loopback in stateless JSON mode, as the SDK's own floor for the HTTP figures.
"""

import sys

from mcp.server import MCPServer

server = MCPServer("floor")


@server.tool()
def noop() -> str:
    """Do nothing."""
    return "ok"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]), stateless_http=True, json_response=True)
    else:
        server.run("stdio")
