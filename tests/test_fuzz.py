"""Random replies and random arguments, from a seeded generator: whatever Retab (or a proxy in
front of it) sends, and whatever an agent passes, every call answers exactly once, within its
budget, with an envelope that validates against the tool's published outputSchema, in strict
JSON, small, and without the key.

The seed is fixed, so a failure is a case that can be replayed: its number is in the message.
"""

from __future__ import annotations

import json
import random
import string
import time
from typing import Any, Final

import pytest

from retab_mcp.config import Settings
from retab_mcp.endpoints import ENDPOINTS
from retab_mcp.sandbox import Fault, RunningSandbox
from retab_mcp.server import RetabMCPServer
from tests.support import Agent, connect, texts

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
