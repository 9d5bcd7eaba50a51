"""Agent frameworks as real MCP clients of `retab-mcp --sandbox` over stdio.

Each framework runs a whole agent loop with its own scripted test model (no LLM): the model is
offered the tools the framework converted from tools/list, calls both cancels, a read-only read
and the list, and a cancel of an unknown id,
and then sees the tool results the framework produced. What the frameworks must get from this
server is checked against what the SDK's own client gets from it, not against copied values:
the same tools and arguments, and the 404 envelope with its `code` and `hint` intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pytest
from mcp.client import Client

from retab_mcp.config import Settings
from retab_mcp.server import RetabMCPServer
from tests.support import SERVER_COMMAND, clean_env

pytestmark = pytest.mark.anyio

BLUEPRINT_ID = "fbp_a1b2c3d4e5f6"  # seeded in the sandbox, in progress
EDIT_ID = "edt_01G34H8J2K"  # seeded in the sandbox, in progress
READ_ID = "edt_completed01"  # seeded in the sandbox, completed
UNKNOWN_EDIT_ID = "edt_unknown"  # the sandbox answers 404
# A stdio server's first start (imports, embedded sandbox) can be slow on a loaded machine.
STARTUP_TIMEOUT = 60


@dataclass(frozen=True)
class Expected:
    """What the server publishes and answers, seen through the SDK's own client."""

    input_schemas: dict[str, dict[str, Any]]
    not_found: dict[str, Any]


@pytest.fixture
async def expected(settings: Settings) -> Expected:
    # The default call budget, as the framework's `retab-mcp --sandbox` has: it sets the wait's maximum.
    async with Client(RetabMCPServer(replace(settings, call_timeout=Settings().call_timeout))) as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("cancel_edit", {"edit_id": UNKNOWN_EDIT_ID})
    assert result.structured_content is not None
    return Expected({tool.name: tool.input_schema for tool in tools}, result.structured_content)


