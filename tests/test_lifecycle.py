"""Reading, finding and waiting for runs: get_blueprint, get_edit, list_edits and wait_seconds,
through the SDK's in-memory Client in both protocol eras, against the sandbox on loopback.

Every result is validated against the published outputSchema by the `agent` fixture; every test
that matters to Retab counts what the sandbox was sent (method, path, query).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any, Final

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, BlobResourceContents, ResourceLink

from retab_mcp.config import ConfigError, Settings
from retab_mcp.endpoints import select
from retab_mcp.sandbox import SANDBOX_API_KEY, SEEDED_RUNS, Fault, RunningSandbox, Sandbox, serve_in_thread
from retab_mcp.server import RetabMCPServer
from tests.support import ERAS, Agent, connect

pytestmark = pytest.mark.anyio

SEEDED_EDITS = sum(1 for kind, _, _ in SEEDED_RUNS if kind == "edit")
# The sandbox's stopping runs keep going for 3 s of sandbox time after their cancel; at ten times
# real speed they stop 0.3 s after it, before the wait's first poll (0.5 s).
SPEED = 10.0


def sent(sandbox: RunningSandbox) -> list[tuple[str, str, str]]:
    return [(r.method, r.path, r.query) for r in sandbox.sandbox.recorded()]


@pytest.fixture(scope="module")
def _fast_sandbox() -> Iterator[RunningSandbox]:
    start = time.monotonic()
    with serve_in_thread(Sandbox(clock=lambda: start + (time.monotonic() - start) * SPEED)) as running:
        yield running


@pytest.fixture
def fast_sandbox(_fast_sandbox: RunningSandbox) -> RunningSandbox:
    _fast_sandbox.sandbox.reset()
    return _fast_sandbox


@pytest.fixture(params=ERAS)
async def fast_agent(request: pytest.FixtureRequest, fast_sandbox: RunningSandbox) -> AsyncIterator[Agent]:
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=fast_sandbox.base_url, call_timeout=5)
    async for connected in connect(RetabMCPServer(settings), request.param):
        yield connected


# -- reads -------------------------------------------------------------------------------------


async def test_get_edit_reads_the_status_only_projection_and_changes_nothing(
    agent: Agent, sandbox: RunningSandbox
) -> None:
    _, envelope = await agent.call("get_edit", {"edit_id": "edt_running01"})
    assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, "in_progress", False)
    assert envelope["edit"]["id"] == "edt_running01"
    assert "get_edit with wait_seconds" in envelope["note"]
    assert "cancel_edit" in envelope["note"]
    assert sent(sandbox) == [("GET", "/v1/edits/edt_running01", "include_output=false")]
    _, again = await agent.call("get_edit", {"edit_id": "edt_running01"})
    assert again["status"] == "in_progress"  # the read did not cancel it


async def test_get_blueprint_reads_one_run(agent: Agent, sandbox: RunningSandbox) -> None:
    _, envelope = await agent.call("get_blueprint", {"blueprint_id": "fbp_failed01"})
    assert (envelope["status"], envelope["terminal"]) == ("failed", True)
    assert envelope["blueprint"]["error"]["code"]
    assert "failed" in envelope["note"]
    assert sent(sandbox) == [("GET", "/v1/files/blueprints/fbp_failed01", "include_output=false")]


async def test_a_completed_run_says_its_output_was_left_out_and_how_to_get_it(
    agent: Agent, sandbox: RunningSandbox
) -> None:
    _, envelope = await agent.call("get_edit", {"edit_id": "edt_completed01"})
    assert (envelope["status"], envelope["output_omitted"]) == ("completed", True)
    assert "get_edit with include_output=true" in envelope["note"]
    result, full = await agent.call("get_edit", {"edit_id": "edt_completed01", "include_output": True})
    assert sent(sandbox)[-1] == ("GET", "/v1/edits/edt_completed01", "include_output=true")
    assert full["edit"]["output"]["form_data"]
    [omitted] = full["omitted_data"]
    assert omitted["resource_uri"] == "retab://edits/edt_completed01/filled_document"
    links = [block for block in result.content if isinstance(block, ResourceLink)]
    assert [(str(link.uri), link.mime_type, link.size) for link in links] == [
        (omitted["resource_uri"], "application/pdf", 2 * 1024 * 1024)
    ]


async def test_the_filled_document_is_a_resource_read_on_demand(agent: Agent, sandbox: RunningSandbox) -> None:
    templates = (await agent.client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["retab://edits/{edit_id}/filled_document"]
    read = await agent.client.read_resource("retab://edits/edt_completed01/filled_document")
    [content] = read.contents
    assert isinstance(content, BlobResourceContents)
    assert content.mime_type == "application/pdf"
    import base64

    pdf = base64.b64decode(content.blob)
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) == 2 * 1024 * 1024
    assert sent(sandbox) == [("GET", "/v1/edits/edt_completed01", "include_output=true")]


async def test_a_run_without_a_filled_document_is_a_clear_resource_error(agent: Agent) -> None:
    with pytest.raises(MCPError) as caught:
        await agent.client.read_resource("retab://edits/edt_running01/filled_document")
    assert "no filled document" in caught.value.error.message
    with pytest.raises(MCPError) as missing:
        await agent.client.read_resource("retab://edits/edt_nope/filled_document")
    assert "Retab has no edit 'edt_nope'" in missing.value.error.message


@pytest.mark.parametrize(("tool", "arg"), [("get_blueprint", "blueprint_id"), ("get_edit", "edit_id")])
@pytest.mark.parametrize("run_id", ["../../v1/edits", "a/b", "edt_1?x=1", "x" * 129, "", "edt 1", "é", 12])
async def test_hostile_ids_on_read_tools_send_nothing(
    agent: Agent, sandbox: RunningSandbox, tool: str, arg: str, run_id: Any
) -> None:
    _, envelope = await agent.call(tool, {arg: run_id})
    assert envelope["error"]["code"] == "invalid_argument"
    assert sandbox.sandbox.recorded() == []


async def test_a_404_on_a_read_tool_points_to_its_sibling_read_tool(agent: Agent) -> None:
    _, envelope = await agent.call("get_edit", {"edit_id": "fbp_running01"})
    assert envelope["error"]["code"] == "not_found"
    assert "call get_blueprint" in envelope["error"]["hint"]
    _, other = await agent.call("get_blueprint", {"blueprint_id": "edt_running01"})
    assert "call get_edit" in other["error"]["hint"]


async def test_unknown_arguments_are_refused_and_nothing_is_sent(agent: Agent, sandbox: RunningSandbox) -> None:
    _, envelope = await agent.call("cancel_edit", {"edit_id": "edt_running01", "force": True})
    assert envelope["error"]["code"] == "invalid_argument"
    assert "`force` is not an argument of cancel_edit" in envelope["error"]["message"]
    assert sandbox.sandbox.recorded() == []


# -- the list ----------------------------------------------------------------------------------


async def test_list_edits_sends_the_documented_query_and_answers_summaries(
    agent: Agent, sandbox: RunningSandbox
) -> None:
    _result, envelope = await agent.call("list_edits", {})
    assert sent(sandbox) == [("GET", "/v1/edits", "limit=10&order=desc")]
    edits = envelope["edits"]
    assert len(edits) == min(10, SEEDED_EDITS)
    assert set(edits[0]) == {"id", "status", "terminal", "created_at", "filename"}
    assert [e["created_at"] for e in edits] == sorted((e["created_at"] for e in edits), reverse=True)
    assert len(json.dumps(envelope)) < 4 * 1024  # a page of 10 stays under ~4 KB


async def test_list_filters_reach_retab_and_narrow_the_page(agent: Agent, sandbox: RunningSandbox) -> None:
    _, envelope = await agent.call("list_edits", {"status": "in_progress", "limit": 100, "filename": "w9_form.pdf"})
    [(_, _, query)] = sent(sandbox)
    assert query == "limit=100&order=desc&status=in_progress&filename=w9_form.pdf"
    assert envelope["edits"]
    assert all(e["status"] == "in_progress" for e in envelope["edits"])
    assert all(e["terminal"] is False and e["filename"] == "w9_form.pdf" for e in envelope["edits"])
    assert envelope["next_after"] is None
    assert "last page" in envelope["note"]


async def test_the_cursor_walks_every_edit_once(agent: Agent, sandbox: RunningSandbox) -> None:
    seen: list[str] = []
    arguments: dict[str, Any] = {"limit": 3}
    for _ in range(10):
        _, page = await agent.call("list_edits", arguments)
        seen += [e["id"] for e in page["edits"]]
        if page["next_after"] is None:
            break
        arguments = {"limit": 3, "after": page["next_after"]}
    assert len(seen) == len(set(seen)) == SEEDED_EDITS
    assert SEEDED_EDITS > 6  # so the walk took three pages or more
    assert sent(sandbox)[1][2] == f"limit=3&order=desc&after={seen[2]}"


async def test_an_empty_list_says_so(agent: Agent) -> None:
    _, envelope = await agent.call("list_edits", {"filename": "nothing.pdf"})
    assert envelope["edits"] == []
    assert envelope["next_after"] is None
    assert envelope["note"] == "No edits."


@pytest.mark.parametrize(
    "arguments",
    [{"limit": 0}, {"limit": 101}, {"status": "running"}, {"after": "a b"}, {"filename": ""}, {"limit": "ten"}],
)
async def test_bad_list_arguments_send_nothing(
    agent: Agent, sandbox: RunningSandbox, arguments: dict[str, Any]
) -> None:
    _, envelope = await agent.call("list_edits", arguments)
    assert envelope["error"]["code"] == "invalid_argument"
    assert envelope["edits"] == []
    assert sandbox.sandbox.recorded() == []


async def test_a_list_error_is_an_envelope_with_a_hint(agent: Agent, sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=401, match="/v1/edits"))
    _, envelope = await agent.call("list_edits", {})
    assert envelope["error"]["code"] == "unauthorized"
    assert envelope["error"]["hint"]


# -- hints that point at the safe tool ---------------------------------------------------------


async def test_a_cancel_still_going_points_to_the_read_tool_not_another_cancel(
    agent: Agent, sandbox: RunningSandbox
) -> None:
    _, envelope = await agent.call("cancel_edit", {"edit_id": "edt_stopping01"})
    assert (envelope["status"], envelope["terminal"]) == ("in_progress", False)
    assert "call get_edit with wait_seconds (read-only)" in envelope["note"]
    assert "no need to cancel again" in envelope["note"]


async def test_a_cancel_that_timed_out_points_to_the_read_tool(settings: Settings, sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=None, delay=3, times=10))
    async for agent in connect(RetabMCPServer(replace(settings, call_timeout=1)), "auto"):
        _, envelope = await agent.call("cancel_blueprint", {"blueprint_id": "fbp_running01"})
        assert envelope["error"]["code"] == "timeout"
        assert "Call get_blueprint (read-only) to learn the run's status" in envelope["error"]["hint"]


async def test_a_cancel_that_could_not_reach_retab_points_to_the_read_tool(settings: Settings) -> None:
    unreachable = replace(settings, base_url="http://127.0.0.1:9", call_timeout=1, max_attempts=1)
    async for agent in connect(RetabMCPServer(unreachable), "auto"):
        _, envelope = await agent.call("cancel_edit", {"edit_id": "edt_running01"})
        assert envelope["error"]["code"] == "network_error"
        assert "Call get_edit (read-only)" in envelope["error"]["hint"]


# -- waiting -----------------------------------------------------------------------------------


async def test_a_wait_answers_as_soon_as_the_run_stops(fast_agent: Agent, fast_sandbox: RunningSandbox) -> None:
    started = time.monotonic()
    _, envelope = await fast_agent.call("cancel_edit", {"edit_id": "edt_stopping01", "wait_seconds": 4})
    elapsed = time.monotonic() - started
    assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, "cancelled", True)
    assert 0 < envelope["waited_seconds"] < 1.5
    assert elapsed < 2
    assert sent(fast_sandbox) == [
        ("POST", "/v1/edits/edt_stopping01/cancel", ""),
        ("GET", "/v1/edits/edt_stopping01", "include_output=false"),
    ]


async def test_a_wait_that_runs_out_is_ok_and_says_the_run_is_still_going(
    fast_agent: Agent, fast_sandbox: RunningSandbox
) -> None:
    started = time.monotonic()
    _, envelope = await fast_agent.call("get_blueprint", {"blueprint_id": "fbp_running01", "wait_seconds": 1.6})
    elapsed = time.monotonic() - started
    assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, "in_progress", False)
    assert 1.5 <= envelope["waited_seconds"] <= 2
    assert 1.5 <= elapsed < 3
    assert "After waiting 2 s, the blueprint is still in_progress" in envelope["note"]
    requests = sent(fast_sandbox)
    # The first read, then polls on a backoff (0.5 s, then 1 s...), never a hot loop.
    assert 2 <= len(requests) <= 4
    assert set(requests) == {("GET", "/v1/files/blueprints/fbp_running01", "include_output=false")}


async def test_a_wait_on_a_finished_run_sends_one_request(fast_agent: Agent, fast_sandbox: RunningSandbox) -> None:
    _, envelope = await fast_agent.call("get_edit", {"edit_id": "edt_failed01", "wait_seconds": 4})
    assert (envelope["status"], envelope["waited_seconds"]) == ("failed", 0)
    assert len(sent(fast_sandbox)) == 1


async def test_waiting_for_the_output_reads_it_once_after_the_run_stops(
    fast_agent: Agent, fast_sandbox: RunningSandbox
) -> None:
    # The running edits complete 20 s (2 s real) from now: after the first read even when a busy
    # machine delays it by a second, and before the poll at 3.5 s.
    fast_sandbox.sandbox.advance(3600 - 20)
    _, envelope = await fast_agent.call(
        "get_edit", {"edit_id": "edt_running01", "include_output": True, "wait_seconds": 4}
    )
    assert (envelope["status"], envelope["output_omitted"]) == ("completed", False)
    assert envelope["edit"]["output"]["form_data"]
    first, *polls, last = [query for _, _, query in sent(fast_sandbox)]
    assert (first, last) == ("include_output=true", "include_output=true")
    assert polls
    assert set(polls) == {"include_output=false"}


async def test_a_failed_poll_keeps_the_cancel_that_worked(fast_agent: Agent, fast_sandbox: RunningSandbox) -> None:
    fast_sandbox.sandbox.add_fault(Fault(status=404, match="include_output=false"))
    _, envelope = await fast_agent.call("cancel_edit", {"edit_id": "edt_stopping01", "wait_seconds": 4})
    assert envelope["ok"] is True, envelope
    assert "Waiting ended early" in envelope["note"]
    assert "not_found" in envelope["note"]


async def test_a_wait_beyond_the_budget_is_refused_and_sends_nothing(agent: Agent, sandbox: RunningSandbox) -> None:
    _, envelope = await agent.call("cancel_edit", {"edit_id": "edt_running01", "wait_seconds": 30})
    assert envelope["error"]["code"] == "invalid_argument"
    assert "`wait_seconds` must be from 0 to 4" in envelope["error"]["message"]
    assert sandbox.sandbox.recorded() == []


async def test_a_wait_never_takes_a_call_past_its_budget(fast_sandbox: RunningSandbox) -> None:
    # Each poll stalls: the wait must still answer within the call's budget.
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=fast_sandbox.base_url, call_timeout=2)
    fast_sandbox.sandbox.add_fault(Fault(status=None, delay=5, match="include_output=false", times=5))
    async for agent in connect(RetabMCPServer(settings), "auto"):
        started = time.monotonic()
        _, envelope = await agent.call(
            "get_edit", {"edit_id": "edt_running01", "include_output": True, "wait_seconds": 1}
        )
        assert time.monotonic() - started < 2.5
        assert envelope["ok"] is True
        assert envelope["terminal"] is False
        assert "Waiting ended early" in envelope["note"]
        assert "the call ran out of time" in envelope["note"]


@pytest.mark.parametrize("mode", ERAS)
async def test_progress_is_reported_while_waiting_when_asked_for(fast_sandbox: RunningSandbox, mode: str) -> None:
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=fast_sandbox.base_url, call_timeout=5)
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async for agent in connect(RetabMCPServer(settings), mode):
        arguments = {"edit_id": "edt_running01", "wait_seconds": 1.2}
        await agent.client.call_tool("get_edit", arguments, progress_callback=on_progress)
        assert len(reports) >= 2
        assert reports[0] == (0.0, 1.2, "edit edt_running01: in_progress")
        assert [p for p, _, _ in reports] == sorted({p for p, _, _ in reports})  # strictly increasing
        assert all(total == 1.2 for _, total, _ in reports)
        reports.clear()
        await agent.client.call_tool("get_edit", arguments)  # no token: nothing sent, nothing breaks
        assert reports == []


@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_cancel_stops_the_polling_and_the_server_keeps_serving(
    fast_sandbox: RunningSandbox, mode: str
) -> None:
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=fast_sandbox.base_url, call_timeout=30)
    async for agent in connect(RetabMCPServer(settings), mode):
        async with anyio.create_task_group() as group:

            async def waiting(agent: Agent) -> None:
                await agent.client.call_tool("get_edit", {"edit_id": "edt_running01", "wait_seconds": 20})

            group.start_soon(waiting, agent)
            await anyio.sleep(1.2)  # the first read and two polls
            group.cancel_scope.cancel()
        count = len(fast_sandbox.sandbox.recorded())
        assert 2 <= count <= 4
        await anyio.sleep(2.5)  # polls would have gone on at 1.5 s, 3.5 s...
        assert len(fast_sandbox.sandbox.recorded()) == count
        _, envelope = await agent.call("get_edit", {"edit_id": "edt_running01"})
        assert envelope["ok"] is True


# -- choosing tools ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_read_only_serves_only_the_read_tools(settings: Settings, sandbox: RunningSandbox, mode: str) -> None:
    async for agent in connect(RetabMCPServer(replace(settings, read_only=True)), mode):
        names = sorted(tool.name for tool in (await agent.client.list_tools()).tools)
        assert names == sorted(endpoint.tool for endpoint in select(True, ()))
        assert all(
            tool.annotations and tool.annotations.read_only_hint for tool in (await agent.client.list_tools()).tools
        )
        with pytest.raises(MCPError) as caught:
            await agent.client.call_tool("cancel_edit", {"edit_id": "edt_running01"})
        assert caught.value.error.code == INVALID_PARAMS
    assert sandbox.sandbox.recorded() == []


async def test_tools_serves_only_the_named_ones(settings: Settings, sandbox: RunningSandbox) -> None:
    async for agent in connect(RetabMCPServer(replace(settings, tools=("get_edit", "cancel_edit"))), "auto"):
        assert sorted(tool.name for tool in (await agent.client.list_tools()).tools) == ["cancel_edit", "get_edit"]
        with pytest.raises(MCPError):
            await agent.client.call_tool("list_edits", {})
        _, envelope = await agent.call("get_edit", {"edit_id": "edt_running01"})
        assert envelope["ok"] is True
    assert len(sandbox.sandbox.recorded()) == 1


async def test_tools_without_an_edit_tool_serve_no_edit_resource(settings: Settings) -> None:
    async for agent in connect(RetabMCPServer(replace(settings, tools=("get_blueprint",))), "auto"):
        assert (await agent.client.list_resource_templates()).resource_templates == []


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"tools": ("cancel_everything",)}, "cancel_everything"),
        ({"tools": ("get_edit", "cancel_edit"), "read_only": True}, "cancel_edit"),
    ],
)
def test_a_tool_selection_that_cannot_be_served_names_the_problem(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RetabMCPServer(replace(Settings(), **changes))
    assert named in str(caught.value)
    assert "RETAB_MCP_TOOLS" in str(caught.value)


# The shape of the edit payload Retab's SDKs are tested with: no `status`, and the filled document
# as an https link rather than a data URL.
SDK_EXAMPLE_EDIT: Final = {
    "id": "edt_sdkexample01",
    "file": {"id": "file_01", "filename": "form.pdf", "mime_type": "application/pdf"},
    "model": "retab-small",
    "instructions": "Fill the form.",
    "config": {"color": "#000080"},
    "template_id": None,
    "output": {
        "form_data": [
            {
                "bbox": {"left": 0.1, "top": 0.1, "width": 0.2, "height": 0.02, "page": 1},
                "description": "Name",
                "type": "text",
                "key": "name",
                "value": "Acme Corp",
            }
        ],
        "filled_document": {"filename": "form_filled.pdf", "url": "https://files.example.com/form_filled.pdf"},
    },
    "filled_document_ref": {"id": "file_02", "filename": "form_filled.pdf", "mime_type": "application/pdf"},
    "usage": {"credits": 1},
    "created_at": "2026-01-01T00:00:00.000Z",
}


def answer_as_the_sdk_example(sandbox: RunningSandbox, match: str, times: int = 1) -> None:
    sandbox.sandbox.add_fault(Fault(status=200, match=match, body=json.dumps(SDK_EXAMPLE_EDIT), times=times))


async def test_a_status_retab_did_not_send_is_unknown_everywhere(agent: Agent, sandbox: RunningSandbox) -> None:
    for tool in ("get_edit", "cancel_edit"):
        answer_as_the_sdk_example(sandbox, "/v1/edits/edt_sdkexample01")
        _, envelope = await agent.call(tool, {"edit_id": "edt_sdkexample01"})
        assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, None, None), tool
        assert envelope["edit"]["status"] is None
        assert "did not say" in envelope["note"]
        assert "unknown" in envelope["note"]
    page = {"data": [SDK_EXAMPLE_EDIT], "list_metadata": {"before": None, "after": None}}
    sandbox.sandbox.add_fault(Fault(status=200, match="/v1/edits?", body=json.dumps(page)))
    _, listed = await agent.call("list_edits", {})
    [summary] = listed["edits"]
    assert (summary["status"], summary["terminal"]) == (None, None)


async def test_a_filled_document_given_as_a_link_is_passed_on_never_fetched(
    agent: Agent, sandbox: RunningSandbox
) -> None:
    answer_as_the_sdk_example(sandbox, "/v1/edits/edt_sdkexample01", times=2)
    _, envelope = await agent.call("get_edit", {"edit_id": "edt_sdkexample01", "include_output": True})
    link = envelope["edit"]["output"]["filled_document"]["url"]
    assert link == "https://files.example.com/form_filled.pdf"
    assert envelope["omitted_data"] == []
    with pytest.raises(MCPError) as caught:
        await agent.client.read_resource("retab://edits/edt_sdkexample01/filled_document")
    message = caught.value.error.message
    assert link in message
    assert "as a link" in message
    assert "no filled document" not in message
    # Only Retab was asked, never the link's host.
    assert {path for _, path, _ in sent(sandbox)} == {"/v1/edits/edt_sdkexample01"}


async def test_a_page_of_one_run_says_one_run(agent: Agent) -> None:
    _, page = await agent.call("list_edits", {"limit": 1})
    assert page["note"].startswith("1 edit, newest first")
