"""The README's promises under hostile input: replies that try to cost the server its memory or
its event loop, replies that echo the key, overload, shutdown, malformed keys and slow clients.

Hostile upstreams are the sandbox's fault injection, or (for what the sandbox cannot send: gzip
bombs, bodies that arrive slowly) a small raw HTTP server of this module's own on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gzip
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from retab_mcp import http
from retab_mcp.client import RetabClient
from retab_mcp.config import Settings
from retab_mcp.sandbox import Fault, RunningSandbox
from retab_mcp.server import RetabMCPServer
from tests.support import (
    KEY_A,
    LEGACY_HEADERS,
    Agent,
    clean_env,
    connect,
    free_port,
    http_server,
    jsonrpc,
    mcp_client,
    texts,
    validator_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# A key of no known shape, so that only the server's knowledge of it can keep it out.
PLAIN_KEY = "Zq9xLmP4vB7nK2sD8fH1wQ"


def fragments(secret: str, width: int = 8) -> list[str]:
    return [secret[i : i + width] for i in range(len(secret) - width + 1)]


def leaks(secret: str, *channels: str) -> list[str]:
    """The fragments of `secret` (8 characters or more) found in any channel."""
    return [piece for piece in fragments(secret) for channel in channels if piece in channel]


def everything_of(result: Any) -> str:
    return json.dumps(result.structured_content) + "".join(texts(result))


# -- the key never reaches a result -------------------------------------------------------------

# Whole secrets and exact encodings of them are masked; a run of a key's characters without its
# prefix is not in results (masking it would tell a caller which of its guesses is part of the key:
# redaction.py), only in logs.
ECHOES = {
    "authorization-header": '{"detail": "Bad header: Authorization: Bearer %(key)s"}',
    "key-alone": '{"detail": {"code": "E", "message": "m", "details": {"error": "key %(key)s refused"}}}',
    "base64": '{"detail": [{"loc": ["header", "authorization"], "msg": "got QmVhcmVy%(base64)s"}]}',
    "reversed": '{"detail": "yek %(reversed)s"}',
}


@pytest.mark.parametrize("echo", list(ECHOES))
async def test_an_upstream_echo_of_the_servers_key_reaches_no_result(
    sandbox: RunningSandbox, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(api_key=PLAIN_KEY, base_url=sandbox.base_url, call_timeout=5)
    encoded = base64.b64encode(b"x" + PLAIN_KEY.encode()).decode()
    body = ECHOES[echo] % {"key": PLAIN_KEY, "base64": encoded, "reversed": PLAIN_KEY[::-1]}
    sandbox.sandbox.add_fault(Fault(status=400, body=body))
    async for agent in connect(RetabMCPServer(settings), "auto"):
        result, envelope = await agent.call("cancel_edit", {"edit_id": "edt_running01"})
        assert envelope["error"]["code"] == "invalid_request"
        assert "[redacted]" in envelope["error"]["message"]
        assert leaks(PLAIN_KEY, everything_of(result)) == []


async def test_a_run_that_carries_the_key_reaches_no_result(sandbox: RunningSandbox) -> None:
    settings = Settings(api_key=PLAIN_KEY, base_url=sandbox.base_url, call_timeout=5)
    run = {"id": "edt_x", "status": "cancelled", "instructions": f"use {PLAIN_KEY}", PLAIN_KEY.encode().hex(): "k"}
    sandbox.sandbox.add_fault(Fault(status=200, body=json.dumps(run)))
    async for agent in connect(RetabMCPServer(settings), "legacy"):
        result, envelope = await agent.call("cancel_edit", {"edit_id": "edt_x"})
        assert envelope["ok"] is True
        assert envelope["edit"]["instructions"] == "use [redacted]"
        assert leaks(PLAIN_KEY, everything_of(result)) == []


async def test_an_echo_of_the_callers_key_reaches_no_channel_over_http(sandbox: RunningSandbox) -> None:
    caller_key = "caller_" + PLAIN_KEY
    sandbox.sandbox.add_fault(Fault(status=400, body=ECHOES["authorization-header"] % {"key": caller_key}))
    with http_server("--log-level", "DEBUG", RETAB_API_BASE_URL=sandbox.base_url) as server:
        async with mcp_client(server.mcp, {"Authorization": f"Bearer {caller_key}"}) as client:
            result = await client.call_tool("get_edit", {"edit_id": "edt_running01"})
        server.stop()
        assert result.structured_content is not None
        assert result.structured_content["error"]["code"] == "invalid_request"
        assert leaks(caller_key, everything_of(result), server.stderr) == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Authorization", "Bearer rt_test_\u00e9t\u00e9"),  # non-ASCII
        ("Api-Key", "rt_test_a\tb"),  # a control character
        ("Api-Key", "rt_test_" + "k" * 600),  # far too long
        ("Authorization", 'Bearer rt_test_"quoted"'),
    ],
    ids=["non-ascii", "control-character", "too-long", "quotes"],
)
async def test_a_malformed_caller_key_is_unauthorized_and_never_forwarded(
    sandbox: RunningSandbox, header: str, value: str
) -> None:
    with http_server(RETAB_API_BASE_URL=sandbox.base_url) as server:
        call = jsonrpc("tools/call", {"name": "get_edit", "arguments": {"edit_id": "edt_running01"}})
        async with httpx.AsyncClient() as raw:
            headers = raw_headers({**LEGACY_HEADERS, header: value})
            answer = await raw.post(server.mcp, json=call, headers=headers)
        server.stop()
    assert answer.status_code == 200, answer.text
    envelope = answer.json()["result"]["structuredContent"]
    assert envelope["error"]["code"] == "unauthorized"
    assert "malformed" in envelope["error"]["message"]
    assert sandbox.sandbox.recorded() == []
    assert "Traceback" not in server.stderr


def test_a_malformed_server_key_stops_an_http_start_up_without_showing_it() -> None:
    """Over HTTP a set RETAB_API_KEY that is no key is refused: serving each caller's own key
    instead is not what the operator meant. (On stdio it is served like a missing key: test_stdio.)"""
    done = subprocess.run(
        [sys.executable, "-m", "retab_mcp", "--transport", "http", "--port", "0"],
        env={**clean_env(), "RETAB_API_KEY": "rt_live_bad key\u00e9"},
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "RETAB_API_KEY is not a key" in done.stderr
    assert "bad key" not in done.stderr


# -- replies that try to cost the server its memory and its event loop ----------------------------


def tiny_objects(size: int) -> bytes:
    """`size` bytes of JSON that is nothing but tiny objects: the costliest shape to parse."""
    return b"[" + b",".join([b"{}"] * (size // 3)) + b"]"


RUN = json.dumps({"id": "edt_ok", "status": "in_progress", "model": "m", "config": {}}).encode()
HOSTILE_REPLIES: dict[str, Any] = {
    # ~60 KB on the wire, 60 MB once inflated.
    "gzip-bomb": lambda: ({"Content-Encoding": "gzip"}, gzip.compress(tiny_objects(60_000_000), 9)),
    # Inflates to 20 MB, within the size limit: only its structure gives it away.
    "gzip-of-tiny-objects": lambda: ({"Content-Encoding": "gzip"}, gzip.compress(tiny_objects(20_000_000), 9)),
    "24-mb-of-tiny-objects": lambda: ({}, tiny_objects(24_000_000)),
    "an-unasked-encoding": lambda: ({"Content-Encoding": "br"}, b"\x1b\x00\x00"),
    "corrupt-gzip": lambda: ({"Content-Encoding": "gzip"}, b"\x1f\x8b\x08\x00garbage"),
}


@functools.cache
def hostile_reply(name: str) -> tuple[dict[str, str], bytes]:
    """The headers and body of a hostile reply, built once (some take a second to compress)."""
    return HOSTILE_REPLIES[name]() if name in HOSTILE_REPLIES else ({}, RUN)


class HostileUpstream:
    """A raw HTTP/1.1 server on loopback: `/v1/edits/edt_<name>` answers HOSTILE_REPLIES[name]
    (or trickles a body for `edt_drip`), anything else a small in-progress run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].split(b"?")[0].decode()
                name = path.rsplit("/", 1)[-1].removeprefix("edt_")
                if name == "drip":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                    for _ in range(100_000):
                        writer.write(b" ")
                        await writer.drain()
                        await asyncio.sleep(0.05)
                    continue
                headers, body = hostile_reply(name.replace("_", "-"))
                lines = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
                lines += [f"{key}: {value}".encode() for key, value in headers.items()]
                writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> HostileUpstream:
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop)
        self.server = started.result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        yield upstream


