"""The real server process over stdio: what a desktop client sees. stdout must carry JSON-RPC
only, at every log level; the key must appear in nothing the process writes, at DEBUG too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from retab_mcp import __version__
from retab_mcp.sandbox import Fault, RunningSandbox, fingerprint
from tests.support import StdioServer

SECRET_KEY = "rt_test_Zq8sK2vN5mW9xP4dL7hT"  # the sandbox accepts any rt_test_ key
LEGACY = "2025-11-25"
INITIALIZE = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}
CALL = {"edit_id": "edt_running01"}


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETAB_", "PYTHONDONTWRITEBYTECODE"))}
    return {**env, **extra}


@pytest.fixture
def debug_server(sandbox: RunningSandbox) -> Iterator[StdioServer]:
    env = server_env(RETAB_API_KEY=SECRET_KEY, RETAB_API_BASE_URL=sandbox.base_url + "/v1/")
    server = StdioServer("--log-level", "DEBUG", env=env)
    yield server
    if server.process.poll() is None:
        server.process.kill()


def test_stdout_is_json_rpc_only_and_the_key_never_appears(debug_server: StdioServer, sandbox: RunningSandbox) -> None:
    init = debug_server.initialize()
    assert init["result"]["serverInfo"]["name"] == "retab-mcp"
    assert init["result"]["serverInfo"]["version"] == __version__
    assert len(debug_server.request("tools/list")["result"]["tools"]) == 5

    ok = debug_server.call("cancel_edit", {"edit_id": "edt_running01"})["result"]
    assert ok["structuredContent"]["status"] == "cancelled"
    missing = debug_server.call("cancel_blueprint", {"blueprint_id": "fbp_nope"})["result"]
    assert missing["isError"] is True
    assert missing["structuredContent"]["error"]["code"] == "not_found"
    bad = debug_server.call("cancel_edit", {"edit_id": "../x"})["result"]
    assert bad["structuredContent"]["error"]["code"] == "invalid_argument"
    unknown = debug_server.call("cancel_all", {})
    assert unknown["error"]["code"] == -32602

    stderr = debug_server.close()
    assert debug_server.process.returncode == 0
    assert debug_server.stdout_lines, "no output at all"
    for line in debug_server.stdout_lines:
        assert json.loads(line)["jsonrpc"] == "2.0", line
    stdout = b"".join(debug_server.stdout_lines).decode()
    # The key was really used (the sandbox saw it) and really logged about at DEBUG...
    assert fingerprint(SECRET_KEY) in {r.key_fingerprint for r in sandbox.sandbox.recorded()}
    assert "DEBUG" in stderr
    assert "HTTP Request: POST" in stderr  # httpx's own request log, which names the URL
    # ...yet it appears nowhere the process wrote.
    assert SECRET_KEY not in stdout
    assert SECRET_KEY not in stderr
    assert SECRET_KEY[8:] not in stderr


def test_429_with_retry_after_1_then_200_succeeds_after_about_a_second(
    debug_server: StdioServer, sandbox: RunningSandbox
) -> None:
    debug_server.initialize()
    sandbox.sandbox.add_fault(Fault(status=429, headers={"Retry-After": "1"}, match="/v1/edits/"))
    started = time.monotonic()
    result = debug_server.call("cancel_edit", {"edit_id": "edt_running01"})["result"]
    elapsed = time.monotonic() - started
    assert result["structuredContent"]["status"] == "cancelled"
    assert 0.95 <= elapsed < 2.5
    assert len(sandbox.sandbox.recorded()) == 2
    debug_server.close()


def test_missing_key_starts_lists_warns_once_and_sends_nothing(sandbox: RunningSandbox) -> None:
    server = StdioServer(env=server_env(RETAB_API_BASE_URL=sandbox.base_url))
    server.initialize()
    assert [t["name"] for t in server.request("tools/list")["result"]["tools"]] == [
        "cancel_blueprint",
        "cancel_edit",
        "get_blueprint",
        "get_edit",
        "list_edits",
    ]
    result = server.call("cancel_blueprint", {"blueprint_id": "fbp_a1b2c3d4e5f6"})["result"]
    assert result["structuredContent"]["error"]["code"] == "configuration_error"
    assert "RETAB_API_KEY" in result["structuredContent"]["error"]["message"]
    stderr = server.close()
    warnings = [line for line in stderr.splitlines() if "RETAB_API_KEY" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    assert sandbox.sandbox.recorded() == []


@pytest.mark.parametrize(
    "value",
    ["YOUR_RETAB_API_KEY", "<your Retab key>", "rt_live_4f9a...", "rt_live_bad key\u00e9", "YOUR_KEY_HERE"],
)
def test_a_key_that_is_clearly_not_one_is_served_like_a_missing_key_and_never_sent(
    sandbox: RunningSandbox, value: str
) -> None:
    """Like a missing key: the tools are listed, one warning names the fix, every call answers
    configuration_error with the fix, and nothing reaches Retab; the value is never shown."""
    server = StdioServer(env=server_env(RETAB_API_KEY=value, RETAB_API_BASE_URL=sandbox.base_url))
    server.initialize()
    assert "get_edit" in [t["name"] for t in server.request("tools/list")["result"]["tools"]]
    error = server.call("get_edit", CALL)["result"]["structuredContent"]["error"]
    assert error["code"] == "configuration_error"
    assert "RETAB_API_KEY is not a key" in error["message"]
    assert "Retab dashboard" in error["hint"]
    assert "[redacted]" not in json.dumps(error)  # the server's own words, whole
    stderr = server.close()
    assert len([line for line in stderr.splitlines() if "RETAB_API_KEY" in line]) == 1
    assert value not in stderr
    assert sandbox.sandbox.recorded() == []


@pytest.mark.parametrize(
    "value",
    ['"rt_test_quoted_key"', "'rt_test_quoted_key'", "Bearer rt_test_quoted_key", '"Bearer rt_test_quoted_key"'],
)
def test_a_quoted_key_or_one_with_bearer_is_used_with_one_warning(sandbox: RunningSandbox, value: str) -> None:
    server = StdioServer(env=server_env(RETAB_API_KEY=value, RETAB_API_BASE_URL=sandbox.base_url))
    server.initialize()
    result = server.call("get_edit", CALL)["result"]["structuredContent"]
    assert result["status"] == "in_progress", result
    stderr = server.close()
    warnings = [line for line in stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, stderr
    assert "RETAB_API_KEY: took off" in warnings[0]
    assert "rt_test_quoted_key" not in stderr
    assert [r.key_fingerprint for r in sandbox.sandbox.recorded()] == [fingerprint("rt_test_quoted_key")]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RETAB_MCP_MAX_ATTEMPTS", "many"),
        ("RETAB_MCP_CALL_TIMEOUT", "-1"),
        ("RETAB_API_BASE_URL", "ftp://x"),
        ("RETAB_MCP_LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_setting_stops_the_server_with_a_message_naming_it(name: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "retab_mcp"], env=server_env(**{name: value}), capture_output=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stdout == b""
    assert name in done.stderr.decode() or "log level" in done.stderr.decode()


def sdk_stdio_params(sandbox: RunningSandbox) -> StdioServerParameters:
    """The server as the SDK's own stdio client starts it, against the sandbox."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "retab_mcp"],
        env=server_env(RETAB_API_KEY=SECRET_KEY, RETAB_API_BASE_URL=sandbox.base_url),
    )


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_both_eras_over_real_stdio_with_the_sdk_client(sandbox: RunningSandbox, mode: str) -> None:
    params = sdk_stdio_params(sandbox)
    async with Client(params, mode=mode) as client:
        result = await client.call_tool("cancel_blueprint", {"blueprint_id": "fbp_queued01"})
    assert result.structured_content is not None
    assert result.structured_content["status"] == "cancelled"


