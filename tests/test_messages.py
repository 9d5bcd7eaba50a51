"""What a person reads from the server, where they read it: the HTTP start line, an INFO log
without per-request noise, a wrong auth token as the Inspector CLI reports it, failure summaries
in whole sentences, a finished run that another cancel leaves exactly as it was, and an
`include_output` description that fits each kind of run."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from retab_mcp import __version__
from retab_mcp.sandbox import SANDBOX_API_KEY, RunningSandbox
from tests.support import INSPECTOR, SERVER_COMMAND, Agent, clean_env, npm_command, texts, tool_env

START_LINE = re.compile(
    rf"retab-mcp {re.escape(__version__)}: MCP at (?P<url>http://127\.0\.0\.1:(?P<port>[0-9]+)/mcp) "
    r"\((?P<mode>[^)]*)\)\. Retab key: (?P<key>.*)\."
)
TOKEN = "right-token-7c1d"
pytestmark = pytest.mark.anyio
LEGACY_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


@dataclass
class Started:
    url: str
    line: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)  # the rest of stderr

    def stop(self) -> list[str]:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        return self.lines


@contextmanager
def http_server_on_port_0(*args: str, **env: str) -> Iterator[Started]:
    """`retab-mcp --transport http --port 0`: the only way to learn its port is its start line."""
    process = subprocess.Popen(
        [*SERVER_COMMAND, "--transport", "http", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(**env),
        text=True,
    )
    assert process.stderr is not None
    try:
        before: list[str] = []  # at INFO, uvicorn's own start-up lines come first
        while not (match := START_LINE.fullmatch(line := process.stderr.readline().rstrip("\n"))):
            assert line or process.poll() is None, f"no start line: {before}"
            before.append(line)
        started = Started(match["url"], line, process, before)
        reader = threading.Thread(target=lambda: started.lines.extend(process.stderr or []), daemon=True)
        reader.start()
        yield started
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "env", "mode", "key"),
    [
        ([], {}, "stateless: JSON responses", "each caller's own"),
        (["--stateful"], {}, "stateful: sessions and SSE streams", "each caller's own"),
        ([], {"RETAB_API_KEY": "rt_test_srv", "RETAB_MCP_AUTH_TOKEN": TOKEN}, "stateless", "the server's, for callers"),
        (["--sandbox"], {}, "stateless", "the embedded Retab sandbox's"),
    ],
    ids=["caller-key", "stateful", "server-key", "sandbox"],
)
def test_the_http_start_line_says_where_which_mode_and_whose_key(
    args: list[str], env: dict[str, str], mode: str, key: str
) -> None:
    # At the default log level (WARNING), which prints nothing else.
    with http_server_on_port_0(*args, **env) as server:
        assert httpx.get(server.url.removesuffix("/mcp") + "/readyz").status_code == 200
        assert START_LINE.fullmatch(server.line)["mode"].startswith(mode)  # type: ignore[index]
        assert START_LINE.fullmatch(server.line)["key"].startswith(key)  # type: ignore[index]
        assert "rt_test_srv" not in server.line
        assert TOKEN not in server.line
        assert server.stop() == []


def test_the_info_log_has_one_line_per_tool_call_and_no_per_request_noise(sandbox: RunningSandbox) -> None:
    env = {"RETAB_MCP_LOG_LEVEL": "INFO", "RETAB_API_BASE_URL": sandbox.base_url}
    with http_server_on_port_0(**env) as server:
        headers = {**LEGACY_HEADERS, "Authorization": f"Bearer {SANDBOX_API_KEY}"}
        for run_id in ("edt_running01", "edt_nope"):
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            call["params"] = {"name": "cancel_edit", "arguments": {"edit_id": run_id}}
            assert httpx.post(server.url, json=call, headers=headers).status_code == 200
        lines = server.stop()
    calls = [json.loads(line.split(": ", 1)[1]) for line in lines if "retab_mcp.calls" in line]
    assert [(c["id"], c["outcome"]) for c in calls] == [("edt_running01", "ok"), ("edt_nope", "not_found")]
    # Everything else is the process starting and stopping: nothing per request.
    others = [line for line in lines if "retab_mcp.calls" not in line]
    assert all(" uvicorn.error: " in line or "session manager" in line for line in others), others


def last_json_object(stream: str) -> dict[str, Any]:
    """The last line of `stream` that is a JSON object: tools print notices before their result."""
    for line in reversed(stream.splitlines()):
        if line.startswith("{"):
            with suppress(ValueError):
                parsed = json.loads(line)
                if isinstance(parsed, dict):
                    return parsed
    raise AssertionError(f"no JSON object in {stream!r}")


@pytest.fixture(params=["home-as-is", "home-with-inspector-state"])
def users_home(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's HOME as it is, or one where the Inspector once kept OAuth state: with that file
    it prints a secret-store notice to stderr first. The tests run it with a throwaway HOME, so
    the result is the same."""
    if request.param == "home-with-inspector-state":
        tool_env()  # the package managers' settings: found once, in the real HOME
        storage = tmp_path / ".mcp-inspector" / "storage"
        storage.mkdir(parents=True)
        (storage / "oauth.json").write_text(
            '{"servers": {"http://127.0.0.1:1/mcp": {"tokens": {"access_token": "x"}}}}'
        )
        monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