def memory_kb(pid: int, field: str) -> int:
    """A VmRSS or VmHWM (peak RSS) figure of a process, in kB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Headers as bytes (UTF-8): httpx refuses a str header value that is not ASCII."""
    return [(name.encode(), value.encode()) for name, value in headers.items()]


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return jsonrpc("tools/call", {"name": name, "arguments": arguments})


@pytest.mark.parametrize("reply", [*HOSTILE_REPLIES, "drip"])
async def test_a_hostile_reply_costs_one_typed_error_and_stalls_nothing_else(
    hostile: HostileUpstream, reply: str
) -> None:
    budget = 5.0
    headers = {**LEGACY_HEADERS, "Api-Key": "rt_test_hostile"}
    env = {"RETAB_API_BASE_URL": hostile.base_url, "RETAB_MCP_CALL_TIMEOUT": str(budget)}
    hostile_reply(reply)  # built before the clock starts
    with http_server(**env) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            await client.post("/mcp", json=tool_call("get_edit", {"edit_id": "edt_ok"}))  # warm
            idle_kb = memory_kb(server.process.pid, "VmRSS")
            probes: list[float] = []
            answer: dict[str, Any] = {}

            async def hostile_call() -> None:
                started = time.monotonic()
                reply_ = await client.post("/mcp", json=tool_call("get_edit", {"edit_id": "edt_" + reply}))
                answer.update(reply_.json()["result"], seconds=time.monotonic() - started)

            async def probe() -> None:
                while not answer:
                    started = time.monotonic()
                    ok = await client.post("/mcp", json=tool_call("get_edit", {"edit_id": "edt_ok"}))
                    health = await client.get("/healthz")
                    assert (ok.status_code, health.status_code) == (200, 200)
                    assert ok.json()["result"]["structuredContent"]["ok"] is True
                    probes.append(time.monotonic() - started)
                    await anyio.sleep(0.02)

            async with anyio.create_task_group() as group:
                group.start_soon(hostile_call)
                group.start_soon(probe)
        peak_kb = memory_kb(server.process.pid, "VmHWM")
    envelope = answer["structuredContent"]
    expected = "timeout" if reply == "drip" else "invalid_response"
    assert envelope["error"]["code"] == expected, envelope["error"]
    assert answer["seconds"] < budget + 0.5
    assert probes
    assert max(probes) < 1.0, probes
    # Peak memory: a small multiple of idle, whatever the reply inflates to.
    assert peak_kb < 2 * idle_kb, (idle_kb, peak_kb)