def test_the_sandbox_is_not_imported_when_not_used() -> None:
    """Its code (and a 2 MB PDF fixture) costs start-up only for those who ask for it."""
    probe = (
        "import sys, anyio\n"
        "from mcp.client import Client\n"
        "from retab_mcp.config import Settings\n"
        "from retab_mcp.server import RetabMCPServer\n"
        "async def main():\n"
        "    async with Client(RetabMCPServer(Settings(api_key='rt_test_x'))) as client:\n"
        "        await client.list_tools()\n"
        "anyio.run(main)\n"
        "print(sorted(m for m in sys.modules if m.startswith('retab_mcp.sandbox')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def server(sandbox: RunningSandbox) -> Iterator[StdioServer]:
    running = StdioServer(env=server_env(RETAB_API_KEY=SECRET_KEY, RETAB_API_BASE_URL=sandbox.base_url))
    yield running
    if running.process.poll() is None:
        running.process.kill()


MALFORMED = [
    (b"this is not json", -32700, None),
    (b'{"jsonrpc": "2.0", "id": 7, "method": "tools/list"', -32700, None),  # cut short
    (b'[{"jsonrpc": "2.0", "id": 8, "method": "tools/list"}]', -32600, None),  # a batch
    (b'{"jsonrpc": "1.0", "id": 9, "method": "tools/list"}', -32600, 9),
    (b'{"jsonrpc": "2.0", "id": "ten"}', -32600, "ten"),  # neither a request nor an answer
    (b'{"jsonrpc": "2.0", "id": 11, "method": 5}', -32600, 11),
    (b'{"jsonrpc": "2.0", "id": null, "method": "tools/list"}', -32600, None),
    (b'{"jsonrpc": "2.0", "id": true, "method": "tools/list"}', -32600, None),
    (b'"a string"', -32600, None),
    (b"\xff\xfe not utf-8", -32700, None),
]


def test_each_malformed_line_is_answered_and_the_server_goes_on(server: StdioServer) -> None:
    server.initialize()
    for line, code, request_id in MALFORMED:
        server.send_line(line)
        answer = server.next_message()
        assert (answer["jsonrpc"], answer["id"], answer["error"]["code"]) == ("2.0", request_id, code), line
        assert answer["error"]["message"]
    server.send_line(b"")  # a blank line is no message: skipped, unanswered
    result = server.call("cancel_edit", {"edit_id": "edt_running01"})["result"]
    assert result["structuredContent"]["status"] == "cancelled"
    server.close()
    assert server.process.returncode == 0
    assert len(server.answers()) == 1 + len(MALFORMED) + 1  # initialize, each line, the call


def test_end_of_input_with_calls_in_flight_answers_each_exactly_once(
    server: StdioServer, sandbox: RunningSandbox
) -> None:
    """A client that writes its calls and closes stdin (a pipe, a script) still gets every answer,
    the real one: the calls finish before the process exits."""
    server.initialize()
    sandbox.sandbox.add_fault(Fault(status=None, delay=1.0, match="/cancel", times=3))
    ids = ["fbp_a1b2c3d4e5f6", "fbp_queued01", "fbp_running01"]
    for index, blueprint_id in enumerate(ids, start=100):
        server.send(
            {
                "jsonrpc": "2.0",
                "id": index,
                "method": "tools/call",
                "params": {"name": "cancel_blueprint", "arguments": {"blueprint_id": blueprint_id}},
            }
        )
    started = time.monotonic()
    server.close()  # end of input while all three wait on the slow API
    assert time.monotonic() - started >= 0.9
    assert server.process.returncode == 0
    answers = [answer for answer in server.answers() if answer["id"] != 1]
    assert sorted(answer["id"] for answer in answers) == [100, 101, 102]
    for answer in answers:
        assert answer["result"]["structuredContent"]["status"] == "cancelled", answer
    assert len(sandbox.sandbox.recorded()) == 3


def test_progress_and_a_client_cancel_over_real_stdio(server: StdioServer, sandbox: RunningSandbox) -> None:
    server.initialize()
    call = {
        "name": "get_edit",
        "arguments": {"edit_id": "edt_running01", "wait_seconds": 20},
        "_meta": {"progressToken": "wait-1"},
    }
    server.send({"jsonrpc": "2.0", "id": 50, "method": "tools/call", "params": call})
    progress = [server.next_message(), server.next_message()]  # the first read, then the first poll
    for report in progress:
        assert report["method"] == "notifications/progress"
        assert report["params"]["progressToken"] == "wait-1"
        assert report["params"]["total"] == 20
        assert report["params"]["message"] == "edit edt_running01: in_progress"
    assert progress[1]["params"]["progress"] > progress[0]["params"]["progress"]
    server.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 50}})
    time.sleep(0.2)
    count = len(sandbox.sandbox.recorded())
    time.sleep(1.5)  # the next poll would have gone out by now
    assert len(sandbox.sandbox.recorded()) == count
    result = server.call("get_edit", {"edit_id": "edt_running01"})["result"]
    assert result["structuredContent"]["ok"] is True
    server.close()
    assert server.process.returncode == 0
    assert [answer["id"] for answer in server.answers()] == [1, 2]  # the cancelled call is never answered