@pytest.mark.usefixtures("users_home")
def test_the_inspector_is_refused_a_wrong_auth_token_and_served_the_right_one(sandbox: RunningSandbox) -> None:
    env = {"RETAB_API_KEY": "rt_test_srv", "RETAB_MCP_AUTH_TOKEN": TOKEN, "RETAB_API_BASE_URL": sandbox.base_url}
    with http_server_on_port_0(**env) as server:
        command = [npm_command(INSPECTOR, "mcp-inspector"), "--cli", server.url, "--transport", "http"]
        wrong = subprocess.run(
            [*command, "--header", "Authorization: Bearer not-the-token", "--method", "tools/list"],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env=tool_env(),
        )
        right = subprocess.run(
            [*command, "--header", f"Authorization: Bearer {TOKEN}", "--method", "tools/list"],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env=tool_env(),
        )
    # The Inspector's exit code for an auth failure. It reads the 401 challenge as a cue to start
    # OAuth, which this server does not offer, and says so instead of the token being wrong (README).
    assert (wrong.returncode, wrong.stdout) == (3, "")
    assert last_json_object(wrong.stderr)["error"]["code"] == "auth_required"
    assert "keychain" not in wrong.stderr  # nothing from the user's home
    assert right.returncode == 0, right.stderr
    assert len(json.loads(right.stdout)["tools"]) == 5
    assert sandbox.sandbox.recorded() == []  # tools/list sends nothing upstream


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
def test_the_inspector_shows_the_servers_words_for_a_missing_callers_key(sandbox: RunningSandbox) -> None:
    """Caller's-key mode without a key: no 401 for the Inspector to take for OAuth; the tool call
    answers, and the Inspector prints the envelope saying how to send the key (docs/clients.md)."""
    with http_server_on_port_0(RETAB_API_BASE_URL=sandbox.base_url) as server:
        done = subprocess.run(
            [
                npm_command(INSPECTOR, "mcp-inspector"), "--cli", server.url, "--transport", "http",
                "--method", "tools/call", "--tool-name", "get_edit", "--tool-args-json", '{"edit_id":"edt_01G34H8J2K"}',
            ],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=tool_env(),
        )  # fmt: skip
    # 5: the Inspector's exit code for a tool result with isError, which it prints whole.
    assert done.returncode == 5, done.stderr
    error = json.loads(done.stdout)["structuredContent"]["error"]
    assert error["code"] == "configuration_error"
    assert "`Authorization: Bearer <key>` (or `Api-Key: <key>`)" in error["hint"]
    assert "OAuth" not in done.stderr
    assert sandbox.sandbox.recorded() == []


