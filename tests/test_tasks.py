"""MCP tasks (--tasks): a waiting call answered with a task id that seals the Retab run, polled
with tasks/get, with no task store.

The client is the SDK's own, with a tasks result claim (what a tasks-aware client declares), in
memory and over HTTP against real server processes; the run that stops slowly is the sandbox's
`edt_stopping01` (it stops 3 s of sandbox time after its cancel; tests advance that clock).
Every request the server sends Retab is in the sandbox's log, so "nothing was sent" is checked
there. pydantic-ai, through fastmcp's tasks support, drives a task end to end over HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Literal

import httpx
import httpx2
import pytest
from mcp.client import Client, ClientExtension, ResultClaim
from mcp.client.extension import ClaimContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, Request, RequestParams, Result

from retab_mcp.config import MIN_SECRET_CHARS, Settings
from retab_mcp.sandbox import Fault, RunningSandbox
from retab_mcp.sealing import MIN_SECRET_CHARS as SEALING_MIN_SECRET_CHARS
from retab_mcp.sealing import KeyRing
from retab_mcp.server import RetabMCPServer
from retab_mcp.tasks import poll_interval_ms
from tests.support import http_server

pytestmark = pytest.mark.anyio

EXTENSION = "io.modelcontextprotocol/tasks"
SECRETS = ("test-secret-for-task-ids-0123456789abcdef",)
STOPPING = "edt_stopping01"  # stops 3 s of sandbox time after its cancel
RUNNING = "edt_running01"  # in progress for an hour
KEY_A = "rt_test_tasks_callerA"
KEY_B = "rt_test_tasks_callerB"


class TaskCreated(Result):
    """The claimed tools/call result: a task handle."""

    result_type: Literal["task"]
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class TaskState(Result):
    """What tasks/get answers."""

    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None


class TaskParams(RequestParams):
    task_id: str


class TaskRequest(Request[TaskParams, str]):
    """tasks/get, tasks/cancel or tasks/update, with `Mcp-Name: <taskId>` over HTTP as the spec says."""

    name_param = "taskId"


async def unresolved(created: TaskCreated, ctx: ClaimContext) -> CallToolResult:
    raise AssertionError("these tests take the task handle itself (allow_claimed=True)")


class TasksClaim(ClientExtension):
    """Declares the tasks extension on every request, and claims `resultType: "task"`."""

    identifier = EXTENSION

    def claims(self) -> tuple[ResultClaim[Any], ...]:
        return (ResultClaim(result_type="task", model=TaskCreated, resolve=unresolved),)


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> TaskCreated | CallToolResult:
    result = await client.session.call_tool(tool, arguments, allow_claimed=True)
    assert isinstance(result, TaskCreated | CallToolResult), result
    return result


async def task(client: Client, method: str, task_id: str, model: type[Result] = TaskState) -> Any:
    request = TaskRequest(method=method, params=TaskParams(task_id=task_id))
    return await client.session.send_request(request, model)


@pytest.fixture
def tasks_settings(settings: Settings) -> Settings:
    return replace(settings, tasks=True, secret_keys=SECRETS)


@asynccontextmanager
async def connected(settings: Settings, mode: str = "auto", declare: bool = True) -> AsyncIterator[Client]:
    async with Client(RetabMCPServer(settings), mode=mode, extensions=[TasksClaim()] if declare else []) as client:
        yield client


def upstream(sandbox: RunningSandbox) -> list[tuple[str, str]]:
    return [(request.method, request.path) for request in sandbox.sandbox.recorded()]


def without_wait(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope less what differs between two answers about the same run: how long each
    waited, and Retab's request id."""
    error = envelope.get("error")
    fields = {name: value for name, value in envelope.items() if name != "waited_seconds"}
    return fields | {"error": {**error, "request_id": None} if error else error}


# -- a task from the call, polled to its end ----------------------------------------------------


async def test_a_waiting_cancel_of_a_slow_run_is_a_task_that_polls_to_the_tools_own_envelope(
    tasks_settings: Settings, sandbox: RunningSandbox
) -> None:
    async with connected(tasks_settings) as client:
        started = time.monotonic()
        created = await call(client, "cancel_edit", {"edit_id": STOPPING, "wait_seconds": 4})
        assert isinstance(created, TaskCreated), created
        assert time.monotonic() - started < 2, "the handle comes at once, without waiting"
        assert (created.status, created.ttl_ms, created.poll_interval_ms) == ("working", 3_600_000, 500)
        assert "in_progress" in (created.status_message or "")
        assert upstream(sandbox) == [("POST", f"/v1/edits/{STOPPING}/cancel")], "only the call's first request"

        working = await task(client, "tasks/get", created.task_id)
        assert (working.task_id, working.status, working.result) == (created.task_id, "working", None)
        assert "in_progress" in (working.status_message or "")
        assert working.poll_interval_ms in (500, 1000)

        sandbox.sandbox.advance(5)
        done = await task(client, "tasks/get", created.task_id)
        assert (done.status, done.created_at) == ("completed", created.created_at)
        assert done.result is not None
        envelope = done.result["structuredContent"]
        assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, "cancelled", True)
        # Exactly what the tool itself answers about the stopped run, text included.
        direct = await client.call_tool("cancel_edit", {"edit_id": STOPPING})
        assert direct.structured_content is not None
        assert without_wait(envelope) == without_wait(direct.structured_content)
        assert done.result["isError"] is False
        assert json.loads(done.result["content"][-1]["text"]) == envelope
        capabilities = client.server_capabilities
    assert capabilities is not None
    assert EXTENSION in (capabilities.extensions or {})