def test_stdin_and_stdout_may_be_regular_files(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """Pipes are served by the event loop; a file (`< calls.jsonl > answers.jsonl`) by threads."""
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_edit", "arguments": CALL}},
    ]
    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps(request) + "\n" for request in requests) + "not json\n")
    answers = tmp_path / "answers.jsonl"
    env = server_env(RETAB_API_KEY=SECRET_KEY, RETAB_API_BASE_URL=sandbox.base_url)
    with calls.open("rb") as stdin, answers.open("wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "retab_mcp"], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=60
        )
    assert done.returncode == 0, done.stderr.decode()
    by_id = {message["id"]: message for message in map(json.loads, answers.read_text().splitlines())}
    assert by_id[1]["result"]["serverInfo"]["name"] == "retab-mcp"
    assert by_id[2]["result"]["structuredContent"]["edit"]["id"] == "edt_running01"
    assert by_id[None]["error"]["code"] == -32700


@pytest.mark.parametrize("stdin", ["devnull", "closed", "empty file"])
@pytest.mark.parametrize("stdout", ["pipe", "devnull"])
def test_an_input_with_nothing_in_it_ends_at_once_with_at_most_one_line(
    stdin: str, stdout: str, tmp_path: Path
) -> None:
    """nohup, systemd and `docker run` without -i give the server /dev/null (or nothing) as stdin:
    the input ends at once, so the server exits 0, having said at most one line (no key set)."""
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with empty.open("rb") as file:
        done = subprocess.run(
            [sys.executable, "-m", "retab_mcp"],
            stdin={"devnull": subprocess.DEVNULL, "closed": None, "empty file": file}[stdin],
            stdout=subprocess.DEVNULL if stdout == "devnull" else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=server_env(),
            timeout=30,
            # A closed stdin: the child closes its fd 0 just before it runs the server.
            preexec_fn=(lambda: os.close(0)) if stdin == "closed" else None,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert (done.stdout or b"") == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) <= 1, lines
    assert "Traceback" not in done.stderr.decode()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_progress_over_real_stdio_in_both_eras(sandbox: RunningSandbox, mode: str) -> None:
    params = sdk_stdio_params(sandbox)
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with Client(params, mode=mode) as client:
        arguments = {"edit_id": "edt_running01", "wait_seconds": 1.2}
        result = await client.call_tool("get_edit", arguments, progress_callback=on_progress)
    assert result.structured_content is not None
    assert (result.structured_content["ok"], result.structured_content["terminal"]) == (True, False)
    assert len(reports) >= 2
    assert reports[0] == (0.0, 1.2, "edit edt_running01: in_progress")
    assert [p for p, _, _ in reports] == sorted({p for p, _, _ in reports})


