"""The HTTP transport against hostile clients: requests that never finish arriving, a spent
connection budget, bodies that would crash a parser, one key taking every session, bogus keys
sent again and again, sessions used with another key, clients that leave mid-call, wrong tokens.

The server runs in a thread of this process (uvicorn with this package's own protocol class and
app), so that a test can shorten the request deadline and count the server's connections; every
socket is on 127.0.0.1, and every loop is bounded in count and time."""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from retab_mcp import http
from retab_mcp.config import Settings
from retab_mcp.sandbox import Fault, RunningSandbox
from retab_mcp.server import RetabMCPServer
from tests.support import SERVER_COMMAND, clean_env, free_port

pytestmark = pytest.mark.anyio

KEY_A = "rt_test_tenantA_7c1d"
KEY_B = "rt_test_tenantB_2e9f"
BOGUS_KEY = "rt_live_made_up_4b8a"  # the sandbox answers 401 to any key but rt_test_...
LEGACY = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
LEGACY_HEADER = "MCP-Protocol-Version: 2025-11-25\r\n"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


@dataclass
class Served:
    url: str
    port: int
    uvicorn: uvicorn.Server

    @property
    def mcp(self) -> str:
        return self.url + "/mcp"

    def requests(self) -> int:
        """Requests being served: their headers are in."""
        return len(self.uvicorn.server_state.tasks)


@contextmanager
def serving(settings: Settings, request_timeout: float = http.REQUEST_TIMEOUT_SECONDS) -> Iterator[Served]:
    """The HTTP transport served from a thread of this process, with `request_timeout`."""
    port = free_port()
    settings = replace(settings, transport="http", port=port)
    config = http.uvicorn_config(RetabMCPServer(settings), settings)
    config.http = type("QuickDeadline", (http._BoundedProtocol,), {"request_timeout": request_timeout})
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", port, running)
    finally:
        running.should_exit = True
        thread.join(15)


