"""The SDK's internals retab-mcp reaches (retab_mcp/_sdk.py) are still there, with the shape used:
an SDK upgrade that moves one fails here, loudly, instead of at a user's first call."""

from __future__ import annotations

import importlib.metadata
import inspect
import tomllib
from contextvars import ContextVar

from mcp.server import MCPServer
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.lowlevel import Server
from mcp.types import ReadResourceRequestParams
from packaging.requirements import Requirement

from retab_mcp import _sdk
from tests.support import ROOT


def test_the_installed_sdk_is_in_the_range_the_seam_was_read_from() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [mcp] = [Requirement(line) for line in dependencies if Requirement(line).name == "mcp"]
    assert mcp.specifier.contains(importlib.metadata.version("mcp"))
    # A new range is a new SDK to read the seam from again: its docstring names the version read.
    assert "mcp 2.3.0" in (_sdk.__doc__ or "")
    assert str(mcp.specifier) == "<3,>=2.3"


def test_the_lowlevel_server_and_its_handler_registry_are_there() -> None:
    server: MCPServer[None] = MCPServer("probe")
    lowlevel = _sdk.lowlevel(server)
    assert isinstance(lowlevel, Server)
    assert list(inspect.signature(lowlevel.add_request_handler).parameters)[:3] == ["method", "params_type", "handler"]
    assert callable(lowlevel.run)
    assert callable(lowlevel.create_initialization_options)


def test_the_sdks_own_resource_read_is_there() -> None:
    read = MCPServer._handle_read_resource
    assert inspect.iscoroutinefunction(read)
    assert list(inspect.signature(read).parameters) == ["self", "ctx", "params"]
    params = inspect.signature(read).parameters["params"].annotation
    assert params in (ReadResourceRequestParams, "ReadResourceRequestParams")


def test_the_session_owners_are_there() -> None:
    server: MCPServer[None] = MCPServer("probe")
    server.streamable_http_app()
    manager = server.session_manager
    assert manager._session_owners == {}
    manager._session_owners["s1"] = AuthorizationContext(client_id="fingerprint", issuer=None, subject=None)
    assert list(_sdk.session_owners(manager)) == ["fingerprint"]


def test_the_session_manager_reads_json_response_per_request() -> None:
    """The SDK builds each request's transport from `manager.json_response`, read then; the seam
    turns that attribute into the request's own choice."""
    choice: ContextVar[bool | None] = ContextVar("choice", default=None)
    server: MCPServer[None] = MCPServer("probe")
    server.streamable_http_app(json_response=True)
    manager = server.session_manager
    _sdk.answer_per_request(manager, choice)
    assert manager.json_response is True
    choice.set(False)
    assert manager.json_response is False
    assert "self.json_response" in inspect.getsource(type(manager).__mro__[1])