def deep_call(request_id: int, depth: int) -> bytes:
    """A ~2 KB tools/call line (at depth 1,000) whose edit_id is an array nested `depth` deep."""
    nested = b"[" * depth + b"]" * depth
    head = b'{"jsonrpc": "2.0", "id": %d, "method": "tools/call", "params": ' % request_id
    return head + b'{"name": "get_edit", "arguments": {"edit_id": ' + nested + b"}}}"


def test_a_deeply_nested_line_is_answered_and_the_server_goes_on(server: StdioServer) -> None:
    """Past the parser's recursion: answered with -32600 and the id, never a dead process."""
    server.initialize()
    for request_id, depth in ((20, 1_000), (21, 100_000)):
        server.send_line(deep_call(request_id, depth))
        answer = server.next_message()
        assert (answer["id"], answer["error"]["code"]) == (request_id, -32600)
        assert "nested too deeply" in answer["error"]["message"]
    # The id after the nesting cannot be read without parsing it: answered with id null.
    server.send_line(b'{"params": ' + b"[" * 5_000 + b"]" * 5_000 + b', "jsonrpc": "2.0", "id": 22, "method": "x"}')
    assert server.next_message()["id"] is None
    result = server.call("get_edit", {"edit_id": "edt_running01"})["result"]
    assert result["structuredContent"]["status"] == "in_progress"
    stderr = server.close()
    assert server.process.returncode == 0, stderr
    assert "Traceback" not in stderr


@pytest.mark.anyio
async def test_no_progress_follows_the_read_that_ends_a_wait(sandbox: RunningSandbox) -> None:
    """One report per read that found the run still going, none for the read that found it done:
    a report after that read reaches hosts that handle the answer first as an unknown token."""
    reports: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(progress)
        if len(reports) == 2:  # the run completes before the next poll
            sandbox.sandbox.advance(7200)

    async with Client(sdk_stdio_params(sandbox)) as client:
        arguments = {"edit_id": "edt_running01", "wait_seconds": 10}
        result = await client.call_tool("get_edit", arguments, progress_callback=on_progress)
    assert result.structured_content is not None
    assert (result.structured_content["status"], result.structured_content["terminal"]) == ("completed", True)
    reads = [r for r in sandbox.sandbox.recorded() if r.path == "/v1/edits/edt_running01"]
    assert len(reads) == 3  # the first read and a poll in progress, then the poll that saw it complete
    assert len(reports) == 2


