"""The distributions a release publishes, and the install paths the README gives.

`uv build` makes the wheel and the sdist; their contents and metadata are checked here, and the
wheel is installed into a fresh environment with none of the project's dependency groups and
driven over stdio against the sandbox, as `uvx retab-mcp` will run it once published. The clone
path is run as the README writes it: `uv run --no-default-groups retab-mcp config ...` in a
fresh copy of the repository, then the server is started from the entry it wrote.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from retab_mcp import __version__
from retab_mcp.endpoints import select
from retab_mcp.sandbox import SANDBOX_API_KEY, RunningSandbox
from tests.support import ROOT, clean_env, tool_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

UV = os.environ.get("UV") or shutil.which("uv")
# Packages that come with the test command only: none may reach a user's install.
TEST_ONLY = {
    "pytest",
    "pytest-xdist",
    "mypy",
    "ruff",
    "kubernetes-validate",
    "twine",
    "pydantic-ai-slim",
    "openai-agents",
}
# Every file of the package (code, py.typed, the output schemas it loads), and no bytecode.
RUNTIME_CODE = sorted(
    path.relative_to(ROOT).as_posix()
    for path in (ROOT / "retab_mcp").rglob("*")
    if path.is_file() and "__pycache__" not in path.parts
)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


def uv(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert UV is not None, "uv is not installed"
    done = subprocess.run([UV, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"uv {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def uv_env() -> dict[str, str]:
    """uv's environment without the project venv `uv run` exported for the tests themselves."""
    return {k: v for k, v in tool_env().items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    uv("build", "--out-dir", str(out), str(ROOT), env=uv_env())
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    return Built(wheel, sdist)


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        return email.message_from_bytes(archive.read(f"retab_mcp-{__version__}.dist-info/METADATA"))


def test_the_wheel_holds_the_runtime_code_and_its_type_marker_only(built: Built) -> None:
    assert built.wheel.name == f"retab_mcp-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as archive:
        names = archive.namelist()
    info = f"retab_mcp-{__version__}.dist-info"
    code = sorted(name for name in names if not name.startswith(info))
    assert code == RUNTIME_CODE
    assert "retab_mcp/py.typed" in code
    assert "retab_mcp/sandbox/state.py" in code  # the sandbox ships: `--sandbox` needs it
    assert sorted(name.removeprefix(info + "/") for name in names if name.startswith(info)) == [
        "METADATA",
        "RECORD",
        "WHEEL",
        "entry_points.txt",
        "licenses/LICENSE",
    ]
    with zipfile.ZipFile(built.wheel) as archive:
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "retab-mcp = retab_mcp.cli:main" in entry_points


def test_the_sdist_holds_what_builds_the_wheel_and_no_tests_or_benchmarks(built: Built) -> None:
    top = f"retab_mcp-{__version__}"
    with tarfile.open(built.sdist) as archive:
        files = sorted(PurePosixPath(m.name).relative_to(top).as_posix() for m in archive.getmembers() if m.isfile())
    assert set(RUNTIME_CODE) <= set(files)
    # Besides the code, only what building the wheel reads (hatchling adds the .gitignore it obeys).
    assert sorted(set(files) - set(RUNTIME_CODE)) == [
        ".gitignore",
        "LICENSE",
        "PKG-INFO",
        "README.md",
        "pyproject.toml",
    ]


def test_the_metadata_renders_on_pypi_and_matches_the_project(built: Built) -> None:
    # twine's check is PyPI's: the long description must render, the fields must be valid.
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.wheel), str(built.sdist)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert twine.returncode == 0, twine.stdout + twine.stderr
    assert twine.stdout.count("PASSED") == 2, twine.stdout

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    meta = metadata(built.wheel)
    assert (meta["Name"], meta["Version"], meta["Requires-Python"]) == ("retab-mcp", __version__, ">=3.11")
    assert meta["License-Expression"] == "MIT"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert sorted(meta.get_all("Requires-Dist") or []) == sorted(
        _normalized(requirement) for requirement in project["dependencies"]
    )
    # The MCP Registry proves ownership of the PyPI package by this line in its description.
    server = json.loads((ROOT / "manifests" / "server.json").read_text())
    assert f"mcp-name: {server['name']}" in meta.get_payload()
    assert [url.split(", ", 1)[0] for url in meta.get_all("Project-URL") or []] == list(project["urls"])


def _normalized(requirement: str) -> str:
    """`mcp>=2.3,<3` as the metadata spells it (`mcp<3,>=2.3`)."""
    from packaging.requirements import Requirement

    parsed = Requirement(requirement)
    return f"{parsed.name}{parsed.specifier}"


