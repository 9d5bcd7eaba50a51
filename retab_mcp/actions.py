"""What a tool call does, for every row of the endpoint table: the request, and the wait.

- One request per action: `cancel` POSTs, `read` GETs the run, `list` GETs a page of runs.
- `wait_seconds` (cancel and read): while the run has not stopped, poll its status with the
  cheap status-only read (`include_output=false`, served from cache for in-flight runs) on a
  backoff, and answer as soon as it stops or the wait is over. One loop, shared by every tool.
- One deadline per tool call (`RETAB_MCP_CALL_TIMEOUT`) covers every request, retry and poll:
  the wait can never take a call past it, and the schema's `wait_seconds` maximum leaves room
  for the requests around the wait (`max_wait_seconds`).
- A poll that fails after the run was seen does not turn a cancel that worked into an error:
  the answer is the last state seen, and its note says the wait ended early.
- Progress (`notifications/progress`, when the call asked for it) follows each read that found
  the run still going, never the read that found it stopped: the answer comes next instead.
- When the client cancels the call (`notifications/cancelled`), the SDK cancels this task: the
  sleep or request in progress is interrupted, and nothing more is sent.
- A call that may answer with an MCP task (tasks.py) sets `HAND_OFF`: when the run has not
  stopped after the call's first request, the hand-off takes it and the call answers at once,
  without waiting; the task follows the run from there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal

from mcp.types import CallToolResult

from retab_mcp.client import RetabClient, run_path
from retab_mcp.config import Settings
from retab_mcp.endpoints import Endpoint, RunKind
from retab_mcp.errors import CallFailed, ErrorCode, run_subject
from retab_mcp.models import is_terminal
from retab_mcp.results import Waited, listed, succeeded

# (elapsed seconds, total seconds, message): `Context.report_progress`, which sends
# notifications/progress only when the request carried a progressToken.
Progress = Callable[[float, float | None, str | None], Awaitable[None]]

FIRST_POLL_SECONDS: Final = 0.5
POLL_CAP_SECONDS: Final = 4.0
STATUS_ONLY: Final = {"include_output": "false"}
# (endpoint, validated arguments, the run as the first request found it) -> True when a task takes
# the wait over. Set by tasks.py around a call from a client that can be answered with a task.
HandOff = Callable[[Endpoint, Mapping[str, Any], Any], bool]
HAND_OFF: ContextVar[HandOff | None] = ContextVar("hand_off", default=None)


def max_wait_seconds(settings: Settings) -> int:
    """The largest `wait_seconds` a call accepts: its budget less a reserve for the requests
    around the wait (the cancel before it, a poll in flight when it ends, a final read)."""
    return max(0, int(settings.call_timeout - min(5.0, settings.call_timeout / 5)))


@dataclass(slots=True)
class Upstream:
    """One tool call's line to Retab: its key, its deadline, and what it has sent so far."""

    client: RetabClient
    api_key: str
    deadline: float
    # How the wait sleeps between polls (the server's: without holding an admission slot).
    idle: Callable[[float], Awaitable[None]] | None = None
    requests: int = 0
    http_status: int | None = None
    # The last run Retab answered with, for an answer when the call is cut short (shutdown).
    last_run: Any = None

    async def send(
        self,
        method: Literal["GET", "POST"],
        path: str,
        params: Mapping[str, str] | None,
        *,
        verb: str,
        subject: str,
    ) -> Any:
        try:
            reply = await self.client.request(
                method,
                path,
                params=params,
                api_key=self.api_key,
                verb=verb,
                subject=subject,
                deadline=self.deadline,
            )
        except CallFailed as failure:
            self.requests += failure.attempts
            self.http_status = failure.http_status or self.http_status
            raise
        self.requests += reply.attempts
        self.http_status = reply.http_status
        return reply.body


async def perform(
    endpoint: Endpoint, arguments: Mapping[str, Any], upstream: Upstream, progress: Progress
) -> CallToolResult:
    """The envelope for one tool call with validated `arguments`; raises `CallFailed`."""
    kind = endpoint.kind
    if endpoint.action == "list":
        query = {"limit": str(arguments["limit"]), "order": "desc"}
        query |= {name: arguments[name] for name in ("after", *kind.list_filters) if arguments.get(name)}
        body = await upstream.send("GET", endpoint.path, query, verb="list", subject=kind.plural)
        return listed(endpoint, body, status_filter=arguments.get("status"))

    run_id: str = arguments[kind.id_arg]
    include_output: bool = arguments["include_output"]
    wait_seconds: float = arguments["wait_seconds"]
    path = run_path(endpoint.path, run_id)
    params = None if endpoint.action == "cancel" else {"include_output": str(include_output).lower()}
    body = upstream.last_run = await upstream.send(
        endpoint.method, path, params, verb=endpoint.action, subject=run_subject(kind.noun, run_id)
    )
    waited = None
    if wait_seconds > 0 and is_terminal(_status(body)) is False:
        if (hand_off := HAND_OFF.get()) is not None:
            at_once = succeeded(endpoint, body, include_output=include_output)  # raises if it is no run
            if hand_off(endpoint, arguments, body):
                return at_once
        body, waited = await wait_until_stopped(kind, run_id, body, wait_seconds, upstream, progress)
        if include_output and is_terminal(_status(body)) and waited.interrupted_by is None:
            # The polls read status only: now that the run has stopped, read it whole, once.
            body = await _read(kind, run_id, upstream, {"include_output": "true"}, body, waited)
    return succeeded(endpoint, body, include_output=include_output, waited=waited)


async def wait_until_stopped(
    kind: RunKind, run_id: str, body: Any, wait_seconds: float, upstream: Upstream, progress: Progress
) -> tuple[Any, Waited]:
    """Poll the run's status until it stops or `wait_seconds` are over; (last body, how it went)."""
    clock = upstream.client.clock
    started = clock()
    until = min(started + wait_seconds, upstream.deadline)
    interval = FIRST_POLL_SECONDS
    waited = Waited(0.0)
    await progress(0.0, wait_seconds, f"{kind.noun} {run_id}: {_status(body)}")
    while is_terminal(_status(body)) is False and (left := until - clock()) > 0:
        await (upstream.idle or upstream.client.sleep)(min(interval, left))
        interval = min(interval * 2, POLL_CAP_SECONDS)
        body = await _read(kind, run_id, upstream, STATUS_ONLY, body, waited)
        waited.seconds = clock() - started
        if waited.interrupted_by is not None or is_terminal(_status(body)) is not False:
            # The answer follows at once. A progress report sent now would reach hosts that
            # handle the answer first (Claude Code) after its token is gone: a connection error.
            break
        await progress(
            round(min(waited.seconds, wait_seconds), 1), wait_seconds, f"{kind.noun} {run_id}: {_status(body)}"
        )
    waited.seconds = clock() - started
    return body, waited


async def _read(
    kind: RunKind, run_id: str, upstream: Upstream, params: Mapping[str, str], last: Any, waited: Waited
) -> Any:
    """The run read again, or `last` with the failure recorded in `waited` when the read fails."""
    try:
        body = await upstream.send(
            "GET", run_path(kind.path, run_id), params, verb="read", subject=run_subject(kind.noun, run_id)
        )
    except CallFailed as failure:
        waited.interrupted_by = failure
        return last
    if not isinstance(_status(body), str):
        waited.interrupted_by = CallFailed(
            ErrorCode.INVALID_RESPONSE, f"Retab answered with a {kind.noun} without a status."
        )
        return last
    upstream.last_run = body
    return body


def _status(body: Any) -> Any:
    return body.get("status") if isinstance(body, dict) else None
