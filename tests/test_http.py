"""Streamable HTTP, end to end: real server processes on loopback, the SDK's HTTP client in both
eras, key isolation under concurrency, statelessness across two processes, the auth matrix,
Host/Origin checks, probes, SIGTERM draining and the per-call log line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from retab_mcp.endpoints import select
from retab_mcp.sandbox import SANDBOX_API_KEY, Fault, RunningSandbox, fingerprint
from tests.support import (
    KEY_A,
    KEY_B,
    LEGACY_HEADERS,
    HttpServer,
    free_port,
    http_server,
    jsonrpc,
    mcp_client,
    wait_for,
)

SERVER_KEY = "rt_test_serverKey_55ab"
TOKEN = "shared-secret-token-0f1e2d"


@pytest.fixture(scope="module")
def caller_key_server(_running_sandbox: RunningSandbox) -> Iterator[HttpServer]:
    """No server key: each caller brings their own. Shared by the tests of this module, which
    check keys, not admission (test_hardening.py does): its 200 concurrent calls are all admitted,
    however slowly a busy machine runs them."""
    with http_server(RETAB_API_BASE_URL=_running_sandbox.base_url, RETAB_MCP_MAX_IN_FLIGHT="200") as server:
        yield server


@pytest.fixture(scope="module")
def server_key_server(_running_sandbox: RunningSandbox) -> Iterator[HttpServer]:
    env = {"RETAB_API_KEY": SERVER_KEY, "RETAB_MCP_AUTH_TOKEN": TOKEN, "RETAB_API_BASE_URL": _running_sandbox.base_url}
    with http_server(**env) as server:
        yield server


@pytest.fixture(scope="module")
def public_names_server(_running_sandbox: RunningSandbox) -> Iterator[HttpServer]:
    with http_server(
        "--allowed-hosts", "mcp.example.com:*", "--allowed-origins", "https://app.example.com",
        RETAB_API_BASE_URL=_running_sandbox.base_url,
    ) as server:  # fmt: skip
        yield server


# -- the transport, both eras ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("header", ["Authorization", "Api-Key"])
async def test_both_tools_over_http_in_both_eras(
    caller_key_server: HttpServer, sandbox: RunningSandbox, mode: str, header: str
) -> None:
    value = f"Bearer {KEY_A}" if header == "Authorization" else KEY_A
    async with mcp_client(caller_key_server.mcp, {header: value}, mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == [
            "cancel_blueprint",
            "cancel_edit",
            "get_blueprint",
            "get_edit",
            "list_edits",
        ]
        blueprint = await client.call_tool("cancel_blueprint", {"blueprint_id": "fbp_running01"})
        edit = await client.call_tool("cancel_edit", {"edit_id": "edt_unknown"})
    assert blueprint.structured_content is not None
    assert blueprint.structured_content["status"] == "cancelled"
    assert edit.is_error
    assert edit.structured_content is not None
    assert edit.structured_content["error"]["code"] == "not_found"
    assert {r.key_fingerprint for r in sandbox.sandbox.recorded()} == {fingerprint(KEY_A)}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_read_tools_over_http_in_both_eras(
    caller_key_server: HttpServer, sandbox: RunningSandbox, mode: str
) -> None:
    async with mcp_client(caller_key_server.mcp, {"Api-Key": KEY_B}, mode) as client:
        edit = await client.call_tool("get_edit", {"edit_id": "edt_failed01", "wait_seconds": 3})
        blueprint = await client.call_tool("get_blueprint", {"blueprint_id": "fbp_queued01"})
        page = await client.call_tool("list_edits", {"status": "failed"})
    assert edit.structured_content is not None
    assert (edit.structured_content["status"], edit.structured_content["terminal"]) == ("failed", True)
    assert blueprint.structured_content is not None
    assert blueprint.structured_content["status"] == "queued"
    assert page.structured_content is not None
    assert [e["id"] for e in page.structured_content["edits"]] == ["edt_failed01"]
    assert [(r.method, r.path, r.query) for r in sandbox.sandbox.recorded()] == [
        ("GET", "/v1/edits/edt_failed01", "include_output=false"),
        ("GET", "/v1/files/blueprints/fbp_queued01", "include_output=false"),
        ("GET", "/v1/edits", "limit=10&order=desc&status=failed"),
    ]
    assert {r.key_fingerprint for r in sandbox.sandbox.recorded()} == {fingerprint(KEY_B)}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_read_only_over_http_serves_only_the_read_tools(sandbox: RunningSandbox, mode: str) -> None:
    with http_server("--read-only", RETAB_API_BASE_URL=sandbox.base_url) as server:
        async with mcp_client(server.mcp, {"Api-Key": KEY_A}, mode) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            with pytest.raises(MCPError) as caught:
                await client.call_tool("cancel_edit", {"edit_id": "edt_running01"})
    assert names == [endpoint.tool for endpoint in select(True, ())]
    assert caught.value.error.code == INVALID_PARAMS
    assert sandbox.sandbox.recorded() == []


@pytest.mark.anyio
@pytest.mark.parametrize("stateful", [True, False])
async def test_progress_streams_over_stateful_http(sandbox: RunningSandbox, stateful: bool) -> None:
    """Stateful HTTP answers over SSE and carries progress; a stateless call with a progress token still answers."""
    reports: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(progress)

    flags = ["--stateful"] if stateful else []
    with http_server(*flags, RETAB_API_BASE_URL=sandbox.base_url) as server:
        async with mcp_client(server.mcp, {"Api-Key": KEY_A}, "legacy") as client:
            result = await client.call_tool(
                "get_edit", {"edit_id": "edt_running01", "wait_seconds": 1.2}, progress_callback=on_progress
            )
    assert result.structured_content is not None
    assert result.structured_content["terminal"] is False
    if stateful:
        assert len(reports) >= 2


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stateful_mode_keeps_a_session_and_streams(sandbox: RunningSandbox, mode: str) -> None:
    initialize = jsonrpc(
        "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    )
    with http_server("--stateful", RETAB_API_BASE_URL=sandbox.base_url) as server:
        async with httpx.AsyncClient() as raw:
            opened = await raw.post(server.mcp, json=initialize, headers={**LEGACY_HEADERS, "Api-Key": KEY_A})
        assert opened.headers.get("mcp-session-id")
        async with mcp_client(server.mcp, {"Authorization": f"Bearer {KEY_A}"}, mode) as client:
            first = await client.call_tool("cancel_edit", {"edit_id": "edt_running01"})
            again = await client.call_tool("cancel_edit", {"edit_id": "edt_running01"})
        assert server.stop() == 0
    for result in (first, again):
        assert result.structured_content is not None
        assert result.structured_content["status"] == "cancelled"


# -- key isolation ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_200_interleaved_calls_from_two_callers_never_cross_keys(
    caller_key_server: HttpServer, sandbox: RunningSandbox
) -> None:
    answers: list[tuple[str, str]] = []

    async def call(client: Client, caller: str, n: int) -> None:
        result = await client.call_tool("cancel_edit", {"edit_id": f"edt_{caller}{n}"})
        assert result.structured_content is not None
        answers.append((caller, result.structured_content["error"]["code"]))

    async with (
        mcp_client(caller_key_server.mcp, {"Authorization": f"Bearer {KEY_A}"}) as alice,
        mcp_client(caller_key_server.mcp, {"Api-Key": KEY_B}) as bob,
        anyio.create_task_group() as group,
    ):
        for n in range(100):  # interleaved: A B A B ...
            group.start_soon(call, alice, "alice", n)
            group.start_soon(call, bob, "bob", n)

    assert len(answers) == 200
    assert {code for _, code in answers} == {"not_found"}
    requests = [r for r in sandbox.sandbox.recorded() if r.path.startswith("/v1/edits/")]
    assert len(requests) == 200
    expected = {"alice": fingerprint(KEY_A), "bob": fingerprint(KEY_B)}
    crossed = [r for r in requests if r.key_fingerprint != expected["alice" if "alice" in r.path else "bob"]]
    assert crossed == []
    # ...and the keys reached no log line.
    wait_for(lambda: caller_key_server.stderr.count('"event": "tool_call"') >= 200)
    assert KEY_A not in caller_key_server.stderr
    assert KEY_B not in caller_key_server.stderr


# -- statelessness ----------------------------------------------------------------------------------


class Alternating(httpx2.AsyncBaseTransport):
    """Sends each request to the next server in turn, as a load balancer without affinity would."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.served: list[int] = []
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[len(self.served) % len(self.ports)]
        self.served.append(port)
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_consecutive_calls_alternating_between_two_processes_all_succeed(
    sandbox: RunningSandbox, mode: str
) -> None:
    env = {"RETAB_API_BASE_URL": sandbox.base_url}
    with http_server(**env) as first, http_server(**env) as second:
        transport = Alternating([first.port, second.port])
        async with (
            httpx2.AsyncClient(transport=transport, headers={"Authorization": f"Bearer {KEY_A}"}) as http,
            Client(streamable_http_client(first.mcp, http_client=http), mode=mode) as client,
        ):
            for run_id in ["edt_running01", "edt_queued01", "edt_pending01", "edt_01G34H8J2K", "edit_01G34H8J2K"]:
                result = await client.call_tool("cancel_edit", {"edit_id": run_id})
                assert result.structured_content is not None
                assert result.structured_content["status"] == "cancelled", run_id
    assert set(transport.served) == {first.port, second.port}
    assert first.stop() == 0
    assert second.stop() == 0


