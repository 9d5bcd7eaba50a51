"""Random replies and random arguments, from a seeded generator: whatever Retab (or a proxy in
front of it) sends, and whatever an agent passes, every call answers exactly once, within its
budget, with an envelope that validates against the tool's published outputSchema, in strict
JSON, small, and without the key.

The same promise on the wire, for what an in-memory client cannot send: lines and bodies nested
thousands deep, a UTF-8 BOM, ids shaped like the server's key (its public prefix and guesses at
what follows, the oracle attack of SECURITY.md), and, over HTTP, bodies that never finish
arriving. Every request with an id gets exactly one answer, within 64 KiB, with no run of 8 of
the key's characters in it, and the server goes on serving.

The seed is fixed, so a failure is a case that can be replayed: its number is in the message.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import string
import time
from typing import Any, Final

import httpx
import pytest

from retab_mcp.config import Settings
from retab_mcp.endpoints import ENDPOINTS
from retab_mcp.http import REQUEST_TIMEOUT_SECONDS
from retab_mcp.sandbox import Fault, RunningSandbox
from retab_mcp.server import RetabMCPServer
from tests.support import Agent, StdioServer, clean_env, connect, http_server, texts

pytestmark = pytest.mark.anyio

KEY: Final = "rt_test_Fuzz4yK2mQ9wLx7"
CASES: Final = 300
BUDGET: Final = 2.0
STATUSES: Final = [200, 200, 200, 201, 202, 204, 299, 301, 304, 400, 401, 403, 404, 409, 418, 422, 429, 500, 502, 503]
RUN_FIELDS: Final = ["id", "status", "file", "output", "error", "object", "mode", "intent", "created_at", "model",
                     "config", "usage", "template_id", "filled_document_ref", "instructions", "updated_at"]  # fmt: skip
RUN_STATUSES: Final = ["pending", "queued", "in_progress", "completed", "failed", "cancelled", "paused", ""]


class Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self) -> str:
        choice = self.rng.randrange(9)
        if choice == 0:
            return ""
        if choice == 1:
            return "x" * self.rng.choice([1, 100, 5_000, 70_000])
        if choice == 2:
            return "".join(self.rng.choice('\x00\x1f\x7f\u2028\ud7ff é✓"\\\n') for _ in range(20))
        if choice == 3:
            return f"echo Bearer {KEY} and {KEY[3:15]}"
        if choice == 4:
            return "data:application/pdf;base64," + "QUJD" * self.rng.choice([2, 20_000])
        if choice == 5:
            return self.rng.choice(RUN_STATUSES)
        return "".join(self.rng.choice(string.printable) for _ in range(self.rng.randrange(30)))

    def number(self) -> Any:
        return self.rng.choice([0, -1, 1.5, 10**30, -(10**30), 1e308, -0.0, 3])

    def value(self, depth: int = 0) -> Any:
        kind = self.rng.randrange(8 if depth < 4 else 4)
        if kind == 0:
            return None
        if kind == 1:
            return self.rng.random() < 0.5
        if kind == 2:
            return self.number()
        if kind == 3:
            return self.text()
        if kind in (4, 5):
            # Long lists near the top only, or bodies grow to gigabytes.
            lengths = [0, 1, 3, 200] if depth < 2 else [0, 1, 3]
            return [self.value(depth + 1) for _ in range(self.rng.choice(lengths))]
        keys = [*RUN_FIELDS, "filename", "mime_type", "form_data", "filled_document", "url", "credits", self.text()]
        return {self.rng.choice(keys): self.value(depth + 1) for _ in range(self.rng.choice([0, 2, 5]))}

    def run(self) -> dict[str, Any]:
        body = {name: self.value(1) for name in self.rng.sample(RUN_FIELDS, self.rng.randrange(len(RUN_FIELDS)))}
        if self.rng.random() < 0.7:
            body["id"] = self.rng.choice(["edt_x", "fbp_x", self.text()])
            body["status"] = self.rng.choice(RUN_STATUSES)
        return body

    def body(self) -> str:
        shape = self.rng.randrange(7)
        if shape == 0:
            return json.dumps({"data": [self.run() for _ in range(self.rng.choice([0, 1, 10, 100]))],
                               "list_metadata": {"after": self.value(), "before": self.value()}})  # fmt: skip
        if shape == 1:
            return json.dumps({"detail": self.value()})
        if shape == 2:
            return json.dumps(self.run())[: self.rng.randrange(1, 200)]  # cut short
        if shape == 3:
            return self.rng.choice(["", "<html><body>502 Bad Gateway</body></html>", "null", "[]", "1e999", "NaN"])
        return json.dumps(self.run())

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.rng.random() < 0.5:
            headers["Retry-After"] = self.rng.choice(
                ["0", "0.01", "-1", "inf", "nan", "1e999", "soon", "Wed, 21 Oct 2099 07:28:00 GMT", "", "0.2"]
            )
        if self.rng.random() < 0.3:
            headers["x-request-id"] = self.rng.choice(["req_1", "r" * 5_000, "a b\tc"])
        return headers

    def arguments(self, tool: str) -> dict[str, Any]:
        endpoint = next(e for e in ENDPOINTS if e.tool == tool)
        if self.rng.random() < 0.15:  # anything at all
            return {self.text()[:10] or "x": self.value() for _ in range(self.rng.randrange(3))}
        if endpoint.action == "list":
            arguments: dict[str, Any] = {}
            if self.rng.random() < 0.5:
                arguments["limit"] = self.rng.choice([1, 10, 100, 0, 101, "5", None])
            if self.rng.random() < 0.3:
                arguments["status"] = self.rng.choice([*RUN_STATUSES, None, 3])
            if self.rng.random() < 0.3:
                arguments["after"] = self.rng.choice(["edt_1", "", "a b", "x" * 600, None])
            return arguments
        arguments = {endpoint.kind.id_arg: self.rng.choice(["edt_x", "fbp_x", "../x", "", "x" * 129, 7, None])}
        if self.rng.random() < 0.3:
            arguments["include_output"] = self.rng.choice([True, False, "yes", 1])
        if self.rng.random() < 0.2:
            arguments["wait_seconds"] = self.rng.choice([0, 0.3, -1, 1e9, "2"])
        return arguments


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def test_random_replies_and_arguments_always_get_one_valid_envelope_in_time(sandbox: RunningSandbox) -> None:
    # Every tool of the run table: the server serves every toolset.
    settings = Settings(api_key=KEY, base_url=sandbox.base_url, call_timeout=BUDGET, max_attempts=2, toolsets=("all",))
    generate = Generator(random.Random(20261202))  # noqa: S311 (a fuzzer, not cryptography)
    tools = [endpoint.tool for endpoint in ENDPOINTS]
    async for agent in connect(RetabMCPServer(settings), "auto"):
        for case in range(CASES):
            await one_case(agent, sandbox, generate, generate.rng.choice(tools), case)


async def one_case(agent: Agent, sandbox: RunningSandbox, generate: Generator, tool: str, case: int) -> None:
    sandbox.sandbox.reset()
    fault = Fault(status=generate.rng.choice(STATUSES), headers=generate.headers(), body=generate.body(), times=2)
    sandbox.sandbox.add_fault(fault)
    arguments = generate.arguments(tool)
    started = time.monotonic()
    result, envelope = await agent.call(tool, arguments)  # validates against the outputSchema
    elapsed = time.monotonic() - started
    where = f"case {case}: {tool}({arguments!r:.200}) <- HTTP {fault.status} {fault.body!r:.200}"
    assert elapsed < BUDGET + 0.5, where
    [summary, text] = texts(result)
    assert strict_json(text) == envelope, where
    if not arguments.get("include_output"):
        assert len(summary) + 2 * len(text) < 64 * 1024, where
    everything = summary + text
    assert KEY not in everything, where
    assert all(KEY[i : i + 8] not in everything for i in range(len(KEY) - 7)), where


WIRE_CASES: Final = 120
DEPTHS: Final = [2, 50, 300, 1_000, 5_000, 30_000]
KEY_CHARS: Final = string.ascii_letters + string.digits + "_-"


def key_shaped_id(rng: random.Random) -> str:
    """What an attacker who knows the key's public prefix sends: the prefix, a part of the key
    that follows it, a guess at the next character; or the key itself, encoded or whole."""
    known = KEY[: rng.randrange(8, len(KEY))]
    return rng.choice(
        [known + rng.choice(KEY_CHARS) + "ZZ", known, KEY, "x" + KEY, base64.b64encode(KEY.encode()).decode()]
    )


def nested(depth: int) -> str:
    return "[" * depth + '"edt_x"' + "]" * depth


def wire_message(rng: random.Random, request_id: int) -> bytes:
    """One JSON-RPC request as bytes, hostile in one of several ways."""
    tool = rng.choice(ENDPOINTS)
    id_arg = "after" if tool.action == "list" else tool.kind.id_arg
    name, arguments, prefix = tool.tool, json.dumps({id_arg: "edt_x"}), b""
    shape = rng.randrange(6)
    if shape == 0:  # an argument nested deep
        arguments = json.dumps({id_arg: "@"}).replace('"@"', nested(rng.choice(DEPTHS)))
    elif shape == 1:  # the whole params nested deep
        params = nested(rng.choice(DEPTHS))
        return f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/call", "params": {params}}}'.encode()
    elif shape == 2:  # a key-shaped id: the oracle attack
        arguments = json.dumps({id_arg: key_shaped_id(rng)})
    elif shape == 3:  # a key-shaped argument name, or a tool named like the key
        name, arguments = rng.choice([name, key_shaped_id(rng)]), json.dumps({key_shaped_id(rng): 1})
    elif shape == 4:  # a resource URI holding a key-shaped id
        params = json.dumps({"uri": f"retab://edits/{key_shaped_id(rng)}/filled_document"})
        return f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "resources/read", "params": {params}}}'.encode()
    else:  # a byte-order mark before an ordinary call
        prefix = "\ufeff".encode()
    call = f'"params": {{"name": {json.dumps(name)}, "arguments": {arguments}}}'
    return prefix + f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/call", {call}}}'.encode()


def assert_no_key_fragment(text: str, where: str, sent: str = "") -> None:
    """No run of 8 of the key's characters in `text`, but those the caller sent itself (the SDK
    quotes a resource URI back as it came): what comes back holds nothing of the key it did not
    already have."""
    leaked = [KEY[i : i + 8] for i in range(len(KEY) - 7) if KEY[i : i + 8] in text and KEY[i : i + 8] not in sent]
    assert not leaked, (leaked, where)
    encoded = base64.b64encode(KEY.encode()).decode()[:12]
    assert encoded not in text or encoded in sent, where


def test_hostile_lines_over_real_stdio_each_get_exactly_one_answer(sandbox: RunningSandbox) -> None:
    rng = random.Random(20261205)  # noqa: S311 (a fuzzer, not cryptography)
    server = StdioServer(
        env=clean_env(RETAB_API_KEY=KEY, RETAB_API_BASE_URL=sandbox.base_url, RETAB_MCP_CALL_TIMEOUT="2")
    )
    try:
        server.initialize()
        sent: dict[int, bytes] = {}
        for case in range(WIRE_CASES):
            request_id = 1000 + case
            sent[request_id] = wire_message(rng, request_id)
            server.send_line(sent[request_id])
        assert server.request("ping")["result"] == {}  # still serving after all of it
        stderr = server.close()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert server.process.returncode == 0, stderr
    answered: dict[int, int] = {}
    for line in server.stdout_lines:
        where = f"stdout line {line[:200]!r}"
        assert len(line) < 64 * 1024, where
        message = json.loads(line)
        assert_no_key_fragment(line.decode(), where, sent.get(message.get("id"), b"").decode(errors="replace"))
        if "id" in message:
            assert ("result" in message) != ("error" in message), where
            answered[message["id"]] = answered.get(message["id"], 0) + 1
    for request_id, line in sent.items():
        assert answered.get(request_id) == 1, (
            f"case {request_id - 1000}: {line[:200]!r} answered {answered.get(request_id, 0)} times"
        )
    assert_no_key_fragment(stderr, "stderr", b"".join(sent.values()).decode(errors="replace"))


def test_hostile_requests_over_http_each_get_exactly_one_answer_while_slow_bodies_are_cut(
    sandbox: RunningSandbox,
) -> None:
    rng = random.Random(20261206)  # noqa: S311 (a fuzzer, not cryptography)
    with http_server(RETAB_API_BASE_URL=sandbox.base_url, RETAB_MCP_CALL_TIMEOUT="2") as server:
        # Bodies that never finish arriving, held open while every other case is served.
        slow: list[socket.socket] = []
        for _ in range(20):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=REQUEST_TIMEOUT_SECONDS + 5)
            connection.sendall(
                b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n"
                b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 60000\r\n\r\n{"
            )
            slow.append(connection)
        began = time.monotonic()
        headers = {"Authorization": f"Bearer {KEY}", "Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json", "MCP-Protocol-Version": "2025-11-25"}  # fmt: skip
        bodies: list[bytes] = []
        with httpx.Client(timeout=10) as client:
            for case in range(WIRE_CASES):
                body = wire_message(rng, case)
                bodies.append(body)
                reply = client.post(server.mcp, content=body, headers=headers)
                where = f"case {case}: {body[:200]!r} -> HTTP {reply.status_code} {reply.text[:200]!r}"
                assert reply.status_code in (200, 400, 413, 415, 422), where
                assert len(reply.content) < 64 * 1024, where
                assert_no_key_fragment(reply.text, where, body.decode(errors="replace"))
                if reply.status_code == 200:
                    answer = json.loads(reply.text)
                    assert answer["id"] == case, where
                    assert ("result" in answer) != ("error" in answer), where
            assert client.get(server.url + "/healthz").status_code == 200
        # Each slow body is cut within the request deadline of its connection's opening.
        for connection in slow:
            connection.settimeout(max(0.1, began + REQUEST_TIMEOUT_SECONDS + 3 - time.monotonic()))
            try:
                leftover = connection.recv(65536)
            except (ConnectionResetError, TimeoutError) as exc:
                leftover = b"" if isinstance(exc, ConnectionResetError) else b"still open"
            assert leftover in (b"",) or leftover.startswith(b"HTTP/1.1 4"), leftover[:200]
            connection.close()
    # The log may quote what a caller sent (a resource URI it made up), never more of the key.
    assert_no_key_fragment(server.stderr, "stderr", b"".join(bodies).decode(errors="replace"))