# -- shutdown loses nothing ---------------------------------------------------------------------


async def sigterm_during(
    server: Any, calls: list[dict[str, Any]], after: float = 0.5
) -> tuple[list[httpx.Response], float, int]:
    """Send `calls` at once, SIGTERM the server `after` seconds later; (answers, seconds from the
    signal to the last answer, exit status)."""
    headers = {**LEGACY_HEADERS, "Api-Key": KEY_A}
    answers: list[httpx.Response] = []
    signalled = 0.0
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:

        async def one(call: dict[str, Any]) -> None:
            answers.append(await client.post(server.mcp, json=call, headers=headers))

        async with anyio.create_task_group() as group:
            for call in calls:
                group.start_soon(one, call)
            await anyio.sleep(after)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
        last = time.monotonic() - signalled
    status = await anyio.to_thread.run_sync(lambda: server.process.wait(timeout=60))
    return answers, last, status


async def test_sigterm_at_the_defaults_lets_every_call_in_flight_finish(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=None, delay=3, match="/v1/edits/", times=20))
    with http_server(RETAB_API_BASE_URL=sandbox.base_url) as server:
        calls = [tool_call("cancel_edit", {"edit_id": "edt_running01"}) for _ in range(20)]
        answers, _, status = await sigterm_during(server, calls)
    assert status == 0
    assert [answer.status_code for answer in answers] == [200] * 20
    assert {answer.json()["result"]["structuredContent"]["status"] for answer in answers} == {"cancelled"}