async def test_a_read_with_output_completes_with_the_output(tasks_settings: Settings, sandbox: RunningSandbox) -> None:
    async with connected(tasks_settings) as client:
        await client.call_tool("cancel_edit", {"edit_id": STOPPING})
        created = await call(client, "get_edit", {"edit_id": STOPPING, "include_output": True, "wait_seconds": 3})
        assert isinstance(created, TaskCreated)
        sandbox.sandbox.advance(5)
        done = await task(client, "tasks/get", created.task_id)
        assert done.status == "completed"
        envelope = done.result["structuredContent"]
        assert (envelope["status"], envelope["output_omitted"]) == ("cancelled", False)
        direct = await client.call_tool("get_edit", {"edit_id": STOPPING, "include_output": True})
        assert without_wait(envelope) == without_wait(direct.structured_content or {})


async def test_a_stopped_run_or_a_call_without_wait_gets_the_ordinary_result(tasks_settings: Settings) -> None:
    async with connected(tasks_settings) as client:
        stopped = await call(client, "get_edit", {"edit_id": "edt_completed01", "wait_seconds": 4})
        at_once = await call(client, "cancel_edit", {"edit_id": STOPPING})
        listed = await call(client, "list_edits", {})
    assert isinstance(stopped, CallToolResult)
    assert (stopped.structured_content or {})["status"] == "completed"
    assert isinstance(at_once, CallToolResult)
    assert (at_once.structured_content or {})["status"] == "in_progress"
    assert isinstance(listed, CallToolResult)


# -- who gets tasks, and the errors of those who do not -------------------------------------------


async def test_without_tasks_a_declaring_client_waits_as_ever_and_tasks_methods_are_unknown(
    settings: Settings, sandbox: RunningSandbox
) -> None:
    async with connected(settings) as client:
        result = await call(client, "cancel_edit", {"edit_id": STOPPING, "wait_seconds": 1})
        with pytest.raises(MCPError) as unknown:
            await task(client, "tasks/get", "v1.anything")
        capabilities = client.server_capabilities
    assert isinstance(result, CallToolResult)
    assert (result.structured_content or {})["waited_seconds"] >= 1
    assert unknown.value.error.code == -32601
    assert EXTENSION not in (capabilities.extensions or {} if capabilities else {})


async def test_a_client_that_does_not_declare_the_extension_waits_and_gets_32021(tasks_settings: Settings) -> None:
    async with connected(tasks_settings, declare=False) as client:
        result = await client.call_tool("cancel_edit", {"edit_id": STOPPING, "wait_seconds": 1})
        with pytest.raises(MCPError) as undeclared:
            await task(client, "tasks/get", "v1.anything")
    assert (result.structured_content or {})["waited_seconds"] >= 1
    assert undeclared.value.error.code == -32021


async def test_a_legacy_client_waits_and_gets_32601(tasks_settings: Settings) -> None:
    async with connected(tasks_settings, mode="legacy") as client:
        result = await client.call_tool("cancel_edit", {"edit_id": STOPPING, "wait_seconds": 1})
        with pytest.raises(MCPError) as legacy:
            await task(client, "tasks/get", "v1.anything")
    assert (result.structured_content or {})["waited_seconds"] >= 1
    assert legacy.value.error.code == -32601


# -- ids that are not this caller's task ----------------------------------------------------------


