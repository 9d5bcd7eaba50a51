"""MCP tasks (`io.modelcontextprotocol/tasks`, SEP-2663) backed by Retab's own runs: no task store.

Decisions, and why:
- Opt-in (`--tasks`): some hosts declare the extension by default, and must not start getting
  task handles unless the operator asked for them.
- Which calls: a get_ or cancel_ call with `wait_seconds > 0`, from a client that declared the
  extension on that very request (2026-07-28), is answered with a task when the run has not
  stopped after the call's first request (the cancel, or the first read): no waiting before the
  handle (actions.HAND_OFF). A run already stopped gets the ordinary result, as does every other
  call.
- No store: a Retab run already is a durable job, so the task id is the task. It seals
  (sealing.py, purpose "task") the run kind, run id, operation, `include_output`, creation time
  and a binding to the caller, under RETAB_MCP_SECRET_KEYS (over stdio, an ephemeral key). Any
  process holding the ring answers it, after a restart too; it expires after RETAB_MCP_TASK_TTL.
- The binding is a function of the request (`Binding`): by default a digest of the Retab key
  that request would use (the server's, or the caller's key header), so an OAuth subject can
  take its place. A task request from another caller is refused exactly like a tampered,
  expired or unknown id: -32602, one message.
- tasks/get re-reads the run with that request's own key, so Retab authorizes every poll. It
  answers `working` with Retab's status as the message, or `completed` with the envelope the
  tool would have returned; a failure that retrying cannot fix (a 404, a 403) is completed with
  the error envelope, a transient one keeps the task `working`. `pollIntervalMs` follows the
  wait loop's backoff by the task's age, and Retab's Retry-After.
- tasks/cancel acknowledges. A cancel's task sends the idempotent Retab cancel once more; a
  read's task sends nothing (a read-only tool must not gain a destructive effect) and goes on
  reporting the run. tasks/update acknowledges: no task here asks for input.
- Refused: 2025-11-25 requests with -32601 (the methods exist on 2026-07-28 only), a client that
  did not declare the extension on the request with -32021, an `Mcp-Name` header other than the
  task id with -32020. A request without `Mcp-Name` is served: fastmcp-tasks' client (which
  pydantic-ai drives) does not send it, and these ids need no routing to one replica.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp.types import INVALID_PARAMS, CallToolRequestParams, CallToolResult, RequestParams
from mcp_types.jsonrpc import HEADER_MISMATCH
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from retab_mcp.actions import FIRST_POLL_SECONDS, HAND_OFF, POLL_CAP_SECONDS, STATUS_ONLY, Upstream
from retab_mcp.admission import cut_short
from retab_mcp.client import run_path
from retab_mcp.config import Settings
from retab_mcp.endpoints import BY_TOOLSET, RUN_ID, Endpoint
from retab_mcp.errors import CallFailed, ErrorCode, bounded_line, run_subject
from retab_mcp.keys import call_key, caller_key, fingerprint
from retab_mcp.models import is_terminal
from retab_mcp.redaction import Redactor
from retab_mcp.results import Waited, failed, redacted, succeeded
from retab_mcp.sealing import KeyRing
from retab_mcp.server import AppState, api_key_for, call_log

logger = logging.getLogger(__name__)

EXTENSION_ID: Final = "io.modelcontextprotocol/tasks"
PURPOSE: Final = "task"
MODERN: Final = frozenset(MODERN_PROTOCOL_VERSIONS)
# One answer for every id that does not open as this caller's task: which of the reasons it was
# would tell an attacker what they hold.
UNKNOWN_TASK: Final = "Unknown task: the id is not one of this server's, has expired, or is not yours."

# Who a request is, for a task: a digest naming the caller, or None when it names no one.
Binding = Callable[[ServerRequestContext[Any, Any]], str | None]


class TaskParams(RequestParams):
    task_id: str


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any] | None = None


def request_headers(ctx: ServerRequestContext[Any, Any]) -> Mapping[str, str] | None:
    """The HTTP request's headers; None over stdio."""
    headers: Mapping[str, str] | None = getattr(ctx.request, "headers", None)
    return headers


