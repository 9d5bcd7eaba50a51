# The retab-mcp server: two tools, cancel_blueprint and cancel_edit, that stop background Retab
# runs and tell the agent what state each run is in afterwards.
#
# Design decisions, and why:
# - Tools are rows of the endpoint table (endpoints.py). Each row becomes a plain async function
#   whose signature (the id argument under the row's name, `include_output`) is generated, so
#   the SDK derives the inputSchema from type hints and `Field`s as for a hand-written tool,
#   without two copies of the same body.
# - Every outcome is one envelope (results.py), errors included, as `structuredContent` that
#   validates against the tool's `outputSchema` and as the same JSON in text. Bad arguments are
#   answered with that envelope too: the SDK's own argument validation answers with bare text,
#   so `RetabMCPServer.call_tool` validates first, with the same model the SDK would use.
# - An unknown tool name is a malformed request, answered with JSON-RPC -32602 as the spec says
#   (MCPServer itself answers it with an isError result).
# - One `RetabClient` (one httpx connection pool) per process, opened in the lifespan, which
#   runs once per process on every transport. `--sandbox` starts the embedded Retab sandbox
#   there too; its code is imported only then.
# - Whose key: the server's RETAB_API_KEY, or, over HTTP without one, the key the caller sent
#   with that very request (`ctx.headers`), so concurrent callers' keys never meet (http.py).
# - Nothing here writes to stdout: it is the protocol channel. Logs go to stderr (logs.py).

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError

from retab_mcp import __version__
from retab_mcp.client import RUN_ID_PATTERN, RetabClient, run_path
from retab_mcp.config import Settings
from retab_mcp.endpoints import ENDPOINTS, Endpoint
from retab_mcp.errors import CallFailed, ErrorCode
from retab_mcp.results import failed, invalid_arguments, result_model, succeeded

logger = logging.getLogger(__name__)
# One JSON line per tool call at INFO (tool, id, outcome, upstream status, attempts, latency): the
# operational record of an HTTP deployment. Never the key.
call_log = logging.getLogger("retab_mcp.calls")

INSTRUCTIONS = (
    "Tools to stop background Retab runs: cancel_blueprint for file blueprint runs (ids like "
    "fbp_...), cancel_edit for edit runs (ids like edt_... or edit_...). Each answers with the "
    "run's status after the cancel and, on failure, an error code with a hint for the next step."
)

# Cancel changes the run (not read-only), cannot be undone (destructive), is safe to repeat
# (idempotent) and talks to an outside service (open world).
ANNOTATIONS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)

IncludeOutput = Annotated[
    bool,
    Field(
        description="Also return the run's `output` (the blueprint payload, or the filled form "
        "fields and PDF). Off by default: output can be megabytes, and cancelling rarely needs it. "
        "Even when on, data URLs over 64 KiB are replaced by a short descriptor.",
    ),
]


@dataclass(slots=True)
class AppState:
    """What the lifespan opens once per process and every tool call uses."""

    settings: Settings
    client: RetabClient


@asynccontextmanager
async def lifespan(server: MCPServer[AppState]) -> AsyncIterator[AppState]:
    assert isinstance(server, RetabMCPServer)
    settings = server.config
    async with AsyncExitStack() as stack:
        if settings.sandbox:
            from retab_mcp.sandbox import SANDBOX_API_KEY, serve_in_thread

            # Never the user's real key: the sandbox records what it is sent.
            sandbox = stack.enter_context(serve_in_thread())
            settings = replace(settings, base_url=sandbox.base_url, api_key=SANDBOX_API_KEY)
        elif not settings.api_key and settings.transport == "stdio":
            logger.warning(
                "RETAB_API_KEY is not set: the tools are listed, but every call will answer "
                "configuration_error until it is set."
            )
        client = await stack.enter_async_context(RetabClient(settings))
        server.state = AppState(settings, client)
        try:
            yield server.state
        finally:
            server.state = None