# -- the auth matrix --------------------------------------------------------------------------------


NO_KEY = [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}]
NO_KEY_IDS = ["no-key", "wrong-scheme", "empty-bearer"]


@pytest.mark.parametrize(
    "headers",
    [*NO_KEY, {"Authorization": f"Bearer {KEY_A}"}, {"Api-Key": KEY_A}],
    ids=[*NO_KEY_IDS, "bearer", "api-key"],
)
def test_callers_key_mode_lists_the_tools_with_or_without_a_key(
    caller_key_server: HttpServer, sandbox: RunningSandbox, headers: dict[str, str]
) -> None:
    """No 401 for a missing key: clients answer one by starting OAuth, and show its failure
    ("Interactive OAuth requires a TTY") instead of the server's words. Listing sends nothing."""
    response = httpx.post(caller_key_server.mcp, json=jsonrpc("tools/list"), headers={**LEGACY_HEADERS, **headers})
    assert response.status_code == 200
    assert "www-authenticate" not in response.headers
    assert "get_edit" in {tool["name"] for tool in response.json()["result"]["tools"]}
    assert sandbox.sandbox.recorded() == []


@pytest.mark.parametrize("headers", NO_KEY, ids=NO_KEY_IDS)
def test_a_call_without_a_key_answers_how_to_send_one(
    caller_key_server: HttpServer, sandbox: RunningSandbox, headers: dict[str, str]
) -> None:
    call = jsonrpc("tools/call", {"name": "get_edit", "arguments": {"edit_id": "edt_01G34H8J2K"}})
    response = httpx.post(caller_key_server.mcp, json=call, headers={**LEGACY_HEADERS, **headers})
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["isError"] is True
    error = result["structuredContent"]["error"]
    assert error["code"] == "configuration_error"
    assert "No Retab API key came with this request" in error["message"]
    # The server's own words, whole: the placeholders are not mistaken for keys and masked.
    assert "`Authorization: Bearer <key>` (or `Api-Key: <key>`)" in error["hint"]
    assert "docs/clients.md" in error["hint"]
    read = jsonrpc("resources/read", {"uri": "retab://edits/edt_completed01/filled_document"})
    answer = httpx.post(caller_key_server.mcp, json=read, headers={**LEGACY_HEADERS, **headers}).json()
    assert "No Retab API key came with this request" in answer["error"]["message"]
    assert "Authorization: Bearer <key>" in answer["error"]["message"]
    assert sandbox.sandbox.recorded() == []