def key_binding(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The Retab key this request's calls would use (the server's, else the caller's), as a digest."""
    settings: Settings = ctx.lifespan_context.settings
    key = call_key(settings.api_key, request_headers(ctx))
    return fingerprint("retab key " + key) if key else None


def poll_interval_ms(age: float, retry_after: float | None = None) -> int:
    """The wait loop's interval at this age of a task (0.5, 1, 2, then 4 s), or Retab's
    Retry-After when that is longer."""
    interval = polled = FIRST_POLL_SECONDS
    while polled <= age and interval < POLL_CAP_SECONDS:
        interval = min(interval * 2, POLL_CAP_SECONDS)
        polled += interval
    return round(max(interval, retry_after or 0.0) * 1000)


@dataclass(frozen=True, slots=True)
class Task:
    """What a task id opened to."""

    id: str
    endpoint: Endpoint
    run_id: str
    include_output: bool
    created: float
    binding: str


class Tasks(Extension):
    """The tasks extension, answered from the sealed id and Retab alone (see the top comment).

    `served` gives the row of a tool this process serves (an id for a tool it does not serve is
    refused as unknown); `binding` says who a request is."""

    identifier = EXTENSION_ID

    def __init__(
        self,
        settings: Settings,
        served: Callable[[object], Endpoint | None],
        *,
        binding: Binding = key_binding,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ring = (
            KeyRing(settings.secret_keys, clock=clock) if settings.secret_keys else KeyRing.ephemeral(clock=clock)
        )
        self.ttl = settings.task_ttl
        self.served = served
        self.binding = binding
        self.clock = clock

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", TaskParams, self.get, protocol_versions=MODERN),
            MethodBinding("tasks/update", UpdateTaskParams, self.update, protocol_versions=MODERN),
            MethodBinding("tasks/cancel", TaskParams, self.cancel, protocol_versions=MODERN),
        )

    # -- tools/call ---------------------------------------------------------------------------

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        binding = self.binding(ctx) if _declared(ctx) and ctx.protocol_version in MODERN else None
        if binding is None:
            return await call_next(ctx)
        taken: list[tuple[Endpoint, Mapping[str, Any], Any]] = []

        def hand_off(endpoint: Endpoint, arguments: Mapping[str, Any], body: Any) -> bool:
            taken.append((endpoint, arguments, body))
            return True

        token = HAND_OFF.set(hand_off)
        try:
            result = await call_next(ctx)
        finally:
            HAND_OFF.reset(token)
        if not taken:
            return result
        endpoint, arguments, body = taken[0]
        run_id = arguments[endpoint.kind.id_arg]
        created = self.clock()
        sealed = {
            "k": endpoint.kind.toolset,
            "o": endpoint.action,
            "r": run_id,
            "i": arguments["include_output"],
            "c": created,
            "b": binding,
        }
        task_id = self.ring.seal(PURPOSE, sealed, ttl=self.ttl)
        task = Task(task_id, endpoint, run_id, arguments["include_output"], created, binding)
        message = _redactor(ctx).text(_running(task, body.get("status")))
        return {"resultType": "task", **self._state(task, "working", message, poll_interval_ms(0.0))}

    # -- tasks/* ------------------------------------------------------------------------------

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        task = self._open(ctx, params.task_id)
        started = time.perf_counter()
        age = max(0.0, self.clock() - task.created)
        redactor = _redactor(ctx)
        upstream = None
        try:
            upstream, body = await self._read(ctx, task)
        except CallFailed as failure:
            if failure.retryable:
                why = f"Retab could not be read just now ({failure.code}); the run is polled again next time."
                state = self._state(task, "working", why, poll_interval_ms(age, failure.retry_after_seconds))
                _log(task, state, failure.http_status, started)
                return state
            result = failed(task.endpoint, task.run_id, failure)
        else:
            status = body.get("status")
            if is_terminal(status) is False:
                state = self._state(task, "working", redactor.text(_running(task, status)), poll_interval_ms(age))
                _log(task, state, upstream.http_status, started)
                return state
            try:
                result = succeeded(task.endpoint, body, include_output=task.include_output, waited=Waited(age))
            except CallFailed as failure:
                result = failed(task.endpoint, task.run_id, failure)
        envelope = redacted(result, redactor)
        state = self._state(task, "completed", None, None) | {"result": _wire(envelope)}
        _log(task, state, upstream.http_status if upstream else None, started)
        return state

    async def cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        task = self._open(ctx, params.task_id)
        if task.endpoint.action == "cancel":
            # Once more, as the call did: idempotent upstream, so asking again changes nothing else.
            # A read's task sends nothing: its tool is read-only, and a task must not change that.
            try:
                await self._upstream(ctx, task, "POST", run_path(task.endpoint.path, task.run_id), None, "cancel")
            except CallFailed as failure:
                logger.info(
                    "tasks/cancel of %s %s: Retab's cancel failed (%s)",
                    task.endpoint.kind.noun,
                    task.run_id,
                    failure.code,
                )
        return {}

    async def update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> dict[str, Any]:
        self._open(ctx, params.task_id)
        return {}

    # -- helpers ------------------------------------------------------------------------------

    def _open(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> Task:
        """The task `task_id` names, for this caller; MCPError otherwise."""
        require_client_extension(ctx, EXTENSION_ID)
        headers = request_headers(ctx)
        named = headers.get(MCP_NAME_HEADER) if headers is not None else None
        if named is not None and decode_header_value(named) != task_id:
            raise MCPError(
                code=HEADER_MISMATCH, message=f"{MCP_NAME_HEADER} header does not match the request's taskId"
            )
        payload = self.ring.unseal(PURPOSE, task_id)
        task = self._task(task_id, payload) if payload is not None else None
        binding = self.binding(ctx)
        if task is None or binding is None or not hmac.compare_digest(task.binding, binding):
            raise MCPError(code=INVALID_PARAMS, message=UNKNOWN_TASK)
        return task

    def _task(self, task_id: str, payload: Mapping[str, Any]) -> Task | None:
        kind = BY_TOOLSET.get(str(payload.get("k")))
        action, run_id, include_output, created, binding = (payload.get(name) for name in ("o", "r", "i", "c", "b"))
        if (
            kind is None
            or action not in ("cancel", "read")
            or not isinstance(run_id, str)
            or not RUN_ID.fullmatch(run_id)
        ):
            return None
        endpoint = self.served(kind.tool(action))
        if endpoint is None or not isinstance(include_output, bool) or not isinstance(created, int | float):
            return None
        if not isinstance(binding, str):
            return None
        return Task(task_id, endpoint, run_id, include_output, float(created), binding)

    async def _read(self, ctx: ServerRequestContext[Any, Any], task: Task) -> tuple[Upstream, dict[str, Any]]:
        """The run, read with this request's key: its status, and whole once stopped if the call
        asked for its output (the wait loop's reads, in one request or two)."""
        path = run_path(task.endpoint.kind.path, task.run_id)
        upstream, body = await self._upstream(ctx, task, "GET", path, STATUS_ONLY, "read")
        if is_terminal(body.get("status")) and task.include_output:
            upstream, body = await self._upstream(ctx, task, "GET", path, {"include_output": "true"}, "read")
        return upstream, body

    async def _upstream(
        self,
        ctx: ServerRequestContext[Any, Any],
        task: Task,
        method: Any,
        path: str,
        params: Mapping[str, str] | None,
        verb: str,
    ) -> tuple[Upstream, dict[str, Any]]:
        """One request about the task's run, admitted and inside its hard stop like a tool call."""
        state: AppState = ctx.lifespan_context
        began, deadline = anyio.current_time(), state.client.deadline()
        api_key = api_key_for(state.settings, request_headers(ctx))
        subject = run_subject(task.endpoint.kind.noun, task.run_id)
        async with state.gate.admitted(began) as slot:
            upstream = Upstream(state.client, api_key, deadline, idle=slot.idle)
            body = None
            with slot.scope:
                body = await upstream.send(method, path, params, verb=verb, subject=subject)
            if slot.scope.cancelled_caught:
                raise cut_short(slot)
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise CallFailed(
                ErrorCode.INVALID_RESPONSE, f"Retab answered with a {task.endpoint.kind.noun} without a status."
            )
        return upstream, body

    def _state(self, task: Task, status: str, message: str | None, poll_ms: int | None) -> dict[str, Any]:
        """The task's fields as the wire has them (a dict: `ttlMs` and the result pass as built)."""
        state: dict[str, Any] = {
            "taskId": task.id,
            "status": status,
            "createdAt": _iso(task.created),
            "lastUpdatedAt": _iso(self.clock()),
            "ttlMs": round(self.ttl * 1000),
        }
        if message is not None:
            state["statusMessage"] = message
        if poll_ms is not None:
            state["pollIntervalMs"] = poll_ms
        return state


def _declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """The client declared the extension on this request (2026-07-28 capabilities are per request)."""
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and EXTENSION_ID in capabilities.extensions)


def _redactor(ctx: ServerRequestContext[Any, Any]) -> Redactor:
    settings: Settings = ctx.lifespan_context.settings
    return Redactor([settings.api_key, settings.auth_token, caller_key(request_headers(ctx))])


def _running(task: Task, status: object) -> str:
    """What a working task says: Retab's status of the run (untrusted text, so bounded)."""
    return f"The {run_subject(task.endpoint.kind.noun, task.run_id)} is {bounded_line(str(status), 64)} at Retab."


def _wire(result: CallToolResult) -> dict[str, Any]:
    wire: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return wire


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _log(task: Task, state: Mapping[str, Any], http_status: int | None, started: float) -> None:
    """One JSON line per tasks/get at INFO, beside the calls' own (server.call_log)."""
    if not call_log.isEnabledFor(logging.INFO):
        return
    result = state.get("result") or {}
    envelope = result.get("structuredContent") or {}
    call_log.info(
        json.dumps(
            {
                "event": "task_poll",
                "tool": task.endpoint.tool,
                "id": task.run_id,
                "task_status": state["status"],
                "outcome": (envelope.get("error") or {}).get("code", "ok") if result else None,
                "upstream_status": http_status,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        )
    )
