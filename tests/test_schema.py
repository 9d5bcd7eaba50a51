"""The published tool schemas. `snapshots/tools_list.json` is the reviewed copy of tools/list:
any schema change shows up as a diff of that file. Regenerate it deliberately with
`RETAB_MCP_UPDATE_SNAPSHOTS=1 uv run pytest tests/test_schema.py`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from retab_mcp.config import Settings
from retab_mcp.endpoints import BY_TOOL, select
from retab_mcp.server import RetabMCPServer
from tests.support import ERAS, connect

pytestmark = pytest.mark.anyio

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"

DOCUMENTED_FIELDS = {
    "FileBlueprint": {
        "id",
        "file",
        "object",
        "mode",
        "intent",
        "output",
        "status",
        "error",
        "created_at",
        "started_at",
        "completed_at",
    },
    "Edit": {
        "id",
        "file",
        "model",
        "config",
        "instructions",
        "template_id",
        "output",
        "status",
        "error",
        "filled_document_ref",
        "usage",
        "created_at",
    },
    "FileRef": {"id", "filename", "mime_type"},
    "PrimitiveError": {"code", "message", "details"},
    "EditConfig": {"color"},
    "EditResult": {"form_data", "filled_document"},
    "FormField": {"bbox", "description", "type", "key", "value"},
    "BBox": {"left", "top", "width", "height", "page"},
    "MIMEData": {"filename", "url"},
    "RetabUsage": {"credits"},
}
KNOWN_STATUSES = ["pending", "queued", "in_progress", "completed", "failed", "cancelled"]


async def list_tools(mode: str) -> list[dict[str, Any]]:
    async for agent in connect(RetabMCPServer(Settings()), mode):
        tools = (await agent.client.list_tools()).tools
        return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    raise AssertionError("unreachable")


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_list_matches_the_reviewed_snapshot(mode: str) -> None:
    tools = await list_tools(mode)
    if os.environ.get("RETAB_MCP_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(tools, indent=2, sort_keys=True) + "\n")
    assert tools == json.loads(SNAPSHOT.read_text()), "schema changed: review, then regenerate the snapshot"


# The default tools, from the run table.
DEFAULT = select(False, ())
CANCELS = {endpoint.tool: endpoint.kind.id_arg for endpoint in DEFAULT if endpoint.action == "cancel"}
READS = {endpoint.tool: endpoint.kind.id_arg for endpoint in DEFAULT if endpoint.action == "read"}
# What a host's model reads of a tool: its name, description and inputSchema.
CARD_LIMIT = 1536


async def test_five_tools_with_titles_and_honest_annotations() -> None:
    tools = {tool["name"]: tool for tool in await list_tools("auto")}
    assert sorted(tools) == sorted(endpoint.tool for endpoint in DEFAULT)
    for name, tool in tools.items():
        assert tool["title"]
        cancel = name in CANCELS
        assert tool["annotations"] == {
            "readOnlyHint": not cancel,
            "destructiveHint": cancel,
            "idempotentHint": True,
            "openWorldHint": True,
        }


async def test_each_description_says_what_it_changes_and_which_tool_to_use_instead() -> None:
    """Hosts forward neither the title nor the annotations to the model: the description must say it."""
    tools = {tool["name"]: tool for tool in await list_tools("auto")}
    for cancel, read in [(tool, BY_TOOL[tool].kind.tool("read")) for tool in CANCELS]:
        assert "cannot be resumed" in tools[cancel]["description"]
        assert f"use {read} (read-only)" in tools[cancel]["description"]
        assert "Read-only: changes nothing" in tools[read]["description"]
        assert f"use {cancel}" in tools[read]["description"]
    assert "Read-only: changes nothing" in tools["list_edits"]["description"]
    assert "cannot list blueprint runs" in tools["get_blueprint"]["description"]
    assert "Blueprint runs cannot be listed" in tools["list_edits"]["description"]


async def test_each_tool_card_fits_in_1_5_kib_and_declares_no_extra_arguments() -> None:
    for tool in await list_tools("auto"):
        card = {"name": tool["name"], "description": tool["description"], "inputSchema": tool["inputSchema"]}
        size = len(json.dumps(card, separators=(",", ":")).encode())
        assert size <= CARD_LIMIT, f"{tool['name']}: {size} bytes"
        assert tool["inputSchema"]["additionalProperties"] is False


@pytest.mark.parametrize(("tool", "arg"), [*CANCELS.items(), *READS.items()])
async def test_input_schema_bounds_the_id_and_the_wait(tool: str, arg: str) -> None:
    schema = {t["name"]: t for t in await list_tools("auto")}[tool]["inputSchema"]
    assert schema["required"] == [arg]
    assert set(schema["properties"]) == {arg, "include_output", "wait_seconds"}
    id_schema = schema["properties"][arg]
    assert (id_schema["type"], id_schema["pattern"]) == ("string", "^[A-Za-z0-9_-]{1,128}$")
    assert (id_schema["minLength"], id_schema["maxLength"]) == (1, 128)
    assert schema["properties"]["include_output"] == {
        **schema["properties"]["include_output"],
        "type": "boolean",
        "default": False,
    }
    # The default call budget is 30 s: a wait may take 25 of them, and says larger values are refused.
    wait = schema["properties"]["wait_seconds"]
    assert (wait["type"], wait["minimum"], wait["maximum"], wait["default"]) == ("number", 0, 25, 0)
    assert "refused" in wait["description"]


async def test_the_wait_maximum_follows_the_call_budget() -> None:
    async for agent in connect(RetabMCPServer(Settings(call_timeout=60)), "auto"):
        tools = {tool.name: tool for tool in (await agent.client.list_tools()).tools}
        assert tools["get_edit"].input_schema["properties"]["wait_seconds"]["maximum"] == 55


async def test_list_edits_declares_its_filters_and_bounds() -> None:
    schema = {t["name"]: t for t in await list_tools("auto")}["list_edits"]["inputSchema"]
    assert schema["required"] == []
    properties = schema["properties"]
    assert set(properties) == {"status", "limit", "after", "filename"}
    assert (properties["limit"]["minimum"], properties["limit"]["maximum"], properties["limit"]["default"]) == (
        1,
        100,
        10,
    )
    assert {"enum": KNOWN_STATUSES, "type": "string"} in properties["status"]["anyOf"]


@pytest.mark.parametrize(
    ("tool", "run_field", "run_model"),
    [(tool, BY_TOOL[tool].kind.key, BY_TOOL[tool].kind.run_model.__name__) for tool in [*CANCELS, *READS]],
)
async def test_output_schema_is_one_envelope_carrying_every_documented_field(
    tool: str, run_field: str, run_model: str
) -> None:
    schema = {t["name"]: t for t in await list_tools("auto")}[tool]["outputSchema"]
    assert {"ok", "status", "terminal", "error", run_field} <= set(schema["required"])
    defs = schema["$defs"]
    nested = {
        "FileBlueprint": ["FileRef", "PrimitiveError"],
        "Edit": [
            "FileRef",
            "PrimitiveError",
            "EditConfig",
            "EditResult",
            "FormField",
            "BBox",
            "MIMEData",
            "RetabUsage",
        ],
    }
    for model in [run_model, *nested[run_model]]:
        assert DOCUMENTED_FIELDS[model] <= set(defs[model]["properties"]), model
    codes = defs["ErrorCode"]["enum"]
    for code in [
        "invalid_argument",
        "configuration_error",
        "unauthorized",
        "forbidden",
        "not_found",
        "conflict",
        "invalid_request",
        "rate_limited",
        "upstream_unavailable",
        "timeout",
        "network_error",
        "invalid_response",
    ]:
        assert code in codes
    status_options = schema["properties"]["status"]["anyOf"]
    assert {"enum": KNOWN_STATUSES, "type": "string"} in status_options
    assert {"type": "string"} in status_options  # a future status still validates


async def test_list_edits_output_is_an_envelope_of_summaries() -> None:
    schema = {t["name"]: t for t in await list_tools("auto")}["list_edits"]["outputSchema"]
    assert {"ok", "edits", "next_after", "note", "error"} <= set(schema["required"])
    summary = schema["$defs"]["RunSummary"]
    assert set(summary["properties"]) == {"id", "status", "terminal", "created_at", "filename"}


async def test_every_schema_node_is_typed() -> None:
    """Strict function-calling clients reject untyped (`Any`) schemas."""

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                for name, prop in node["properties"].items():
                    assert {"type", "$ref", "anyOf", "enum", "const"} & set(prop), f"{where}.{name} is untyped"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for tool in await list_tools("auto"):
        walk(tool["inputSchema"], tool["name"] + ".input")
        walk(tool["outputSchema"], tool["name"] + ".output")
