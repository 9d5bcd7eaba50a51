"""End to end with the real MCP Inspector CLI against `retab-mcp --sandbox` over stdio: what a
developer sees with the quick-start command. Exit codes are the Inspector's: 0 ok, 5 isError,
6 schema portability errors under --strict."""

from __future__ import annotations

import json
import shutil

import pytest

from retab_mcp.endpoints import ENDPOINTS, select
from tests.support import SANDBOX_SERVER, inspector

pytestmark = pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")


def test_tools_list_is_clean_under_strict_lint() -> None:
    code, output, stderr = inspector("--method", "tools/list", "--strict")
    assert code == 0, stderr
    assert "schemaFindings" not in output
    assert "Schema portability" not in stderr
    tools = {tool["name"]: tool for tool in output["result"]["tools"]}
    assert sorted(tools) == sorted(endpoint.tool for endpoint in select(False, ()))
    assert tools["cancel_edit"]["annotations"]["destructiveHint"] is True
    assert tools["get_edit"]["annotations"]["readOnlyHint"] is True
    assert tools["cancel_edit"]["inputSchema"]["properties"]["edit_id"]["maxLength"] == 128
    assert "edit" in tools["cancel_edit"]["outputSchema"]["properties"]


def test_a_successful_cancel_exits_0() -> None:
    code, output, stderr = inspector(
        "--method",
        "tools/call",
        "--tool-name",
        "cancel_blueprint",
        "--tool-args-json",
        '{"blueprint_id": "fbp_a1b2c3d4e5f6"}',
        "-q",
    )
    assert code == 0, stderr
    envelope = output["result"]["structuredContent"]
    assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, "cancelled", True)


def test_an_error_exits_5_with_the_structured_payload_printed() -> None:
    code, output, _ = inspector(
        "--method",
        "tools/call",
        "--tool-name",
        "cancel_blueprint",
        "--tool-args-json",
        '{"blueprint_id": "edt_01G34H8J2K"}',
        "-q",
    )
    assert code == 5
    result = output["result"]
    assert result["isError"] is True
    error = result["structuredContent"]["error"]
    assert (error["code"], error["http_status"]) == ("not_found", 404)
    assert "cancel_edit" in error["hint"]
    assert json.loads(result["content"][1]["text"]) == result["structuredContent"]


def test_get_edit_reads_a_run_and_waits_for_it_to_stop() -> None:
    code, output, stderr = inspector(
        "--method",
        "tools/call",
        "--tool-name",
        "get_edit",
        "--tool-args-json",
        '{"edit_id": "edt_failed01", "wait_seconds": 5}',
        "-q",
    )
    assert code == 0, stderr
    envelope = output["result"]["structuredContent"]
    assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, "failed", True)
    assert envelope["edit"]["error"]["code"]


def test_list_edits_finds_the_running_edits() -> None:
    code, output, stderr = inspector(
        "--method",
        "tools/call",
        "--tool-name",
        "list_edits",
        "--tool-args-json",
        '{"status": "in_progress", "limit": 100}',
        "-q",
    )
    assert code == 0, stderr
    envelope = output["result"]["structuredContent"]
    ids = [edit["id"] for edit in envelope["edits"]]
    assert {"edt_01G34H8J2K", "edt_running01"} <= set(ids)
    assert all(edit["terminal"] is False for edit in envelope["edits"])


def test_read_only_lists_and_serves_only_the_read_tools() -> None:
    code, output, stderr = inspector("--method", "tools/list", target=[*SANDBOX_SERVER, "--read-only"])
    assert code == 0, stderr
    assert sorted(tool["name"] for tool in output["result"]["tools"]) == sorted(
        endpoint.tool for endpoint in select(True, ())
    )
    code, output, _ = inspector(
        "--method",
        "tools/call",
        "--tool-name",
        "cancel_edit",
        "--tool-args-json",
        '{"edit_id": "edt_running01"}',
        target=[*SANDBOX_SERVER, "--read-only"],
    )
    assert code != 0
    assert "structuredContent" not in json.dumps(output)


def test_every_toolset_lists_the_whole_table_clean_under_strict_lint() -> None:
    code, output, stderr = inspector(
        "--method", "tools/list", "--strict", target=[*SANDBOX_SERVER, "--toolsets", "all"]
    )
    assert code == 0, stderr
    assert "schemaFindings" not in output
    assert [tool["name"] for tool in output["result"]["tools"]] == [endpoint.tool for endpoint in ENDPOINTS]
    assert len(ENDPOINTS) == 22
