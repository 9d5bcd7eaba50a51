"""The generated alternative: an MCP server that fastmcp builds from `bench/openapi.json`.

This is what a user gets from `FastMCP.from_openapi` with the documented setup: an httpx2 client
carrying the key and the base URL, each operation a tool (named like retab-mcp's so the
benchmark calls both the same way), served over stdio, or with `--http PORT` over Streamable
HTTP on loopback in stateless JSON mode. Reads RETAB_API_KEY and RETAB_API_BASE_URL like
retab-mcp.
"""

import json
import os
import sys
from pathlib import Path

import httpx2
from fastmcp import FastMCP

spec = json.loads((Path(__file__).resolve().parent.parent / "openapi.json").read_text())
client = httpx2.AsyncClient(
    base_url=os.environ.get("RETAB_API_BASE_URL", "https://api.retab.com"),
    headers={"Authorization": f"Bearer {os.environ.get('RETAB_API_KEY', '')}"},
    timeout=30.0,
)
server = FastMCP.from_openapi(
    spec,
    client=client,
    name="retab-openapi",
    mcp_names={"cancel_file_blueprint": "cancel_blueprint", "cancel_edit": "cancel_edit"},
)

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run(
            "http", host="127.0.0.1", port=int(sys.argv[2]), stateless_http=True, json_response=True, show_banner=False
        )
    else:
        server.run(show_banner=False)