def slow_request(port: int, *, length: int = 60_000, sent: bytes = b"{", extra: str = "") -> socket.socket:
    """A connection that sent a POST's headers and the first bytes of its body, then nothing."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nApi-Key: {KEY_A}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\n{extra}Content-Length: {length}\r\n\r\n"
    )
    connection.sendall(head.encode() + sent)
    return connection


def still_open(connections: list[socket.socket], within: float) -> int:
    """How many of `connections` the server has not closed after waiting up to `within` seconds."""
    waiting = set(connections)
    deadline = time.monotonic() + within
    with selectors.DefaultSelector() as selector:
        for connection in waiting:
            connection.setblocking(False)
            selector.register(connection, selectors.EVENT_READ, data=connection)
        while waiting and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                connection = key.data
                try:
                    data = connection.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if not data:
                    selector.unregister(connection)
                    waiting.discard(connection)
    return len(waiting)


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.fixture
def caller_key(sandbox: RunningSandbox) -> Settings:
    """No server key: each caller brings their own."""
    return Settings(base_url=sandbox.base_url, call_timeout=5)


# -- deadlines on every byte a client sends ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        ("stateless", "MCP-Protocol-Version: 2025-11-25\r\n"),  # a tool call the front would admit
        ("stateless", "MCP-Protocol-Version: 2026-07-28\r\n"),  # the SDK's own path
        ("stateful", "MCP-Protocol-Version: 2025-11-25\r\n"),  # the session path
    ],
    ids=["stateless-legacy", "stateless-modern", "stateful"],
)
def test_a_body_that_never_finishes_arriving_is_cut_off_at_the_deadline(
    caller_key: Settings, mode: str, extra: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(caller_key, stateful=mode == "stateful")
    with serving(settings, request_timeout=1.0) as served:
        stalled = [slow_request(served.port, extra=extra) for _ in range(10)]
        dribbling = [slow_request(served.port, extra=extra) for _ in range(10)]
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # one body byte every 0.2 s, as a slow-body attack does
            for connection in dribbling:
                with contextlib.suppress(OSError):
                    connection.sendall(b" ")
            time.sleep(0.2)
        assert still_open(stalled + dribbling, within=1.5) == 0
        # A whole request is served as before.
        answer = httpx.post(served.mcp, json=INITIALIZE, headers={**LEGACY, "Api-Key": KEY_A})
        assert answer.status_code == 200
    for connection in stalled + dribbling:
        connection.close()
    assert errors_logged(caplog) == []


@pytest.mark.parametrize("stateful", [False, True], ids=["stateless", "stateful"])
def test_clients_that_leave_mid_body_log_no_error(
    caller_key: Settings, stateful: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(replace(caller_key, stateful=stateful)) as served:
        for _ in range(20):
            slow_request(served.port, length=500, sent=b'{"jsonrpc": "2.0", ', extra=LEGACY_HEADER).close()
        time.sleep(0.5)  # the server notices each close
        assert httpx.get(served.url + "/healthz").status_code == 200
    assert errors_logged(caplog) == []


# -- the connection budget: probes answered when it is spent ----------------------------------------


def test_a_thousand_slow_bodies_leave_the_probes_answered_and_tool_calls_served_after(
    caller_key: Settings,
) -> None:
    deadline = 4.0
    with serving(caller_key, request_timeout=deadline) as served:
        held: list[socket.socket] = []
        opened = time.monotonic()
        # Paced as an attacker paces them: in small batches, each taken in before the next, so
        # that uvicorn does not shed a burst itself. A new connection counts itself: once 999
        # requests are held, the budget of 1,000 is spent.
        spent = http.MAX_CONNECTIONS - 1
        for _ in range(200):
            missing = spent - served.requests()
            if missing <= 0:
                break
            held += [slow_request(served.port, extra=LEGACY_HEADER) for _ in range(min(20, missing))]
            limit = time.monotonic() + 2
            while served.requests() < min(len(held), spent) and time.monotonic() < limit:
                time.sleep(0.005)
        assert served.requests() >= spent, "the budget was not spent: the test proves nothing"
        call = tool_call("get_edit", {"edit_id": "edt_running01"})
        headers = {**LEGACY, "Api-Key": KEY_A}
        with httpx.Client(timeout=5) as client:
            # The budget is spent: a tool call is turned away, the probes are not.
            assert client.post(served.mcp, json=call, headers=headers).status_code == 503
            assert client.get(served.url + "/healthz").json() == {"status": "ok"}
            assert client.get(served.url + "/readyz").json() == {"status": "ready"}
            assert time.monotonic() - opened < deadline, "the machine was too slow to hold the connections"
            # The deadline cuts every slow body; then tool calls are served again.
            assert still_open(held, within=deadline + 5) == 0
            answer = client.post(served.mcp, json=call, headers=headers)
        assert answer.status_code == 200
        assert answer.json()["result"]["structuredContent"]["ok"] is True
    for connection in held:
        connection.close()


# -- parsers that cannot be crashed ---------------------------------------------------------------


def nested_call(depth: int) -> bytes:
    """A get_edit call whose edit_id is an array nested `depth` deep (2 bytes a level)."""
    call = json.dumps(tool_call("get_edit", {"edit_id": "HOLE"}))
    return call.replace('"HOLE"', "[" * depth + "]" * depth).encode()


@pytest.mark.parametrize(("depth", "status"), [(1_000, 400), (30_000, 400), (100_000, 413)])
def test_a_deeply_nested_body_gets_a_json_rpc_error_and_serving_goes_on(
    caller_key: Settings, sandbox: RunningSandbox, depth: int, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {**LEGACY, "Api-Key": KEY_A, "Content-Type": "application/json"}
    with serving(caller_key) as served:
        answer = httpx.post(served.mcp, content=nested_call(depth), headers=headers)
        after = httpx.post(served.mcp, json=tool_call("get_edit", {"edit_id": "edt_running01"}), headers=headers)
    assert answer.status_code == status
    if status == 400:  # a JSON-RPC parse error of the SDK's: the body was never parsed whole here
        assert answer.json()["error"]["code"] == -32700
    assert after.json()["result"]["structuredContent"]["ok"] is True
    assert [r.path for r in sandbox.sandbox.recorded()] == ["/v1/edits/edt_running01"]
    assert errors_logged(caplog) == []


async def test_a_body_with_a_byte_order_mark_takes_no_admission_slot(
    caller_key: Settings, sandbox: RunningSandbox
) -> None:
    """The only slot is taken: a call the front would admit waits for it, then answers
    `overloaded`; a body the SDK will refuse is refused at once instead."""
    sandbox.sandbox.add_fault(Fault(status=None, delay=3, match="/v1/edits/edt_running01"))
    headers = {**LEGACY, "Api-Key": KEY_A, "Content-Type": "application/json"}
    bom = b"\xef\xbb\xbf" + json.dumps(tool_call("get_edit", {"edit_id": "edt_queued01"})).encode()
    with serving(replace(caller_key, max_in_flight=1)) as served:
        async with httpx.AsyncClient(timeout=10) as client, anyio.create_task_group() as group:

            async def slow_call() -> None:
                await client.post(served.mcp, json=tool_call("get_edit", {"edit_id": "edt_running01"}), headers=headers)

            group.start_soon(slow_call)
            await anyio.sleep(0.5)
            answer = await client.post(served.mcp, content=bom, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == -32700


# -- clients that leave mid-call ------------------------------------------------------------------


def era_request(era: str, call: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """`call` as a client of `era` sends it: body and headers."""
    if era == "legacy":
        return call, {**LEGACY, "Api-Key": KEY_A}
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {**call, "params": {**call["params"], "_meta": meta}}
    headers = {"Accept": LEGACY["Accept"], "MCP-Protocol-Version": "2026-07-28", "Api-Key": KEY_A}
    return body, {**headers, "Mcp-Method": call["method"], "Mcp-Name": call["params"]["name"]}


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_client_that_leaves_cancels_its_wait(
    caller_key: Settings, sandbox: RunningSandbox, era: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(caller_key, call_timeout=30)
    body, headers = era_request(era, tool_call("get_edit", {"edit_id": "edt_running01", "wait_seconds": 20}))
    with serving(settings) as served:
        async with httpx.AsyncClient(timeout=1.0) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(served.mcp, json=body, headers=headers)
        # The client closed its connection on its timeout, 1 s in.
        polls = [r for r in sandbox.sandbox.recorded() if r.path == "/v1/edits/edt_running01"]
        assert 1 <= len(polls) <= 3  # at 0, 0.5 and (perhaps) 1.5 s
        await anyio.sleep(3)  # the next polls were due at 1.5 and 3.5 s
        after = [r for r in sandbox.sandbox.recorded() if r.path == "/v1/edits/edt_running01"]
    assert len(after) == len(polls)
    assert errors_logged(caplog) == []


# -- fair sessions (--stateful, caller's key) ------------------------------------------------------


def key_checks(sandbox: RunningSandbox) -> list[str | None]:
    """The key fingerprints the server checked with Retab (its `GET /v1/edits?limit=1`)."""
    return [r.key_fingerprint for r in sandbox.sandbox.recorded() if (r.path, r.query) == ("/v1/edits", "limit=1")]


async def test_one_key_holds_at_most_its_share_of_sessions_and_others_still_open_theirs(
    caller_key: Settings,
) -> None:
    with serving(replace(caller_key, stateful=True, max_sessions=20)) as served:  # a share of 2 per key
        async with httpx.AsyncClient(timeout=10) as client:
            tenant_a = [
                await client.post(served.mcp, json=INITIALIZE, headers={**LEGACY, "Api-Key": KEY_A}) for _ in range(4)
            ]
            tenant_b = await client.post(served.mcp, json=INITIALIZE, headers={**LEGACY, "Api-Key": KEY_B})
            # Ending a session gives its place back.
            ended = await client.delete(
                served.mcp,
                headers={**LEGACY, "Api-Key": KEY_A, "Mcp-Session-Id": tenant_a[0].headers["mcp-session-id"]},
            )
            again = await client.post(served.mcp, json=INITIALIZE, headers={**LEGACY, "Api-Key": KEY_A})
    assert [answer.status_code for answer in tenant_a] == [200, 200, 429, 429]
    assert tenant_a[2].json()["error"] == "too_many_sessions"
    assert "mcp-session-id" not in tenant_a[2].headers
    assert tenant_b.status_code == 200
    assert ended.status_code == 200
    assert again.status_code == 200


async def test_a_bogus_key_is_checked_with_retab_once(caller_key: Settings, sandbox: RunningSandbox) -> None:
    headers = {**LEGACY, "Api-Key": BOGUS_KEY}
    with serving(replace(caller_key, stateful=True)) as served:
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=50)) as client:

            async def initialize() -> None:
                answers.append(await client.post(served.mcp, json=INITIALIZE, headers=headers))

            async with anyio.create_task_group() as group:  # 50 at once...
                for _ in range(50):
                    group.start_soon(initialize)
            for _ in range(50):  # ...then 50 one after another
                await initialize()
    assert [answer.status_code for answer in answers] == [401] * 100
    assert {answer.json()["error"] for answer in answers} == {"invalid_key"}
    assert len(key_checks(sandbox)) == 1


async def test_a_session_answers_only_the_key_that_opened_it(caller_key: Settings) -> None:
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    with serving(replace(caller_key, stateful=True)) as served:
        async with httpx.AsyncClient(timeout=10) as client:
            opened = await client.post(served.mcp, json=INITIALIZE, headers={**LEGACY, "Api-Key": KEY_A})
            session = {**LEGACY, "Mcp-Session-Id": opened.headers["mcp-session-id"]}
            await client.post(
                served.mcp,
                json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                headers={**session, "Api-Key": KEY_A},
            )
            # Another tenant who learnt the session id, with a key Retab accepts, or a made-up one.
            others = [
                await client.post(served.mcp, json=listing, headers={**session, "Api-Key": key})
                for key in (KEY_B, BOGUS_KEY)
            ]
            stream = await client.get(served.mcp, headers={**session, "Api-Key": KEY_B})
            ended = await client.delete(served.mcp, headers={**session, "Api-Key": KEY_B})
            owner = await client.post(served.mcp, json=listing, headers={**session, "Api-Key": KEY_A})
    assert [answer.status_code for answer in [*others, stream, ended]] == [404] * 4
    assert owner.status_code == 200
    assert "get_edit" in owner.text


async def test_the_key_check_takes_an_admission_slot(caller_key: Settings, sandbox: RunningSandbox) -> None:
    """With the one slot taken by a call, a new key is not checked: 503, and nothing sent."""
    sandbox.sandbox.add_fault(Fault(status=None, delay=3, match="/v1/edits/edt_running01"))
    call = tool_call("get_edit", {"edit_id": "edt_running01"})
    with serving(replace(caller_key, stateful=True, max_in_flight=1)) as served:
        async with httpx.AsyncClient(timeout=10) as client:
            opened = await client.post(served.mcp, json=INITIALIZE, headers={**LEGACY, "Api-Key": KEY_A})
            session = {**LEGACY, "Api-Key": KEY_A, "Mcp-Session-Id": opened.headers["mcp-session-id"]}
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: client.post(served.mcp, json=call, headers=session))
                await anyio.sleep(0.5)  # the call holds the slot, waiting on Retab
                refused = await client.post(served.mcp, json=INITIALIZE, headers={**LEGACY, "Api-Key": KEY_B})
    assert refused.status_code == 503
    assert refused.json()["error"] == "unverified_key"
    assert refused.headers["retry-after"]
    assert len(key_checks(sandbox)) == 1  # KEY_A's, before the call


# -- auth -------------------------------------------------------------------------------------------


def test_an_auth_token_without_a_server_key_is_said_to_be_ignored_at_start_up(sandbox: RunningSandbox) -> None:
    token = "operator-token-5d2c9e"
    env = clean_env(RETAB_MCP_AUTH_TOKEN=token, RETAB_API_BASE_URL=sandbox.base_url)
    process = subprocess.Popen(
        [*SERVER_COMMAND, "--transport", "http", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        for _ in range(20):  # the warning, then the start line
            line = process.stderr.readline()
            lines.append(line)
            if not line or "Retab key:" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
    [warning] = [line for line in lines if "warning" in line]
    assert "RETAB_MCP_AUTH_TOKEN is set but ignored" in warning
    assert "RETAB_MCP_AUTH_TOKEN is set and ignored" in lines[-1]
    assert token not in "".join(lines)


def test_a_wrong_token_is_a_401_challenge(sandbox: RunningSandbox) -> None:
    settings = Settings(api_key="rt_test_server", auth_token="right-token-77a1", base_url=sandbox.base_url)
    with serving(settings) as served:
        answer = httpx.post(served.mcp, json=INITIALIZE, headers={**LEGACY, "Authorization": "Bearer wrong-token-77a1"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="retab-mcp", error="invalid_token"'
    assert "RETAB_MCP_AUTH_TOKEN" in answer.json()["message"]
    assert sandbox.sandbox.recorded() == []