@pytest.mark.parametrize("version", [None, "2025-11-25", "2026-07-28"])
def test_get_on_the_stateless_endpoint_is_405_at_once(caller_key_server: HttpServer, version: str | None) -> None:
    """No SSE stream to offer: the spec's 405 with `Allow: POST`, not a request left hanging."""
    headers = {"Accept": "text/event-stream", "Api-Key": KEY_A} | ({"MCP-Protocol-Version": version} if version else {})
    response = httpx.get(caller_key_server.mcp, headers=headers, timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_stateful_without_a_key_opens_a_session_whose_calls_say_how_to_send_one(sandbox: RunningSandbox) -> None:
    initialize = jsonrpc(
        "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    )
    call = jsonrpc("tools/call", {"name": "get_edit", "arguments": {"edit_id": "edt_running01"}})
    with http_server("--stateful", RETAB_API_BASE_URL=sandbox.base_url) as server:
        opened = httpx.post(server.mcp, json=initialize, headers=LEGACY_HEADERS)
        session = {**LEGACY_HEADERS, "Mcp-Session-Id": opened.headers["mcp-session-id"]}
        answered = httpx.post(server.mcp, json=call, headers=session)
        # A made-up key still opens no session, and the keyless session is not that key's.
        made_up = httpx.post(server.mcp, json=initialize, headers={**LEGACY_HEADERS, "Api-Key": "rt_live_made_up"})
        borrowed = httpx.post(server.mcp, json=call, headers={**session, "Api-Key": KEY_A})
    assert opened.status_code == 200
    event = next(line for line in answered.text.splitlines() if line.startswith("data:"))
    error = json.loads(event.removeprefix("data:"))["result"]["structuredContent"]["error"]
    assert error["code"] == "configuration_error"
    assert "Authorization: Bearer <key>" in error["hint"]
    assert made_up.status_code == 401
    assert made_up.json()["error"] == "invalid_key"
    assert borrowed.status_code == 404
    # Only the made-up key was checked with Retab: the keyless session cost no upstream request.
    assert [(r.path, r.key_fingerprint) for r in sandbox.sandbox.recorded()] == [
        ("/v1/edits", fingerprint("rt_live_made_up"))
    ]


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "missing_token"),
        ({"Api-Key": TOKEN}, 401, "missing_token"),
        ({"Authorization": f"Basic {TOKEN}"}, 401, "missing_token"),
        ({"Authorization": "Bearer wrong-token"}, 401, "invalid_token"),  # RFC 6750 section 3.1
        ({"Authorization": f"Bearer {TOKEN}"}, 200, None),
    ],
    ids=["no-token", "api-key-header", "wrong-scheme", "wrong-token", "right-token"],
)
def test_server_key_mode_requires_the_auth_token(
    server_key_server: HttpServer, sandbox: RunningSandbox, headers: dict[str, str], status: int, error: str | None
) -> None:
    call = jsonrpc("tools/call", {"name": "cancel_edit", "arguments": {"edit_id": "edt_running01"}})
    response = httpx.post(server_key_server.mcp, json=call, headers={**LEGACY_HEADERS, **headers})
    assert response.status_code == status
    if error:
        assert response.json()["error"] == error
        assert response.headers["www-authenticate"] == f'Bearer realm="retab-mcp", error="{error}"'
        assert sandbox.sandbox.recorded() == []
    else:
        assert response.json()["result"]["structuredContent"]["status"] == "cancelled"
        # The server's key went upstream; the caller's token never did.
        assert [r.key_fingerprint for r in sandbox.sandbox.recorded()] == [fingerprint(SERVER_KEY)]
    assert TOKEN not in server_key_server.stderr
    assert SERVER_KEY not in server_key_server.stderr