async def test_a_failure_summary_ends_each_sentence_before_the_next_step(agent: Agent) -> None:
    # Retab's 404 detail ("blueprint not found: edt_...") has no full stop of its own.
    result, envelope = await agent.call("cancel_blueprint", {"blueprint_id": "edt_01G34H8J2K"})
    summary = texts(result)[0]
    assert envelope["error"]["code"] == "not_found"
    assert re.search(r"[^.]\. Next: This id looks like it belongs to cancel_edit", summary), summary


@pytest.mark.parametrize(
    ("tool", "read", "id_arg", "run_id", "noun"),
    [
        ("cancel_blueprint", "get_blueprint", "blueprint_id", "fbp_completed01", "blueprint"),
        ("cancel_blueprint", "get_blueprint", "blueprint_id", "fbp_failed01", "blueprint"),
        ("cancel_edit", "get_edit", "edit_id", "edt_cancelled01", "edit"),
        ("cancel_edit", "get_edit", "edit_id", "edt_running01", "edit"),  # stopped by the first cancel below
    ],
)
async def test_cancelling_a_finished_run_again_leaves_it_exactly_as_it_was(
    agent: Agent, sandbox: RunningSandbox, tool: str, read: str, id_arg: str, run_id: str, noun: str
) -> None:
    await agent.call(tool, {id_arg: run_id})
    _, before = await agent.call(read, {id_arg: run_id, "include_output": True})
    assert before["terminal"] is True
    sandbox.sandbox.advance(600)  # time passes: a rewritten record would show a new updated_at
    _, again = await agent.call(tool, {id_arg: run_id, "include_output": True})
    assert again[noun] == before[noun]
    _, after = await agent.call(read, {id_arg: run_id, "include_output": True})
    assert after[noun] == before[noun]


async def test_include_output_says_what_each_kind_of_run_returns(agent: Agent) -> None:
    tools = {tool.name: tool for tool in (await agent.client.list_tools()).tools}
    for name in ("cancel_blueprint", "get_blueprint", "cancel_edit", "get_edit"):
        description = tools[name].input_schema["properties"]["include_output"]["description"]
        if "blueprint" in name:
            assert "Document Blueprint" in description
            assert "PDF" not in description
            assert "filled" not in description
        else:
            assert "filled PDF" in description


# -- start-up mistakes: one line each --------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "setting"),
    [
        (["--transport", "http"], "RETAB_MCP_PORT (--port)"),
        (["sandbox"], "--port"),
        (["--sandbox", "--transport", "http"], "RETAB_MCP_PORT (--port)"),
    ],
    ids=["http", "sandbox", "http-with-sandbox"],
)
def test_a_busy_port_is_one_line_and_status_2(busy_port: int, command: list[str], setting: str) -> None:
    done = subprocess.run(
        [*SERVER_COMMAND, *command, "--port", str(busy_port)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"retab-mcp: port {busy_port} on 127.0.0.1 is already in use; stop what serves it, or choose another {setting}"
    ]
    assert done.stdout == ""


@pytest.mark.parametrize("command", [[], ["--transport", "http"], ["sandbox"]])
def test_a_port_out_of_range_is_one_line_and_status_2(command: list[str]) -> None:
    done = subprocess.run(
        [*SERVER_COMMAND, *command, "--port", "70000"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["retab-mcp: --port must be from 0 to 65535 (got 70000)"]


def test_http_flags_on_stdio_are_named_in_one_warning_and_serving_goes_on() -> None:
    done = subprocess.run(
        [*SERVER_COMMAND, "--sandbox", "--port", "9000", "--host", "0.0.0.0", "--stateful"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "retab-mcp: warning: --host, --port, --stateful: for --transport http only; stdio ignores them"
    ]
