"""Shared fixtures: one Retab sandbox on a real loopback socket for the whole run, reset before
every test, and an MCP client (the SDK's own) that checks every result it sees against the
tool's published outputSchema."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jsonschema
import pytest
from mcp.client import Client
from mcp.types import CallToolResult, TextContent

from retab_mcp.config import Settings
from retab_mcp.sandbox import SANDBOX_API_KEY, RunningSandbox, serve_in_thread
from retab_mcp.server import RetabMCPServer

# The suite starts the server as a process dozens of times, as users start it: with bytecode.
# Where PYTHONDONTWRITEBYTECODE is set, every one of those processes would compile the SDK's
# modules again (~1.4 s of CPU per start instead of ~0.6 s); without it, the first writes them.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ERAS = ["legacy", "auto"]  # 2025-11-25 (initialize handshake) and 2026-07-28 (sessionless)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _running_sandbox() -> Iterator[RunningSandbox]:
    with serve_in_thread() as running:
        yield running


@pytest.fixture
def sandbox(_running_sandbox: RunningSandbox) -> RunningSandbox:
    _running_sandbox.sandbox.reset()
    return _running_sandbox


@pytest.fixture
def settings(sandbox: RunningSandbox) -> Settings:
    return Settings(api_key=SANDBOX_API_KEY, base_url=sandbox.base_url, call_timeout=5, max_attempts=4)


class Agent:
    """The SDK's `Client` plus the check every test wants: each structured result validates
    against the outputSchema that tools/list published, errors included."""

    def __init__(self, client: Client, schemas: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.schemas = schemas
        # One checked validator per tool: jsonschema.validate() would re-check the schema each call.
        self.validators = {name: validator_for(schema) for name, schema in schemas.items()}

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[CallToolResult, dict[str, Any]]:
        result = await self.client.call_tool(tool, arguments)
        assert result.structured_content is not None, result
        self.validators[tool].validate(result.structured_content)
        assert result.is_error is (not result.structured_content["ok"])
        return result, result.structured_content


def validator_for(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    # Checking a schema against its metaschema costs ~25 ms and every test connects an Agent: check
    # each distinct schema once per run.
    return _checked_validator(json.dumps(schema, sort_keys=True))


@functools.cache
def _checked_validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def texts(result: CallToolResult) -> list[str]:
    """The text blocks of a result: a summary line, then the envelope as JSON."""
    assert all(isinstance(block, TextContent) for block in result.content)
    return [block.text for block in result.content if isinstance(block, TextContent)]


async def connect(server: RetabMCPServer, mode: str) -> AsyncIterator[Agent]:
    async with Client(server, mode=mode) as client:
        tools = (await client.list_tools()).tools
        yield Agent(client, {tool.name: tool.output_schema or {} for tool in tools})


@pytest.fixture(params=ERAS)
async def agent(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Agent]:
    async for connected in connect(RetabMCPServer(settings), request.param):
        yield connected
