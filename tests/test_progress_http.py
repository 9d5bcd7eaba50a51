"""Progress over stateless HTTP: a waiting call that asks for progress gets it as a short SSE
stream, in both protocol eras; a call that does not ask is answered with plain JSON; and
`--json-response` forces JSON for proxies that buffer SSE. Real server processes on loopback,
the SDK's own HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from retab_mcp.sandbox import RunningSandbox
from tests.support import ERAS, http_server

KEY = "rt_test_progress_4k2m"


@contextmanager
def stateless_server(base_url: str, *flags: str) -> Iterator[str]:
    """`retab-mcp --transport http` (stateless) on a free loopback port; yields its MCP URL."""
    with http_server(*flags, RETAB_API_BASE_URL=base_url) as server:
        yield server.mcp


@asynccontextmanager
async def client_seeing_answers(url: str, mode: str) -> AsyncIterator[tuple[Client, list[str]]]:
    """The SDK's client, and the Content-Type of every answer to a `tools/call` it sent."""
    types: list[str] = []

    async def record(response: httpx2.Response) -> None:
        if response.request.method == "POST" and b'"tools/call"' in response.request.content:
            types.append(response.headers.get("content-type", "").split(";")[0])

    async with (
        httpx2.AsyncClient(headers={"Api-Key": KEY}, timeout=30, event_hooks={"response": [record]}) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client, types


@pytest.fixture(scope="module")
def server(_running_sandbox: RunningSandbox) -> Iterator[str]:
    with stateless_server(_running_sandbox.base_url) as url:
        yield url


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_waiting_call_with_a_progress_callback_streams_progress_then_its_result(
    server: str, sandbox: RunningSandbox, mode: str
) -> None:
    reports: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, message))

    async with client_seeing_answers(server, mode) as (client, types):
        result = await client.call_tool(
            "get_edit", {"edit_id": "edt_running01", "wait_seconds": 1.6}, progress_callback=on_progress
        )
    assert result.structured_content is not None
    assert result.structured_content["edit"]["id"] == "edt_running01"
    assert len(reports) >= 2, reports  # a report after each poll that found the run going
    assert [progress for progress, _ in reports] == sorted(progress for progress, _ in reports)
    assert types == ["text/event-stream"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_call_without_a_progress_token_is_answered_with_json(
    server: str, sandbox: RunningSandbox, mode: str
) -> None:
    async with client_seeing_answers(server, mode) as (client, types):
        waited = await client.call_tool("get_edit", {"edit_id": "edt_running01", "wait_seconds": 0.6})
        listed = await client.call_tool("list_edits", {"limit": 2})
    assert waited.structured_content is not None
    assert listed.structured_content is not None
    assert waited.structured_content["waited_seconds"] >= 0.5
    assert types == ["application/json", "application/json"]


def test_a_client_that_accepts_json_only_is_answered_with_json_even_with_a_token(
    server: str, sandbox: RunningSandbox
) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "get_edit", "arguments": {"edit_id": "edt_running01"}, "_meta": {"progressToken": 1}},
    }
    headers = {"Accept": "application/json", "MCP-Protocol-Version": "2025-11-25", "Api-Key": KEY}
    answer = httpx.post(server, json=call, headers=headers, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["result"]["structuredContent"]["edit"]["id"] == "edt_running01"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_json_response_forces_json_and_drops_progress(sandbox: RunningSandbox, mode: str) -> None:
    reports: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(progress)

    with stateless_server(sandbox.base_url, "--json-response") as url:
        async with client_seeing_answers(url, mode) as (client, types):
            result = await client.call_tool(
                "get_edit", {"edit_id": "edt_running01", "wait_seconds": 1.2}, progress_callback=on_progress
            )
    assert result.structured_content is not None
    assert result.structured_content["terminal"] is False
    assert (reports, types) == ([], ["application/json"])