async def test_tampered_expired_and_unknown_ids_are_refused_alike(tasks_settings: Settings) -> None:
    ring = KeyRing(SECRETS)
    async with connected(tasks_settings) as client:
        created = await call(client, "cancel_edit", {"edit_id": STOPPING, "wait_seconds": 4})
        assert isinstance(created, TaskCreated)
        genuine = created.task_id
        payload = ring.unseal("task", genuine)
        assert payload is not None
        payload.pop("exp")
        expired = KeyRing(SECRETS, clock=lambda: time.time() - 7200).seal("task", payload, ttl=3600)
        tampered = genuine[:-6] + ("A" if genuine[-6] != "A" else "B") + genuine[-5:]
        foreign = KeyRing.ephemeral().seal("task", payload, ttl=3600)
        refusals = []
        for bad in [tampered, expired, foreign, "v1.unknown", "not-a-task", "x" * 10_000]:
            for method in ("tasks/get", "tasks/cancel", "tasks/update"):
                with pytest.raises(MCPError) as refused:
                    await task(client, method, bad, Result)
                refusals.append((refused.value.error.code, refused.value.error.message))
        assert (await task(client, "tasks/get", genuine)).status == "working"  # the genuine one still opens
    assert len(set(refusals)) == 1, refusals
    assert refusals[0][0] == -32602


async def test_the_sealing_minimum_is_the_settings_one() -> None:
    assert MIN_SECRET_CHARS == SEALING_MIN_SECRET_CHARS


# -- tasks/cancel -------------------------------------------------------------------------------


async def test_cancelling_a_reads_task_sends_nothing_to_retab(
    tasks_settings: Settings, sandbox: RunningSandbox
) -> None:
    async with connected(tasks_settings) as client:
        created = await call(client, "get_edit", {"edit_id": RUNNING, "wait_seconds": 4})
        assert isinstance(created, TaskCreated)
        before = upstream(sandbox)
        assert before == [("GET", f"/v1/edits/{RUNNING}")]
        ack = await task(client, "tasks/cancel", created.task_id, Result)
        assert upstream(sandbox) == before, "a read-only tool's task must not cancel the run"
        update = await task(client, "tasks/update", created.task_id, Result)
        still = await task(client, "tasks/get", created.task_id)
    assert ack.model_dump(exclude={"meta"}, exclude_none=True) == {}
    assert update.model_dump(exclude={"meta"}, exclude_none=True) == {}
    assert still.status == "working"
    assert [method for method, _ in upstream(sandbox)] == ["GET", "GET"]


async def test_cancelling_a_cancels_task_sends_the_idempotent_cancel_once_more(
    tasks_settings: Settings, sandbox: RunningSandbox
) -> None:
    async with connected(tasks_settings) as client:
        created = await call(client, "cancel_edit", {"edit_id": STOPPING, "wait_seconds": 4})
        assert isinstance(created, TaskCreated)
        await task(client, "tasks/cancel", created.task_id, Result)
    cancel = ("POST", f"/v1/edits/{STOPPING}/cancel")
    assert upstream(sandbox) == [cancel, cancel]


# -- what Retab's failures make of a poll ---------------------------------------------------------


async def test_a_404_completes_with_the_error_envelope_and_a_transient_failure_keeps_working(
    tasks_settings: Settings, sandbox: RunningSandbox
) -> None:
    async with connected(replace(tasks_settings, max_attempts=1)) as client:
        created = await call(client, "get_edit", {"edit_id": RUNNING, "wait_seconds": 4})
        assert isinstance(created, TaskCreated)
        sandbox.sandbox.add_fault(Fault(status=503, match=RUNNING, headers={"Retry-After": "7"}))
        transient = await task(client, "tasks/get", created.task_id)
        sandbox.sandbox.add_fault(Fault(status=404, match=RUNNING))
        gone = await task(client, "tasks/get", created.task_id)
        sandbox.sandbox.add_fault(Fault(status=404, match=RUNNING))
        direct_404 = await client.call_tool("get_edit", {"edit_id": RUNNING})
    assert (transient.status, transient.result, transient.poll_interval_ms) == ("working", None, 7000)
    assert gone.status == "completed"
    assert gone.result["isError"] is True
    assert gone.result["structuredContent"]["error"]["code"] == "not_found"
    assert without_wait(gone.result["structuredContent"]) == without_wait(direct_404.structured_content or {})


def test_the_poll_interval_follows_the_waits_backoff() -> None:
    # The wait loop polls at 0.5, 1.5, 3.5, 7.5 s...: 0.5 s apart, then 1, 2, and 4 from there on.
    assert [poll_interval_ms(age) for age in (0, 0.4, 0.5, 1.4, 1.5, 3.4, 3.5, 60)] == [
        500, 500, 1000, 1000, 2000, 2000, 4000, 4000,
    ]  # fmt: skip
    assert poll_interval_ms(0, retry_after=9) == 9000


# -- over HTTP: any process, the caller's own key, Mcp-Name ---------------------------------------