async def test_calls_that_cannot_finish_within_the_grace_answer_shutting_down(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=None, delay=25, match="/cancel", times=10))
    with http_server(RETAB_API_BASE_URL=sandbox.base_url, RETAB_MCP_SHUTDOWN_GRACE="3") as server:
        calls = [tool_call("cancel_edit", {"edit_id": "edt_running01"}) for _ in range(10)]
        calls += [tool_call("get_edit", {"edit_id": "edt_running01", "wait_seconds": 20})]
        answers, last, status = await sigterm_during(server, calls)
    assert status == 0
    assert last < 3
    assert [answer.status_code for answer in answers] == [200] * 11
    envelopes = [answer.json()["result"]["structuredContent"] for answer in answers]
    cut = [envelope for envelope in envelopes if envelope.get("edit") is None]
    assert len(cut) == 10
    for envelope in cut:
        assert (envelope["error"]["code"], envelope["error"]["retryable"]) == ("shutting_down", True)
        assert "get_edit" in envelope["error"]["hint"]
    [waited] = [envelope for envelope in envelopes if envelope.get("edit") is not None]
    # The wait had seen the run: it answers with it, and says why it stopped waiting.
    assert (waited["ok"], waited["status"], waited["terminal"]) == (True, "in_progress", False)
    assert "this retab-mcp process is shutting down" in waited["note"]


# -- overload: a bounded number of calls in flight, the rest turned away at once ------------------


async def test_a_burst_past_capacity_is_answered_in_time_with_typed_rejections(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=None, delay=0.4, match="/v1/edits/", times=1000))
    env = {"RETAB_API_BASE_URL": sandbox.base_url, "RETAB_MCP_MAX_IN_FLIGHT": "4", "RETAB_MCP_CALL_TIMEOUT": "5"}
    with http_server(**env) as server:
        headers = {**LEGACY_HEADERS, "Api-Key": KEY_A}
        seconds: list[float] = []
        envelopes: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as client:

            async def one() -> None:
                started = time.monotonic()
                call = tool_call("get_edit", {"edit_id": "edt_running01"})
                answer = await client.post(server.mcp, json=call, headers=headers)
                seconds.append(time.monotonic() - started)
                envelopes.append(answer.json()["result"]["structuredContent"])

            async with anyio.create_task_group() as group:
                for _ in range(60):
                    group.start_soon(one)
    outcomes = [envelope["error"]["code"] if envelope["error"] else "ok" for envelope in envelopes]
    assert len(outcomes) == 60
    assert set(outcomes) == {"ok", "overloaded"}
    # 4 at a time for 0.4 s each, and 1 s to wait for a slot: a few rounds get in.
    assert 4 <= outcomes.count("ok") <= 24
    assert max(seconds) < 5
    rejected = [envelope for envelope in envelopes if envelope["error"]]
    assert all(
        envelope["error"]["retryable"] and envelope["error"]["retry_after_seconds"] == 1 for envelope in rejected
    )
    assert "sent nothing" in rejected[0]["error"]["hint"]
    # Nothing was sent for a rejected call, and nothing twice for an admitted one.
    assert len(sandbox.sandbox.recorded()) == outcomes.count("ok")