def test_sigint_stops_the_server_quietly(server: StdioServer) -> None:
    """Hosts stop stdio servers with SIGINT: exit 0, at most one line on stderr, and the call in
    flight still gets its one answer."""
    server.initialize()
    call = {"name": "get_edit", "arguments": {"edit_id": "edt_running01", "wait_seconds": 20}}
    server.send({"jsonrpc": "2.0", "id": 30, "method": "tools/call", "params": call})
    time.sleep(1.0)  # the call is waiting for the run to stop
    server.process.send_signal(signal.SIGINT)
    stderr = server.exited()
    assert server.process.returncode == 0, stderr
    assert len(stderr.splitlines()) <= 1, stderr
    assert [answer["id"] for answer in server.answers()] == [1, 30]


def vm_kib(pid: int, field: str) -> int:
    """A memory figure of a live process from /proc (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_client_that_stops_reading_does_not_swamp_the_server() -> None:
    """5,000 tools/list (~47 KB of answer each) sent by a client that does not read stdout: the
    server stops reading too, instead of holding every answer, and serves them all once read."""
    count = 5_000
    process = subprocess.Popen(
        [sys.executable, "-m", "retab_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(RETAB_API_KEY=SECRET_KEY),
    )
    assert process.stdin is not None
    assert process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    try:
        stdin.write(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INITIALIZE}).encode())
        stdin.write(b'\n{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        stdin.flush()
        assert json.loads(stdout.readline())["id"] == 0
        # ~250 bytes each, 1.2 MB in all: more than the pipe and the server's read buffers hold.
        request = b'{"jsonrpc": "2.0", "id": %d, "method": "tools/list", "params": {"_meta": {"pad": "%s"}}}\n'
        requests = b"".join(request % (n, b"x" * 180) for n in range(1, count + 1))
        # Blocks once the server stops reading: from a thread, so the test goes on.
        writer = threading.Thread(target=lambda: (stdin.write(requests), stdin.flush()), daemon=True)
        writer.start()
        peak = 0
        for _ in range(20):  # 4 s: unbounded, the server passed 300 MB within 2 s
            time.sleep(0.2)
            peak = max(peak, vm_kib(process.pid, "VmRSS"))
        assert peak < 300 * 1024, f"{peak // 1024} MB"
        assert writer.is_alive(), "the server read every request while its answers were not read"
        answered: set[int] = set()
        deadline = time.monotonic() + 120
        while len(answered) < count and time.monotonic() < deadline:
            answer = json.loads(stdout.readline())
            assert len(answer["result"]["tools"]) == 5
            answered.add(answer["id"])
        assert answered == set(range(1, count + 1))
        writer.join(timeout=10)
        stdin.write(b'{"jsonrpc": "2.0", "id": "last", "method": "ping"}\n')
        stdin.flush()
        assert json.loads(stdout.readline()) == {"jsonrpc": "2.0", "id": "last", "result": {}}
        stdin.close()
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.anyio
async def test_a_wait_on_a_finishing_sandbox_run_ends_in_its_terminal_status() -> None:
    """`retab-mcp --sandbox`, as a newcomer runs it, through the SDK's stdio client: the finishing
    runs end a few seconds after their first read, so a wait ends in completed (or failed)."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "retab_mcp", "--sandbox"], env=server_env())
    async with Client(params) as client:
        first = await client.call_tool("get_blueprint", {"blueprint_id": "fbp_completes01"})
        started = time.monotonic()
        completed = await client.call_tool("get_blueprint", {"blueprint_id": "fbp_completes01", "wait_seconds": 20})
        waited = time.monotonic() - started
        failed = await client.call_tool("get_edit", {"edit_id": "edt_fails01", "wait_seconds": 20})
    assert first.structured_content is not None
    assert completed.structured_content is not None
    assert failed.structured_content is not None
    assert first.structured_content["status"] == "in_progress"
    assert (completed.structured_content["status"], completed.structured_content["terminal"]) == ("completed", True)
    assert 1.5 <= waited < 15  # 3 s after the first read, whatever the machine's load
    assert (failed.structured_content["status"], failed.structured_content["terminal"]) == ("failed", True)