class RetabMCPServer(MCPServer[AppState]):
    """MCPServer whose tool calls always answer with the tool's envelope (see the top comment)."""

    def __init__(self, settings: Settings, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
        self.config = settings
        # Set while the lifespan runs: the upstream client is open. What /readyz reports.
        self.state: AppState | None = None
        self._tools = {endpoint.tool: _build_tool(endpoint) for endpoint in endpoints}
        super().__init__(
            "retab-mcp",
            title="Retab",
            version=__version__,
            instructions=INSTRUCTIONS,
            website_url="https://docs.retab.com",
            tools=[tool for tool, _ in self._tools.values()],
            lifespan=lifespan,
            log_level=settings.log_level,
        )

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        entry = self._tools.get(name)
        if entry is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}")
        tool, endpoint = entry
        try:
            tool.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            run_id = arguments.get(endpoint.id_arg)
            return failed(endpoint, run_id if isinstance(run_id, str) else "", invalid_arguments(endpoint, exc))
        return await super().call_tool(name, arguments, context)


async def cancel(
    endpoint: Endpoint, run_id: str, include_output: bool, state: AppState, headers: Mapping[str, str] | None
) -> CallToolResult:
    """The body of every tool: one POST, and the envelope for whatever came back."""
    started = time.perf_counter()
    attempts, http_status = 0, None
    try:
        api_key = _api_key(state.settings, headers)
        reply = await state.client.post(
            run_path(endpoint.path, run_id), api_key=api_key, noun=endpoint.noun, run_id=run_id
        )
        attempts, http_status = reply.attempts, reply.http_status
        result = succeeded(endpoint, reply.body, include_output=include_output)
    except CallFailed as failure:
        attempts, http_status = failure.attempts or attempts, failure.http_status or http_status
        result = failed(endpoint, run_id, failure)
    except Exception:
        # A bug here must still answer the call with an envelope; the traceback stays on stderr.
        logger.exception("%s(%r) failed unexpectedly", endpoint.tool, run_id)
        bug = CallFailed(ErrorCode.INTERNAL_ERROR, "retab-mcp failed while handling the call.")
        result = failed(endpoint, run_id, bug)
    if call_log.isEnabledFor(logging.INFO):
        envelope = result.structured_content or {}
        error = envelope.get("error") or {}
        call_log.info(
            json.dumps(
                {
                    "event": "tool_call",
                    "tool": endpoint.tool,
                    "id": run_id,
                    "outcome": error.get("code", "ok"),
                    "status": envelope.get("status"),
                    "upstream_status": http_status,
                    "attempts": attempts,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                }
            )
        )
    return result


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def caller_key(headers: Mapping[str, str] | None) -> str | None:
    """The Retab key an HTTP caller sent: `Authorization: Bearer <key>` or `Api-Key: <key>`."""
    if not headers:
        return None
    return bearer_token(headers) or headers.get("api-key", "").strip() or None


def _api_key(settings: Settings, headers: Mapping[str, str] | None) -> str:
    # A server key wins: then the caller's Authorization header carries the server's auth token,
    # which must never be sent to Retab.
    key = settings.api_key or caller_key(headers)
    if not key:
        raise CallFailed(
            ErrorCode.CONFIGURATION_ERROR,
            "No Retab API key: RETAB_API_KEY is not set in this server's environment. Nothing was sent.",
        )
    return key


def _build_tool(endpoint: Endpoint) -> tuple[Tool, Endpoint]:
    """The MCP tool for one table row: a function with the row's argument name, and its schema."""
    run_id_type = Annotated[
        str,
        Field(
            description=f"Id of the {endpoint.noun} run to cancel, exactly as Retab returned it "
            f"(for example {endpoint.id_example}).",
            pattern=RUN_ID_PATTERN,
            min_length=1,
            max_length=128,
        ),
    ]

    async def tool(ctx: Context[AppState, Any], **arguments: Any) -> CallToolResult:
        state: AppState = ctx.request_context.lifespan_context
        return await cancel(endpoint, arguments[endpoint.id_arg], arguments["include_output"], state, ctx.headers)

    keyword = inspect.Parameter.KEYWORD_ONLY
    tool.__name__ = endpoint.tool
    tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(endpoint.id_arg, keyword, annotation=run_id_type),
            inspect.Parameter("include_output", keyword, annotation=IncludeOutput, default=False),
            inspect.Parameter("ctx", keyword, annotation=Context),
        ],
        return_annotation=Annotated[CallToolResult, result_model(endpoint)],
    )
    built = Tool.from_function(
        tool,
        name=endpoint.tool,
        title=endpoint.title,
        description=endpoint.description,
        context_kwarg="ctx",
        annotations=ANNOTATIONS,
    )
    return built, endpoint
