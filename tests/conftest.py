"""Shared fixtures: one Retab sandbox on a real loopback socket for the whole run, reset before
every test, and an MCP client (the SDK's own, as `support.Agent`) that checks every result it
sees against the tool's published outputSchema. Helpers live in tests/support.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from retab_mcp.config import Settings
from retab_mcp.sandbox import SANDBOX_API_KEY, RunningSandbox, serve_in_thread
from retab_mcp.server import RetabMCPServer
from tests.support import ERAS, Agent, connect

# The suite starts the server as a process dozens of times, as users start it: with bytecode.
# Where PYTHONDONTWRITEBYTECODE is set, every one of those processes would compile the SDK's
# modules again (~1.4 s of CPU per start instead of ~0.6 s); without it, the first writes them.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


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


@pytest.fixture(params=ERAS)
async def agent(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Agent]:
    async for connected in connect(RetabMCPServer(settings), request.param):
        yield connected