async def test_the_wheel_alone_installs_and_serves_over_stdio(built: Built, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    uv("venv", "--python", sys.executable, str(venv), env=uv_env())
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    uv("pip", "install", "--python", str(python), str(built.wheel), env=uv_env())
    installed = _distributions(python)
    assert {"retab-mcp", "mcp", "httpx", "pydantic", "sniffio"} <= installed
    assert not installed & TEST_ONLY, installed & TEST_ONLY

    command = venv / ("Scripts/retab-mcp.exe" if sys.platform == "win32" else "bin/retab-mcp")
    version = await anyio.run_process([command, "--version"], env=clean_env())
    assert version.stdout.decode().strip() == f"retab-mcp {__version__}"
    params = StdioServerParameters(command=str(command), args=["--sandbox"], env=clean_env(), cwd=str(tmp_path))
    async with Client(params) as client:
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        result = await client.call_tool("cancel_blueprint", {"blueprint_id": "fbp_a1b2c3d4e5f6"})
    assert tools == sorted(endpoint.tool for endpoint in select(False, ()))
    assert result.structured_content is not None
    assert (result.structured_content["status"], result.structured_content["terminal"]) == ("cancelled", True)


async def test_the_clone_path_writes_an_entry_that_starts_this_installation(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    clone = tmp_path / "retab-mcp"
    _copy_tracked_files(clone)
    config = tmp_path / "Claude" / "claude_desktop_config.json"
    # The README's command, with --config-path so the test writes no real client's file.
    done = uv(
        "run", "--no-default-groups", "retab-mcp", "config", "claude-desktop", "--write", "--config-path", str(config),
        cwd=clone, env=uv_env(),
    )  # fmt: skip
    assert f"Wrote the retab entry to {config}." in done.stdout
    entry = json.loads(config.read_text())["mcpServers"]["retab"]
    assert entry["command"] == str(clone / ".venv" / "bin" / "python")
    assert entry["args"] == ["-m", "retab_mcp"]
    # The first command installed the server's runtime dependencies and nothing from the test groups.
    installed = _distributions(Path(entry["command"]))
    assert "mcp" in installed
    assert not installed & TEST_ONLY, installed & TEST_ONLY

    # Started as Claude Desktop starts it: the entry's command, args and env, no PATH, elsewhere.
    env = {**entry["env"], "RETAB_API_KEY": SANDBOX_API_KEY, "RETAB_API_BASE_URL": sandbox.base_url}
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=str(tmp_path))
    async with Client(params) as client:
        result = await client.call_tool("get_edit", {"edit_id": "edt_completed01"})
    assert result.structured_content is not None
    assert result.structured_content["status"] == "completed"


def _distributions(python: Path) -> set[str]:
    probe = "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'].lower() for d in m.distributions()))"
    done = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, timeout=60, env=clean_env(), check=True
    )
    return {name.replace("_", "-") for name in done.stdout.split()}


def _copy_tracked_files(target: Path) -> None:
    """The repository as a fresh clone has it: tracked files (and new ones not yet committed)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


async def test_the_git_url_path_writes_an_entry_that_installs_from_the_same_url(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    # A repository of this tree stands in for the GitHub URL (`uvx --from git+URL` fetches HEAD).
    repository = tmp_path / "repository"
    _copy_tracked_files(repository)
    git = ["git", "-C", str(repository), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "this tree"]):
        await anyio.run_process([*git, *step])
    source = f"git+{repository.as_uri()}"
    config = tmp_path / "claude_desktop_config.json"
    uvx = str(Path(UV or "uv").with_name("uvx"))
    done = await anyio.run_process(
        [uvx, "--from", source, "retab-mcp", "config", "claude-desktop", "--write", "--config-path", str(config)],
        cwd=tmp_path,
        env=uv_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    entry = json.loads(config.read_text())["mcpServers"]["retab"]
    # Not `uvx retab-mcp`, which asks the package index: the same Git URL.
    assert entry["command"] == uvx
    assert entry["args"] == ["--from", source, "retab-mcp"]

    env = {**uv_env(), **entry["env"], "RETAB_API_KEY": SANDBOX_API_KEY, "RETAB_API_BASE_URL": sandbox.base_url}
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=str(tmp_path))
    async with Client(params) as client:
        result = await client.call_tool("cancel_edit", {"edit_id": "edt_running01"})
    assert result.structured_content is not None
    assert result.structured_content["status"] == "cancelled"
