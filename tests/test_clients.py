"""`retab-mcp config CLIENT`: the printed entry starts the server as a desktop app would, and
`--write` merges into a real config file safely (tests always pass --config-path)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from retab_mcp import clients
from retab_mcp.cli import main
from retab_mcp.config import Settings
from retab_mcp.sandbox import SANDBOX_API_KEY
from retab_mcp.server import RetabMCPServer
from tests.support import ROOT, SERVER_COMMAND, clean_env

OTHERS: dict[str, Any] = {
    "mcpServers": {
        "filesystem": {"command": "/usr/local/bin/npx", "args": ["-y", "@modelcontextprotocol/server-filesystem"]},
        "weather": {"command": "/opt/weather/bin/server", "env": {"WEATHER_KEY": "w-123"}},
    },
    "globalShortcut": "Alt+Space",
    "preferences": {"menuBarEnabled": True},
}


def config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVER_COMMAND, "config", *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.*.bak"))


def test_write_round_trips_a_config_file_with_other_servers(tmp_path: Path) -> None:
    path = tmp_path / "Claude" / "claude_desktop_config.json"
    path.parent.mkdir()
    original = json.dumps(OTHERS, indent=4)  # not our formatting: the backup must keep the bytes
    path.write_text(original)
    path.chmod(0o640)

    first = config("claude-desktop", "--launcher", "python", "--write", "--config-path", str(path))
    assert first.returncode == 0, first.stderr
    written = json.loads(path.read_text())
    retab = written["mcpServers"].pop("retab")
    assert written == OTHERS  # every other server and key, untouched
    assert retab == {
        "command": os.path.abspath(sys.executable),
        "args": ["-m", "retab_mcp"],
        "env": {"RETAB_API_KEY": clients.KEY_PLACEHOLDER},
    }
    [backup] = backups(path)
    assert backup.read_text() == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the file keeps its mode
    assert str(backup) in first.stdout

    # The same entry again: nothing to do, no new backup.
    again = config("claude-desktop", "--launcher", "python", "--write", "--config-path", str(path))
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert len(backups(path)) == 1

    # A different entry is refused without --force, and the file is left as it was.
    before = path.read_bytes()
    refused = config(
        "claude-desktop", "--api-key-env", "--write", "--config-path", str(path), RETAB_API_KEY=SANDBOX_API_KEY
    )
    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert path.read_bytes() == before
    assert len(backups(path)) == 1

    forced = config(
        "claude-desktop",
        "--api-key-env",
        "--write",
        "--force",
        "--config-path",
        str(path),
        RETAB_API_KEY=SANDBOX_API_KEY,
    )
    assert forced.returncode == 0, forced.stderr
    replaced = json.loads(path.read_text())
    assert replaced["mcpServers"]["retab"]["env"] == {"RETAB_API_KEY": SANDBOX_API_KEY}
    assert {k: v for k, v in replaced["mcpServers"].items() if k != "retab"} == OTHERS["mcpServers"]
    # A second backup, of the file as it was just before; the first one is kept.
    assert sorted(b.read_bytes() for b in backups(path)) == sorted([original.encode(), before])


def test_write_creates_a_missing_file_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "mcp.json"
    done = config("cursor", "--write", "--config-path", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(path.read_text())["mcpServers"]["retab"]["env"] == {"RETAB_API_KEY": clients.KEY_PLACEHOLDER}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backups(path) == []


@pytest.mark.parametrize("content", ['{"mcpServers": {}} // mine\n', "[1, 2]", '{"mcpServers": []}'])
def test_write_refuses_a_file_it_cannot_merge_and_leaves_it_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(content)
    done = config("claude-desktop", "--write", "--config-path", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith("retab-mcp config: ")
    assert path.read_text() == content
    assert backups(path) == []


def test_force_keeps_the_key_and_settings_the_user_put_in_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    assert config("claude-desktop", "--launcher", "python", "--write", "--config-path", str(path)).returncode == 0
    pasted = "rt_live_pasted_by_hand_4f9a"
    doc = json.loads(path.read_text())
    doc["mcpServers"]["retab"]["env"] = {"RETAB_API_KEY": pasted, "RETAB_MCP_READ_ONLY": "true"}
    path.write_text(json.dumps(doc))

    # The same entry but for the key: nothing to replace, so no --force needed.
    same = config("claude-desktop", "--launcher", "python", "--write", "--config-path", str(path))
    assert (same.returncode, "nothing to do" in same.stdout) == (0, True), same.stderr
    # Another way to start it (the clone moved, or uvx): replaced, with the user's env kept.
    moved = config("claude-desktop", "--launcher", "uvx", "--write", "--force", "--config-path", str(path))
    assert moved.returncode == 0, moved.stderr
    retab = json.loads(path.read_text())["mcpServers"]["retab"]
    assert retab["args"][-1] == "retab-mcp"
    assert retab["env"] == {"RETAB_API_KEY": pasted, "RETAB_MCP_READ_ONLY": "true"}
    assert pasted not in moved.stdout + moved.stderr
    assert clients.KEY_PLACEHOLDER not in moved.stdout
    assert "Kept the Retab API key" in moved.stdout
    # A key given on purpose replaces it.
    given = config(
        "claude-desktop", "--api-key-env", "--write", "--force", "--config-path", str(path), RETAB_API_KEY="rt_live_new"
    )
    assert given.returncode == 0, given.stderr
    assert json.loads(path.read_text())["mcpServers"]["retab"]["env"]["RETAB_API_KEY"] == "rt_live_new"


JSONC = """// VS Code's own format: comments and trailing commas.
{
  "servers": {
    /* a server of the user's */
    "github": {"type": "http", "url": "https://x.example//not-a-comment/*nor-this*/", "note": "a,}"},
  },
  "inputs": [],
}
"""


def test_vscode_reads_its_jsonc_file_and_says_the_comments_stay_in_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(JSONC)
    done = config("vscode", "--write", "--config-path", str(path))
    assert done.returncode == 0, done.stderr
    written = json.loads(path.read_text())  # plain JSON from here on
    assert written["servers"]["github"] == {
        "type": "http",
        "url": "https://x.example//not-a-comment/*nor-this*/",
        "note": "a,}",
    }
    assert set(written["servers"]) == {"github", "retab"}
    [backup] = backups(path)
    assert backup.read_text() == JSONC
    [line] = done.stderr.splitlines()
    assert "comments" in line
    assert str(backup) in done.stdout


def test_vscode_refuses_a_comment_that_never_ends_and_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"servers": {}} /* unfinished')
    done = config("vscode", "--write", "--config-path", str(path))
    assert done.returncode == 1
    assert "never ends" in done.stderr
    assert path.read_text() == '{"servers": {}} /* unfinished'
    assert backups(path) == []


def test_vscode_prompts_for_the_key_and_keeps_other_inputs(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    other_input = {"type": "promptString", "id": "github-token", "password": True}
    path.write_text(json.dumps({"servers": {"github": {"type": "http", "url": "https://x"}}, "inputs": [other_input]}))
    done = config("vscode", "--write", "--config-path", str(path))
    assert done.returncode == 0, done.stderr
    written = json.loads(path.read_text())
    assert set(written["servers"]) == {"github", "retab"}
    retab = written["servers"]["retab"]
    assert retab["type"] == "stdio"
    prompt = retab["env"]["RETAB_API_KEY"]
    assert prompt == f"${{input:{clients.VSCODE_KEY_INPUT['id']}}}"
    assert written["inputs"] == [other_input, clients.VSCODE_KEY_INPUT]
    # Idempotent: the input is not added twice.
    assert config("vscode", "--write", "--config-path", str(path)).returncode == 0
    assert json.loads(path.read_text())["inputs"] == written["inputs"]


def test_the_key_is_copied_only_when_asked() -> None:
    placeholder = config("cursor", RETAB_API_KEY=SANDBOX_API_KEY)
    assert SANDBOX_API_KEY not in placeholder.stdout + placeholder.stderr
    copied = config("cursor", "--api-key-env", RETAB_API_KEY=SANDBOX_API_KEY)
    assert json.loads(copied.stdout)["mcpServers"]["retab"]["env"] == {"RETAB_API_KEY": SANDBOX_API_KEY}
    other_var = config("cursor", "--api-key-env", "MY_RETAB_KEY", MY_RETAB_KEY="rt_live_from_another_var")
    assert json.loads(other_var.stdout)["mcpServers"]["retab"]["env"]["RETAB_API_KEY"] == "rt_live_from_another_var"
    unset = config("cursor", "--api-key-env")
    assert unset.returncode == 1
    assert "RETAB_API_KEY is not set" in unset.stderr


@pytest.mark.parametrize("client", sorted(clients.CLIENTS))
@pytest.mark.parametrize("launcher", ["python", "uvx"])
def test_every_client_gets_an_absolute_command(client: str, launcher: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", client, "--launcher", launcher]) == 0
    doc = json.loads(capsys.readouterr().out)
    entry = doc[clients.CLIENTS[client].servers_key]["retab"]
    assert Path(entry["command"]).is_absolute()
    assert os.access(entry["command"], os.X_OK)
    # uvx runs this same retab-mcp: here the checkout the tests run from (test below for the others).
    assert entry["args"] == (["--from", str(ROOT), "retab-mcp"] if launcher == "uvx" else ["-m", "retab_mcp"])


@pytest.mark.anyio
async def test_the_printed_entry_starts_the_server_without_a_path(settings: Settings, tmp_path: Path) -> None:
    """Spawn exactly what the entry says, with its env, no usable PATH and another cwd, as a desktop app would."""
    done = config("claude-desktop")
    entry = json.loads(done.stdout)["mcpServers"]["retab"]
    env = {**entry["env"], "RETAB_API_KEY": SANDBOX_API_KEY, "RETAB_API_BASE_URL": settings.base_url}
    env["PATH"] = str(tmp_path / "nothing-here")
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=str(tmp_path))
    async with Client(params) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("cancel_edit", {"edit_id": "edt_running01"})
    assert result.structured_content is not None
    assert result.structured_content["ok"] is True
    async with Client(RetabMCPServer(settings)) as reference:
        assert listed == {tool.name for tool in (await reference.list_tools()).tools}


def write_script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="uses /bin/sh scripts as stand-ins for uv")
def test_auto_picks_uvx_only_inside_a_throwaway_uvx_environment(tmp_path: Path) -> None:
    uv = write_script(tmp_path / "uv", f"echo {Path(sys.prefix).resolve().parent}")
    uvx = write_script(tmp_path / "uvx", "exit 0")
    inside = clients.launch("auto", {"UV": str(uv), "PATH": ""})
    assert inside == clients.Launch(str(uvx), clients.uvx_args())

    write_script(uv, f"echo {tmp_path / 'elsewhere'}")
    outside = clients.launch("auto", {"UV": str(uv), "PATH": ""})
    assert outside == clients.Launch(os.path.abspath(sys.executable), ("-m", "retab_mcp"))


def test_default_paths_follow_each_platform(tmp_path: Path) -> None:
    home = tmp_path
    by_platform = {
        "darwin": clients.default_path(clients.CLIENTS["claude-desktop"], "darwin", home, {}),
        "win32": clients.default_path(clients.CLIENTS["claude-desktop"], "win32", home, {"APPDATA": "C:/Roaming"}),
        "linux": clients.default_path(clients.CLIENTS["claude-desktop"], "linux", home, {}),
    }
    assert by_platform["darwin"] == home / "Library/Application Support/Claude/claude_desktop_config.json"
    assert by_platform["win32"] == Path("C:/Roaming/Claude/claude_desktop_config.json")
    assert by_platform["linux"] == home / ".config/Claude/claude_desktop_config.json"
    assert clients.default_path(clients.CLIENTS["cursor"], "linux", home, {}) == home / ".cursor/mcp.json"
    assert clients.default_path(clients.CLIENTS["claude-code"], "darwin", home, {}) == home / ".claude.json"
    assert clients.default_path(clients.CLIENTS["vscode"], "linux", home, {"XDG_CONFIG_HOME": str(home / "x")}) == (
        home / "x/Code/User/mcp.json"
    )


@pytest.mark.parametrize(
    ("direct_url", "args"),
    [
        (None, ["retab-mcp"]),  # from the package index
        (
            '{"url": "https://github.com/retab-mcp/retab-mcp", "vcs_info": {"vcs": "git", "commit_id": "f08a27b"}}',
            ["--from", "git+https://github.com/retab-mcp/retab-mcp", "retab-mcp"],
        ),
        (
            '{"url": "https://github.com/retab-mcp/retab-mcp", '
            '"vcs_info": {"vcs": "git", "requested_revision": "v0.1.0", "commit_id": "f08a27b"}}',
            ["--from", "git+https://github.com/retab-mcp/retab-mcp@v0.1.0", "retab-mcp"],
        ),
        ('{"url": "file:///home/me/retab%20mcp", "dir_info": {}}', ["--from", "/home/me/retab mcp", "retab-mcp"]),
        (
            '{"url": "file:///tmp/retab_mcp-0.1.0-py3-none-any.whl", "archive_info": {}}',
            ["--from", "/tmp/retab_mcp-0.1.0-py3-none-any.whl", "retab-mcp"],
        ),
    ],
    ids=["index", "git", "git-tag", "directory", "wheel"],
)
def test_a_uvx_entry_installs_from_where_this_came_from(direct_url: str | None, args: list[str]) -> None:
    assert list(clients.uvx_args(direct_url or "")) == args