async def reads_while_another_waits(agent: Agent) -> list[float]:
    """Seconds each of three quick reads took, made while a 2 s wait is in progress."""
    quick: list[float] = []

    async def reads() -> None:
        await anyio.sleep(0.3)
        for _ in range(3):
            started = time.monotonic()
            _, envelope = await agent.call("get_edit", {"edit_id": "edt_completed01"})
            assert envelope["ok"] is True
            quick.append(time.monotonic() - started)

    async with anyio.create_task_group() as group:
        group.start_soon(agent.call, "get_blueprint", {"blueprint_id": "fbp_running01", "wait_seconds": 2})
        group.start_soon(reads)
    return quick


async def test_calls_waiting_for_their_run_leave_room_for_others(settings: Settings) -> None:
    """Between polls a waiting call holds no slot: one slot serves a waiter and other calls too."""
    async for agent in connect(RetabMCPServer(replace(settings, max_in_flight=1)), "auto"):
        assert max(await reads_while_another_waits(agent)) < 1


# -- slow and idle clients ------------------------------------------------------------------------


@contextmanager
def in_process_http(settings: Settings, request_timeout: float) -> Iterator[str]:
    """The HTTP transport served from a thread of this process, with a short request deadline."""
    server = RetabMCPServer(settings)
    config = http.uvicorn_config(server, settings)
    config.http = type("QuickRequests", (http._BoundedProtocol,), {"request_timeout": request_timeout})
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        running.should_exit = True
        thread.join(10)


def closed_by_peer(connection: socket.socket) -> bool:
    connection.settimeout(0.1)
    try:
        return connection.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_slow_and_idle_connections_are_closed_and_others_are_served(sandbox: RunningSandbox) -> None:
    port = free_port()
    settings = Settings(base_url=sandbox.base_url, transport="http", port=port)
    with in_process_http(settings, request_timeout=0.5) as url:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for connection in slow:
            connection.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # one header byte at a time, as slowloris does
            for connection in slow:
                with contextlib.suppress(OSError):
                    connection.sendall(b"X")
            assert httpx.get(url + "/healthz", timeout=2).status_code == 200
            time.sleep(0.2)
        assert all(closed_by_peer(connection) for connection in idle + slow)
        # A client that sends its request whole is served as before, also on a kept-alive connection.
        with httpx.Client(base_url=url, headers={**LEGACY_HEADERS, "Api-Key": KEY_A}) as client:
            for _ in range(2):
                answer = client.post("/mcp", json=tool_call("get_edit", {"edit_id": "edt_running01"}))
                assert answer.json()["result"]["structuredContent"]["ok"] is True
                time.sleep(0.7)  # longer than the header deadline, shorter than keep-alive
    for connection in idle + slow:
        connection.close()


# -- stateful sessions: bounded, and only for keys Retab accepts --------------------------------

INITIALIZE = jsonrpc(
    "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
)


async def test_a_made_up_key_opens_no_session_and_a_real_one_opens_one_checked_once(
    sandbox: RunningSandbox,
) -> None:
    with http_server("--stateful", RETAB_API_BASE_URL=sandbox.base_url) as server:
        async with httpx.AsyncClient() as raw:
            refused = await raw.post(server.mcp, json=INITIALIZE, headers={**LEGACY_HEADERS, "Api-Key": "made-up"})
            # A control character: refused before any check with Retab, so never forwarded.
            malformed = await raw.post(
                server.mcp, json=INITIALIZE, headers=[(b"Api-Key", b"rt_test_a\tb"), *raw_headers(LEGACY_HEADERS)]
            )
            opened = [
                await raw.post(server.mcp, json=INITIALIZE, headers={**LEGACY_HEADERS, "Api-Key": KEY_A})
                for _ in range(3)
            ]
    for answer in (refused, malformed):
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_key"
    assert "mcp-session-id" not in refused.headers
    assert all(answer.status_code == 200 and answer.headers["mcp-session-id"] for answer in opened)
    # One check per key: the made-up one, then KEY_A once for its three sessions.
    assert [(r.path, r.query) for r in sandbox.sandbox.recorded()] == [("/v1/edits", "limit=1")] * 2


