"""The MCP SDK's internals retab-mcp reaches, all at this one seam.

Read from mcp 2.3.0 (pyproject allows `mcp>=2.3,<3`). Each is private to the SDK, has no public
equivalent there, and is used for a reason the README promises:
- `MCPServer._lowlevel_server`, the low-level `Server` an MCPServer drives: stdio.py runs its
  loop on its own pipe transport (as the SDK's `run_stdio_async` does on a slower one), and
  server.py registers its own `resources/read` handler on it (`add_request_handler`), so that a
  filled document is not decoded and encoded again, and keeps its MIME type.
- `MCPServer._handle_read_resource`: the SDK's own answer to `resources/read`, for every URI that
  handler does not serve.
- `StreamableHTTPSessionManager._session_owners` (session id -> `AuthorizationContext`): who
  opened each open `--stateful` session, counted against the per-key share of sessions (http.py).
- `StreamableHTTPSessionManager.json_response`, read once per request (in that request's task) to
  build its transport: `answer_per_request` makes it read the request's own choice (streaming.py:
  JSON, or SSE when the call asked for progress), as the SDK has no per-request switch.

tests/test_sdk.py checks that the installed SDK still has each, with the shape used here, so an
upgrade that moves one fails there, loudly, rather than at a user's first call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import InputRequiredResult, ReadResourceRequestParams, ReadResourceResult


def lowlevel(server: MCPServer[Any]) -> Server[Any]:
    """The low-level server `server` drives."""
    return server._lowlevel_server


async def sdk_read_resource(
    server: MCPServer[Any], ctx: ServerRequestContext[Any], params: ReadResourceRequestParams
) -> ReadResourceResult | InputRequiredResult:
    """The SDK's own answer to `resources/read` (for a URI retab-mcp does not serve itself)."""
    return await server._handle_read_resource(ctx, params)


def session_owners(manager: StreamableHTTPSessionManager) -> Iterator[str]:
    """The client id that opened each open session of `manager`."""
    return (owner["client_id"] for owner in manager._session_owners.values())


def answer_per_request(manager: StreamableHTTPSessionManager, choice: ContextVar[bool | None]) -> None:
    """Make `manager` answer each request as JSON or not as `choice` holds in that request's task
    (None: the manager's own setting)."""

    class PerRequestAnswers(type(manager)):  # type: ignore[misc]
        @property
        def json_response(self) -> bool:
            chosen = choice.get()
            default: bool = self.__dict__.get("json_response", True)
            return default if chosen is None else chosen

        @json_response.setter
        def json_response(self, value: bool) -> None:
            self.__dict__["json_response"] = value

    manager.__class__ = PerRequestAnswers
