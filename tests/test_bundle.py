"""The MCP Bundle with the real `mcpb` tool (pinned): validate the manifest, pack the bundle,
unpack it, and start the server from the unpacked files the way the manifest tells the host
to, against the sandbox on loopback. Skipped, with the reason, only when npx is missing."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from retab_mcp.config import Settings
from retab_mcp.sandbox import SANDBOX_API_KEY
from retab_mcp.server import RetabMCPServer
from scripts import build_mcpb
from tests.support import tool_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("npx") is None, reason="npx (Node.js) is not installed, so the mcpb tool cannot run"
    ),
]


RUN_ENVIRONMENT = {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "UV_LOCKED", "UV_FROZEN", "UV_NO_SYNC"}


def mcpb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*build_mcpb.MCPB, *args], capture_output=True, text=True, timeout=300, check=False, env=tool_env()
    )


def test_mcpb_validate_accepts_the_manifest() -> None:
    done = mcpb("validate", str(build_mcpb.MANIFEST_DIR / "manifest.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Manifest schema validation passes" in done.stdout
    assert "ERROR" not in done.stdout


def test_mcpb_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    """The validator has teeth: the same manifest with a required field gone fails."""
    manifest = json.loads((build_mcpb.MANIFEST_DIR / "manifest.json").read_text())
    del manifest["server"]["entry_point"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    done = mcpb("validate", str(tmp_path / "manifest.json"))
    assert done.returncode != 0
    assert "entry_point" in done.stdout


def substitute(value: str, variables: dict[str, str]) -> str:
    for name, replacement in variables.items():
        value = value.replace(f"${{{name}}}", replacement)
    assert "${" not in value, f"unsubstituted variable in {value!r}"
    return value


@pytest.mark.anyio
async def test_the_packed_bundle_installs_starts_and_lists_the_tools(settings: Settings, tmp_path: Path) -> None:
    staged = build_mcpb.stage(tmp_path / "staged")
    bundle = tmp_path / "retab-mcp.mcpb"
    packed = mcpb("pack", str(staged), str(bundle))
    assert packed.returncode == 0, packed.stdout + packed.stderr
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
    assert {"manifest.json", "icon.png", "pyproject.toml", "uv.lock", "README.md", "retab_mcp/__main__.py"} <= names
    assert not any("__pycache__" in name for name in names)

    unpacked = tmp_path / "installed"
    done = mcpb("unpack", str(bundle), str(unpacked))
    assert done.returncode == 0, done.stdout + done.stderr
    # The host installs from this pyproject: the repository's test groups must not come along,
    # its uv settings must (system-certs: installs work behind a TLS-inspecting proxy).
    bundled = tomllib.loads((unpacked / "pyproject.toml").read_text())
    assert "dependency-groups" not in bundled
    assert bundled["tool"]["uv"] == {"system-certs": True}
    # ... at the versions this repository locks and tests: the bundle's lock matches its pyproject
    # and holds the repository's locked version of every package it has.
    check = await anyio.run_process(
        [shutil.which("uv") or "uv", "lock", "--check"], cwd=unpacked, env=tool_env(), check=False
    )
    assert check.returncode == 0, check.stderr.decode()
    locked = locked_versions(unpacked / "uv.lock")
    repository = locked_versions(build_mcpb.ROOT / "uv.lock")
    assert {"httpx", "mcp", "pydantic", "pydantic-core", "anyio", "starlette"} <= set(locked)
    assert {name: repository[name] for name in locked} == locked
    assert not {"pytest", "mypy", "openai-agents"} & set(locked)

    # What the host runs: mcp_config, with its variables filled in as Claude Desktop fills them.
    manifest: dict[str, Any] = json.loads((unpacked / "manifest.json").read_text())
    config = manifest["server"]["mcp_config"]
    variables = {
        "__dirname": str(unpacked),
        "user_config.api_key": SANDBOX_API_KEY,
        "user_config.base_url": settings.base_url,
        # What Claude Desktop fills in for the optional settings left at their defaults.
        "user_config.read_only": "false",
        "user_config.tools": "",
    }
    uv = shutil.which(config["command"])  # Claude Desktop brings its own uv for `server.type: "uv"`
    assert uv is not None, f"{config['command']} is not on PATH"
    # uv must build the bundle's own environment, not reuse or re-sync the one running the tests.
    env = {k: v for k, v in tool_env().items() if k not in RUN_ENVIRONMENT}
    env |= {name: substitute(value, variables) for name, value in config["env"].items()}
    params = StdioServerParameters(
        command=uv, args=[substitute(arg, variables) for arg in config["args"]], env=env, cwd=str(tmp_path)
    )
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("cancel_blueprint", {"blueprint_id": "fbp_running01"})

    async with Client(RetabMCPServer(settings)) as reference:
        assert [t.name for t in tools] == [t.name for t in (await reference.list_tools()).tools]
    assert [t["name"] for t in manifest["tools"]] == [t.name for t in tools]
    # The key and base URL reached the server through the bundle's env mapping.
    assert result.structured_content is not None
    assert result.structured_content["ok"] is True, result.structured_content
    assert (unpacked / ".venv").is_dir()  # installed from the bundle, not from this checkout
    probe = "import importlib.metadata as m; print({d.metadata['Name'].lower(): d.version for d in m.distributions()})"
    python = unpacked / ".venv" / "bin" / "python"
    installed = ast.literal_eval((await anyio.run_process([python, "-c", probe])).stdout.decode())
    for name in ("httpx", "mcp", "pydantic"):
        assert installed[name] == locked[name], name


def locked_versions(lock: Path) -> dict[str, str]:
    """Every package of a uv.lock but the project itself, by name: its version."""
    packages = tomllib.loads(lock.read_text())["package"]
    return {p["name"]: p["version"] for p in packages if p["name"] != "retab-mcp"}