@asynccontextmanager
async def http_client(url: str, key: str) -> AsyncIterator[Client]:
    """The SDK's client over HTTP, declaring the tasks extension, with Retab key `key`."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), extensions=[TasksClaim()]) as client,
    ):
        yield client


async def test_any_process_sharing_the_ring_answers_a_task_and_only_for_its_caller(sandbox: RunningSandbox) -> None:
    env = {"RETAB_API_BASE_URL": sandbox.base_url, "RETAB_MCP_SECRET_KEYS": SECRETS[0]}
    with http_server("--tasks", **env) as first, http_server("--tasks", **env) as second:
        async with http_client(first.mcp, KEY_A) as client:
            created = await call(client, "cancel_edit", {"edit_id": STOPPING, "wait_seconds": 4})
        assert isinstance(created, TaskCreated), created
        async with http_client(second.mcp, KEY_A) as client:
            working = await task(client, "tasks/get", created.task_id)
            sandbox.sandbox.advance(5)
            done = await task(client, "tasks/get", created.task_id)
        async with http_client(second.mcp, KEY_B) as other:
            with pytest.raises(MCPError) as refused:
                await task(other, "tasks/get", created.task_id)
            with pytest.raises(MCPError) as unknown:
                await task(other, "tasks/get", "v1.unknown")
    assert working.status == "working"
    assert (done.status, done.result["structuredContent"]["status"]) == ("completed", "cancelled")
    assert (refused.value.error.code, refused.value.error.message) == (
        unknown.value.error.code,
        unknown.value.error.message,
    )
    # Retab was asked with each poll's own key: the cancel and both reads with A's, nothing with B's.
    assert [request.method for request in sandbox.sandbox.recorded()] == ["POST", "GET", "GET"]
    assert '"event": "task_poll"' in second.stderr
    assert "task_poll" not in first.stderr


def modern_request(method: str, params: dict[str, Any], **headers: str) -> tuple[dict[str, Any], dict[str, str]]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {EXTENSION: {}}},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    base = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": method,
        "Authorization": f"Bearer {KEY_A}",
    }
    return body, base | headers


async def test_an_mcp_name_other_than_the_task_id_is_refused(sandbox: RunningSandbox) -> None:
    env = {"RETAB_API_BASE_URL": sandbox.base_url, "RETAB_MCP_SECRET_KEYS": SECRETS[0]}
    with http_server("--tasks", **env) as server:
        async with http_client(server.mcp, KEY_A) as client:
            created = await call(client, "get_edit", {"edit_id": RUNNING, "wait_seconds": 4})
        assert isinstance(created, TaskCreated)
        task_id = created.task_id
        answers = {}
        async with httpx.AsyncClient(timeout=30) as raw:
            for name, header in {"mismatch": {"Mcp-Name": task_id[:-1]}, "match": {"Mcp-Name": task_id}}.items():
                body, headers = modern_request("tasks/get", {"taskId": task_id}, **header)
                answers[name] = (await raw.post(server.mcp, json=body, headers=headers)).json()
    assert answers["mismatch"]["error"]["code"] == -32020
    assert answers["match"]["result"]["status"] == "working"


def test_tasks_over_http_without_a_shared_ring_are_refused_at_start_up() -> None:
    import subprocess

    from tests.support import SERVER_COMMAND, clean_env

    done = subprocess.run(
        [*SERVER_COMMAND, "--transport", "http", "--tasks"], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "RETAB_MCP_SECRET_KEYS" in done.stderr
    assert done.stdout == ""


# -- a real framework, end to end -----------------------------------------------------------------


async def test_pydantic_ai_gets_the_final_result_of_a_task_without_knowing_of_it(sandbox: RunningSandbox) -> None:
    from fastmcp.client.transports import StreamableHttpTransport
    from pydantic_ai import Agent
    from pydantic_ai.mcp import MCPToolset
    from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    returned: dict[str, ToolReturnPart] = {}

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            call = ToolCallPart("cancel_edit", {"edit_id": STOPPING, "wait_seconds": 1}, tool_call_id="stop")
            return ModelResponse(parts=[call])
        request = messages[-1]
        assert isinstance(request, ModelRequest)
        returned.update({p.tool_call_id: p for p in request.parts if isinstance(p, ToolReturnPart)})
        return ModelResponse(parts=[TextPart("done")])

    env = {"RETAB_API_BASE_URL": sandbox.base_url, "RETAB_MCP_SECRET_KEYS": SECRETS[0]}
    with http_server("--tasks", **env) as server:
        transport = StreamableHttpTransport(server.mcp, headers={"Authorization": f"Bearer {KEY_A}"})
        toolset: MCPToolset[None] = MCPToolset(transport)
        started = time.monotonic()
        run = await Agent(FunctionModel(model), toolsets=[toolset]).run("Stop that edit and tell me when it stopped.")
        took = time.monotonic() - started
    assert run.output == "done"
    envelope = returned["stop"].content
    assert isinstance(envelope, dict)
    # wait_seconds was 1, the run took 3 s to stop: only a task, polled to its end, sees it stopped.
    assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, "cancelled", True)
    assert took < 30
    assert '"task_status": "completed"' in server.stderr