async def test_sessions_beyond_the_cap_are_refused(sandbox: RunningSandbox) -> None:
    with http_server("--stateful", RETAB_API_BASE_URL=sandbox.base_url, RETAB_MCP_MAX_SESSIONS="2") as server:
        async with httpx.AsyncClient() as raw:
            answers = [
                await raw.post(server.mcp, json=INITIALIZE, headers={**LEGACY_HEADERS, "Api-Key": key})
                for key in (KEY_A, "rt_test_second_tenant", "rt_test_third_tenant")
            ]
    assert [answer.status_code for answer in answers] == [200, 200, 503]


MALFORMED = [
    "garbage",  # not JSON
    '[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]',  # a batch, which MCP does not allow
    '{"jsonrpc": "1.0", "id": 1, "method": "ping"}',  # a wrong version
    '{"jsonrpc": "2.0", "id": 1}',  # no method
]


def test_malformed_json_rpc_over_http_gets_a_json_rpc_error(sandbox: RunningSandbox) -> None:
    headers = {**LEGACY_HEADERS, "Api-Key": KEY_A, "Content-Type": "application/json"}
    with http_server(RETAB_API_BASE_URL=sandbox.base_url) as server:
        answers = [httpx.post(server.mcp, content=body, headers=headers) for body in MALFORMED]
    for answer in answers:
        assert answer.status_code == 400
        error = answer.json()
        assert (error["jsonrpc"], error["id"]) == ("2.0", None)
        assert error["error"]["code"] in (-32700, -32600, -32602)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_call_turned_away_is_an_envelope_the_sdk_client_validates(sandbox: RunningSandbox, mode: str) -> None:
    """Over stateless HTTP the front answers for the SDK (legacy era) or the tool does (2026-07-28):
    either way the client gets the tool's envelope, valid against its outputSchema."""
    sandbox.sandbox.add_fault(Fault(status=None, delay=3, match="/v1/edits/edt_running01"))
    env = {"RETAB_API_BASE_URL": sandbox.base_url, "RETAB_MCP_MAX_IN_FLIGHT": "1"}
    with http_server(**env) as server:
        async with mcp_client(server.mcp, {"Api-Key": KEY_A}, mode) as client:
            schema = next(tool.output_schema for tool in (await client.list_tools()).tools if tool.name == "get_edit")
            async with anyio.create_task_group() as group:
                group.start_soon(client.call_tool, "get_edit", {"edit_id": "edt_running01"})
                await anyio.sleep(0.5)
                turned_away = await client.call_tool("get_edit", {"edit_id": "edt_queued01"})
    assert turned_away.is_error
    assert turned_away.structured_content is not None
    validator_for(schema or {}).validate(turned_away.structured_content)
    assert turned_away.structured_content["error"]["code"] == "overloaded"
    assert texts(turned_away)[0].startswith("get_edit failed: overloaded.")
    assert [r.path for r in sandbox.sandbox.recorded()] == ["/v1/edits/edt_running01"]


async def test_a_proxy_set_in_the_environment_is_used(
    hostile: HostileUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a corporate proxy (HTTP_PROXY, HTTPS_PROXY): the calls go through it."""
    monkeypatch.setenv("HTTP_PROXY", hostile.base_url)  # it answers any request with a run
    settings = Settings(api_key="rt_test_proxy", base_url="http://retab.invalid", call_timeout=5)
    async with RetabClient(settings) as client:
        reply = await client.request("GET", "/v1/edits/edt_ok", api_key="rt_test_proxy", verb="read", subject="edit")
    assert reply.body["id"] == "edt_ok"
