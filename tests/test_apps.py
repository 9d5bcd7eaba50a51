"""The run view as MCP clients see it: every tool carries `_meta.ui.resourceUri`, the `ui://`
resource reads as `text/html;profile=mcp-app`, the Apps extension is advertised in both protocol
eras (the SDK's own client, declaring Apps, and the Inspector CLI), results are the same for
clients that render no App, and the view knows exactly the tools served."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from mcp.client import Client, ClientExtension
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import TextResourceContents

from retab_mcp.config import Settings
from retab_mcp.endpoints import select
from retab_mcp.server import RetabMCPServer
from retab_mcp.ui import RUNS_URI
from tests.support import ERAS, npm_command, tool_env

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
MAX_VIEW_BYTES = 60 * 1024


class AppsHost(ClientExtension):
    """What a host that renders MCP Apps declares."""

    identifier = EXTENSION_ID

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


async def connected(settings: Settings, mode: str, apps: bool = True) -> AsyncIterator[Client]:
    async with Client(RetabMCPServer(settings), mode=mode, extensions=[AppsHost()] if apps else None) as client:
        yield client


def view_config(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="config">(.*?)</script>', html, re.S)
    assert found is not None
    config: dict[str, Any] = json.loads(found.group(1))
    return config


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_every_tool_carries_the_view_and_the_resource_is_an_app(settings: Settings, mode: str) -> None:
    async for client in connected(settings, mode):
        tools = (await client.list_tools()).tools
        read = await client.read_resource(RUNS_URI)
        capabilities = client.server_capabilities
    assert sorted(tool.name for tool in tools) == sorted(e.tool for e in select(False, ()))
    assert all(tool.meta == {"ui": {"resourceUri": RUNS_URI}} for tool in tools)
    [content] = read.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == APP_MIME_TYPE
    html = content.text
    assert len(html.encode()) < MAX_VIEW_BYTES
    # Self-contained: nothing fetched (the hosts' default CSP allows no connection).
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|fetch\(|XMLHttpRequest|WebSocket|https?://", html)
    assert capabilities is not None
    assert capabilities.extensions is not None
    assert EXTENSION_ID in capabilities.extensions  # the 2025-11-25 handshake too


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_without_apps_gets_the_same_results(settings: Settings, sandbox: Any, mode: str) -> None:
    answers = []
    for apps in (True, False):
        async for client in connected(settings, mode, apps=apps):
            result = await client.call_tool("get_edit", {"edit_id": "edt_completed01"})
            answers.append((result.content, result.structured_content, result.is_error))
    assert answers[0] == answers[1]


@pytest.mark.anyio
async def test_the_view_knows_only_the_tools_served(settings: Settings) -> None:
    async for client in connected(replace(settings, read_only=True, toolsets=("all",)), "auto"):
        [content] = (await client.read_resource(RUNS_URI)).contents
    assert isinstance(content, TextResourceContents)
    kinds = view_config(content.text)["kinds"]
    assert len(kinds) == 8  # every kind of the run table, each from its row
    assert all(kind["cancel"] is None for kind in kinds)  # read-only: no Cancel button anywhere
    edit = next(kind for kind in kinds if kind["key"] == "edit")
    assert edit == {
        "key": "edit",
        "page_key": "edits",
        "noun": "edit",
        "plural": "edits",
        "id_arg": "edit_id",
        "read": "get_edit",
        "cancel": None,
        "list": "list_edits",
    }


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
def test_the_inspector_sees_the_view_on_the_tools_and_reads_it() -> None:
    server = [sys.executable, "-m", "retab_mcp", "--sandbox"]
    inspector = npm_command(INSPECTOR, "mcp-inspector")
    outputs = []
    for method in (["--method", "tools/list"], ["--method", "resources/read", "--uri", RUNS_URI]):
        done = subprocess.run(
            [inspector, "--cli", *server, *method, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=180,
            env=tool_env(),
        )
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout)["result"])
    tools, read = outputs
    assert {tool["_meta"]["ui"]["resourceUri"] for tool in tools["tools"]} == {RUNS_URI}
    assert read["contents"][0]["mimeType"] == APP_MIME_TYPE
    assert "<script" in read["contents"][0]["text"]
