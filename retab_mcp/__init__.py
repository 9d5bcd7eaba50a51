"""retab-mcp: an MCP server that lets LLM agents find, read, wait for and cancel Retab's
background runs (file blueprints, edits, and the other kinds of the endpoint table).

The public surface is small and imported lazily, so `retab-mcp sandbox` and the CLI's fast
paths do not pay for the MCP SDK's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retab_mcp._version import __version__

__all__ = [
    "ENDPOINTS",
    "CallFailed",
    "ErrorCode",
    "RetabClient",
    "RetabMCPServer",
    "Settings",
    "__version__",
]

if TYPE_CHECKING:
    from retab_mcp.client import RetabClient
    from retab_mcp.config import Settings
    from retab_mcp.endpoints import ENDPOINTS
    from retab_mcp.errors import CallFailed, ErrorCode
    from retab_mcp.server import RetabMCPServer

_HOMES = {
    "ENDPOINTS": "retab_mcp.endpoints",
    "CallFailed": "retab_mcp.errors",
    "ErrorCode": "retab_mcp.errors",
    "RetabClient": "retab_mcp.client",
    "RetabMCPServer": "retab_mcp.server",
    "Settings": "retab_mcp.config",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'retab_mcp' has no attribute {name!r}")