def without_request_id(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope minus the one field that differs between two servers: the request id."""
    error = envelope.get("error")
    return {**envelope, "error": {**error, "request_id": None} if error else error}


def check_not_found(envelope: dict[str, Any], expected: Expected) -> None:
    assert envelope["ok"] is False
    assert envelope["error"]["code"] == "not_found"
    assert envelope["error"]["hint"], "the hint must reach the framework"
    assert without_request_id(envelope) == without_request_id(expected.not_found)


def check_read_and_list(read: object, listed: object) -> None:
    """The read-only tools' envelopes reach the framework whole."""
    assert isinstance(read, dict)
    assert isinstance(listed, dict)
    assert (read["ok"], read["edit"]["id"], read["status"], read["output_omitted"]) == (
        True,
        READ_ID,
        "completed",
        True,
    )
    assert READ_ID in [edit["id"] for edit in listed["edits"]]
    assert {edit["status"] for edit in listed["edits"]} == {"completed"}


async def test_pydantic_ai_lists_and_calls_both_tools_and_sees_the_404(expected: Expected) -> None:
    from fastmcp.client.transports import StdioTransport
    from pydantic_ai import Agent
    from pydantic_ai.mcp import MCPToolset
    from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.tools import ToolDefinition

    offered: list[ToolDefinition] = []
    returned: dict[str, ToolReturnPart] = {}

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            offered.extend(info.function_tools)
            return ModelResponse(
                parts=[
                    ToolCallPart("cancel_blueprint", {"blueprint_id": BLUEPRINT_ID}, tool_call_id="bp"),
                    ToolCallPart("cancel_edit", {"edit_id": EDIT_ID}, tool_call_id="ed"),
                    ToolCallPart("cancel_edit", {"edit_id": UNKNOWN_EDIT_ID}, tool_call_id="missing"),
                    ToolCallPart("get_edit", {"edit_id": READ_ID}, tool_call_id="read"),
                    ToolCallPart("list_edits", {"status": "completed"}, tool_call_id="list"),
                ]
            )
        request = messages[-1]
        assert isinstance(request, ModelRequest)
        returned.update({p.tool_call_id: p for p in request.parts if isinstance(p, ToolReturnPart)})
        return ModelResponse(parts=[TextPart("done")])

    toolset: MCPToolset[None] = MCPToolset(
        StdioTransport(command=SERVER_COMMAND[0], args=[*SERVER_COMMAND[1:], "--sandbox"], env=clean_env()),
        init_timeout=STARTUP_TIMEOUT,
    )
    run = await Agent(FunctionModel(model), toolsets=[toolset]).run("Cancel these runs.")
    assert run.output == "done"

    assert {tool.name: tool.parameters_json_schema for tool in offered} == expected.input_schemas
    assert set(returned) == {"bp", "ed", "missing", "read", "list"}, returned
    # Successes arrive as the structured envelope.
    blueprint, edit = returned["bp"].content, returned["ed"].content
    assert isinstance(blueprint, dict)
    assert isinstance(edit, dict)
    assert (blueprint["ok"], blueprint["blueprint"]["id"]) == (True, BLUEPRINT_ID)
    assert (edit["ok"], edit["edit"]["id"]) == (True, EDIT_ID)
    check_read_and_list(returned["read"].content, returned["list"].content)
    # The isError result becomes a retry prompt for the model whose text is the whole envelope.
    missing = returned["missing"]
    assert missing.outcome == "retried"
    assert isinstance(missing.content, str)
    check_not_found(json.loads(missing.content), expected)


async def test_openai_agents_lists_and_calls_both_tools_and_sees_the_404(expected: Expected) -> None:
    from agents import Agent, FunctionTool, RunConfig, Runner
    from agents.mcp import MCPServerStdio
    from agents.testing import ScriptedModel, assistant_message, function_call

    model = ScriptedModel(
        [
            [
                function_call("cancel_blueprint", {"blueprint_id": BLUEPRINT_ID}, call_id="bp"),
                function_call("cancel_edit", {"edit_id": EDIT_ID}, call_id="ed"),
                function_call("cancel_edit", {"edit_id": UNKNOWN_EDIT_ID}, call_id="missing"),
                function_call("get_edit", {"edit_id": READ_ID}, call_id="read"),
                function_call("list_edits", {"status": "completed"}, call_id="list"),
            ],
            [assistant_message("done")],
        ]
    )
    server = MCPServerStdio(
        {"command": SERVER_COMMAND[0], "args": [*SERVER_COMMAND[1:], "--sandbox"], "env": clean_env()},
        client_session_timeout_seconds=STARTUP_TIMEOUT,
    )
    async with server:
        agent = Agent(name="canceller", model=model, mcp_servers=[server])
        # No tracing: its exporter would try to reach OpenAI.
        run = await Runner.run(agent, "Cancel these runs.", run_config=RunConfig(tracing_disabled=True))
    assert run.final_output == "done"
    model.assert_complete()

    first, second = model.calls
    offered = {tool.name: tool for tool in first.tools if isinstance(tool, FunctionTool)}
    assert set(offered) == set(expected.input_schemas)
    for name, tool in offered.items():
        schema = expected.input_schemas[name]
        assert tool.params_json_schema["properties"] == schema["properties"]
        assert tool.params_json_schema.get("required") == schema.get("required")

    # The Agents SDK hands the model each result's text blocks: the summary, then the envelope.
    outputs = {item["call_id"]: item["output"] for item in second.input if item.get("type") == "function_call_output"}
    assert set(outputs) == {"bp", "ed", "missing", "read", "list"}, outputs
    envelopes = {call_id: json.loads(blocks[1]["text"]) for call_id, blocks in outputs.items()}
    assert (envelopes["bp"]["ok"], envelopes["bp"]["blueprint"]["id"]) == (True, BLUEPRINT_ID)
    assert (envelopes["ed"]["ok"], envelopes["ed"]["edit"]["id"]) == (True, EDIT_ID)
    check_read_and_list(envelopes["read"], envelopes["list"])
    check_not_found(envelopes["missing"], expected)
    summary = outputs["missing"][0]["text"]
    assert "not_found" in summary
    assert expected.not_found["error"]["hint"] in summary