def test_a_server_key_on_a_public_host_without_a_token_is_refused() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RETAB_")}
    done = subprocess.run(
        [sys.executable, "-m", "retab_mcp", "--transport", "http", "--host", "0.0.0.0", "--port", str(free_port())],
        env={**base, "RETAB_API_KEY": SERVER_KEY},
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert b"RETAB_MCP_AUTH_TOKEN" in done.stderr
    assert SERVER_KEY.encode() not in done.stderr


# -- Host and Origin ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example"}, 421),
        ({"Origin": "http://evil.example"}, 403),
        ({"Host": "mcp.example.com:443"}, 200),
        ({"Origin": "https://app.example.com"}, 200),
        ({"Origin": "http://localhost:6274"}, 200),
    ],
    ids=["bad-host", "bad-origin", "allowed-host", "allowed-origin", "loopback-origin"],
)
def test_host_and_origin_checks(public_names_server: HttpServer, headers: dict[str, str], status: int) -> None:
    response = httpx.post(
        public_names_server.mcp, json=jsonrpc("tools/list"), headers={**LEGACY_HEADERS, "Api-Key": KEY_A, **headers}
    )
    assert response.status_code == status


def test_oversized_bodies_are_refused(caller_key_server: HttpServer) -> None:
    call = jsonrpc("tools/call", {"name": "cancel_edit", "arguments": {"edit_id": "x" * 200_000}})
    response = httpx.post(caller_key_server.mcp, json=call, headers={**LEGACY_HEADERS, "Api-Key": KEY_A})
    assert response.status_code == 413


# -- operations --------------------------------------------------------------------------------------


def test_stateless_mode_holds_no_session(caller_key_server: HttpServer) -> None:
    initialize = jsonrpc(
        "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    )
    opened = httpx.post(caller_key_server.mcp, json=initialize, headers={**LEGACY_HEADERS, "Api-Key": KEY_A})
    assert opened.status_code == 200
    assert opened.headers["content-type"].startswith("application/json")
    assert "mcp-session-id" not in opened.headers


def test_probes_need_no_auth(caller_key_server: HttpServer) -> None:
    assert httpx.get(caller_key_server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(caller_key_server.url + "/readyz").json() == {"status": "ready"}


def test_sigterm_lets_an_in_flight_call_finish_then_exits_0(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=None, delay=1.5, match="/v1/edits/"))
    with http_server(RETAB_API_BASE_URL=sandbox.base_url) as server:
        call = jsonrpc("tools/call", {"name": "cancel_edit", "arguments": {"edit_id": "edt_running01"}})
        answer: dict[str, Any] = {}

        def post() -> None:
            answer["response"] = httpx.post(
                server.mcp, json=call, headers={**LEGACY_HEADERS, "Api-Key": KEY_A}, timeout=30
            )

        caller = threading.Thread(target=post)
        caller.start()
        time.sleep(0.5)  # the call is now waiting on the slow upstream
        server.process.send_signal(signal.SIGTERM)
        caller.join(timeout=30)
        # Waited for, not stop()ped: a second SIGTERM during the lifespan's shutdown would kill it.
        assert server.process.wait(timeout=30) == 0
    response = answer["response"]
    assert response.status_code == 200
    assert response.json()["result"]["structuredContent"]["status"] == "cancelled"


def test_one_structured_log_line_per_tool_call(caller_key_server: HttpServer, sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=429, headers={"Retry-After": "120"}, match="edt_logline02"))
    calls = [("cancel_blueprint", "blueprint_id", "fbp_completed01"), ("cancel_edit", "edit_id", "edt_logline01"),
             ("cancel_edit", "edit_id", "edt_logline02")]  # fmt: skip
    for tool, arg, run_id in calls:
        call = jsonrpc("tools/call", {"name": tool, "arguments": {arg: run_id}})
        httpx.post(caller_key_server.mcp, json=call, headers={**LEGACY_HEADERS, "Api-Key": KEY_A})
    wait_for(lambda: "edt_logline02" in caller_key_server.stderr)
    records = [
        json.loads(line[line.index("{") :])
        for line in caller_key_server.stderr.splitlines()
        if '"event": "tool_call"' in line and any(run_id in line for _, _, run_id in calls)
    ]
    assert [(r["tool"], r["id"], r["outcome"], r["status"], r["upstream_status"], r["attempts"]) for r in records] == [
        ("cancel_blueprint", "fbp_completed01", "ok", "completed", 200, 1),
        ("cancel_edit", "edt_logline01", "not_found", None, 404, 1),
        ("cancel_edit", "edt_logline02", "rate_limited", None, 429, 1),
    ]
    assert all(r["latency_ms"] > 0 for r in records)
    assert KEY_A not in caller_key_server.stderr


def test_the_sandbox_key_is_used_with_sandbox_over_http() -> None:
    with http_server("--sandbox") as server:
        call = jsonrpc("tools/call", {"name": "cancel_blueprint", "arguments": {"blueprint_id": "fbp_a1b2c3d4e5f6"}})
        response = httpx.post(server.mcp, json=call, headers=LEGACY_HEADERS)
    assert response.json()["result"]["structuredContent"]["status"] == "cancelled"
    assert SANDBOX_API_KEY not in server.stderr
