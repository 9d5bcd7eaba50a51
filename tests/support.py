"""The test harness, shared by every test module (fixtures are in conftest.py; no test module
imports another):
- an MCP client in-process that checks every result against the tool's outputSchema (`Agent`,
  `connect`, `texts`);
- retab-mcp as a real subprocess, the way clients and users start it: over HTTP
  (`http_server`, `mcp_client`, `jsonrpc`), the sandbox alone (`sandbox_process`);
- the external tools that drive it (the Inspector CLI: `inspector`), with `tool_env`: never
  with the user's HOME."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jsonschema
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from retab_mcp.config import ENV_VARS
from retab_mcp.server import RetabMCPServer

ROOT = Path(__file__).resolve().parent.parent

# `python -m retab_mcp` of the interpreter running the tests: the installed package, no shell.
SERVER_COMMAND = [sys.executable, "-m", "retab_mcp"]

ERAS = ["legacy", "auto"]  # 2025-11-25 (initialize handshake) and 2026-07-28 (sessionless)


# -- an MCP client in-process ---------------------------------------------------------------------


class Agent:
    """The SDK's `Client` plus the check every test wants: each structured result validates
    against the outputSchema that tools/list published, errors included."""

    def __init__(self, client: Client, schemas: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.schemas = schemas
        # One checked validator per tool: jsonschema.validate() would re-check the schema each call.
        self.validators = {name: validator_for(schema) for name, schema in schemas.items()}

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[CallToolResult, dict[str, Any]]:
        result = await self.client.call_tool(tool, arguments)
        assert result.structured_content is not None, result
        self.validators[tool].validate(result.structured_content)
        assert result.is_error is (not result.structured_content["ok"])
        return result, result.structured_content


def validator_for(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    # Checking a schema against its metaschema costs ~25 ms and every test connects an Agent: check
    # each distinct schema once per run.
    return _checked_validator(json.dumps(schema, sort_keys=True))


@functools.cache
def _checked_validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def texts(result: CallToolResult) -> list[str]:
    """The text blocks of a result: a summary line, then the envelope as JSON."""
    assert all(isinstance(block, TextContent) for block in result.content)
    return [block.text for block in result.content if isinstance(block, TextContent)]


async def connect(server: RetabMCPServer, mode: str) -> AsyncIterator[Agent]:
    async with Client(server, mode=mode) as client:
        tools = (await client.list_tools()).tools
        yield Agent(client, {tool.name: tool.output_schema or {} for tool in tools})


# -- retab-mcp over HTTP, as a process -------------------------------------------------------------

KEY_A = "rt_test_callerA_8f2k1m"
KEY_B = "rt_test_callerB_3q9z7x"


# What the raw-pipe client says in its handshake (the 2025-11-25 era).
STDIO_INITIALIZE = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}


class StdioServer:
    """`python -m retab_mcp` driven over raw pipes, so every byte on stdout is inspected."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "retab_mcp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.stdout_lines: list[bytes] = []
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self._stderr.extend(self.process.stderr)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout_lines.append(line)
            with contextlib.suppress(ValueError):  # a non-JSON line is kept above; the test fails on it
                self._messages.put(json.loads(line))

    def send(self, message: dict[str, Any]) -> None:
        self.send_line(json.dumps(message).encode())

    def send_line(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def next_message(self, timeout: float = 15) -> dict[str, Any]:
        return self._messages.get(timeout=timeout)

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 15) -> dict[str, Any]:
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}})
        deadline = time.monotonic() + timeout
        while True:
            message = self._messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if message.get("id") == self._next_id:
                return message

    def initialize(self) -> dict[str, Any]:
        reply = self.request("initialize", STDIO_INITIALIZE)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": tool, "arguments": arguments})

    def close(self) -> str:
        assert self.process.stdin is not None
        self.process.stdin.close()  # end of input: the server exits on its own
        return self.exited()

    def exited(self) -> str:
        """Once the process has exited (within 15 s): all it wrote on stderr."""
        self.process.wait(timeout=15)
        self._reader.join(timeout=5)
        self._stderr_reader.join(timeout=5)
        return b"".join(self._stderr).decode()

    def answers(self) -> list[dict[str, Any]]:
        """Every answer on stdout so far (once the process has exited: all it ever wrote)."""
        return [json.loads(line) for line in self.stdout_lines if "method" not in json.loads(line)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class HttpServer:
    def __init__(self, process: subprocess.Popen[bytes], port: int, stderr: list[bytes]) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.mcp = self.url + "/mcp"
        self._stderr = stderr

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextmanager
def http_server(*args: str, **env: str) -> Iterator[HttpServer]:
    """`retab-mcp --transport http` on a free loopback port, logging at INFO, with `env` on top of
    clean_env(); yielded once /readyz answers 200, and stopped (SIGTERM) after."""
    port = free_port()
    process = subprocess.Popen(
        [*SERVER_COMMAND, "--transport", "http", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(RETAB_MCP_LOG_LEVEL="INFO", **env),
    )
    stderr: list[bytes] = []
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr or []), daemon=True)
    reader.start()
    server = HttpServer(process, port, stderr)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(server.url + "/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, server.stderr
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.stop()
        reader.join(timeout=5)


def wait_for(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


@asynccontextmanager
async def mcp_client(url: str, headers: dict[str, str], mode: str = "auto") -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def jsonrpc(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}


LEGACY_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


# -- the Inspector CLI ------------------------------------------------------------------------------

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
SANDBOX_SERVER = [*SERVER_COMMAND, "--sandbox"]  # what the quick start runs


def inspector(*args: str, target: Sequence[str] = SANDBOX_SERVER) -> tuple[int, dict[str, Any], str]:
    """Runs the Inspector CLI against `target` (a server command, or a URL and its transport)."""
    done = subprocess.run(
        [npm_command(INSPECTOR, "mcp-inspector"), "--cli", *target, *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=tool_env(),
    )
    output = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, output, done.stderr


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any variable the server reads, plus `extra`.

    A developer's own RETAB_API_KEY or base URL must never reach a test's subprocess.
    """
    names = {var.name for var in ENV_VARS}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("RETAB_")}
    env.update(extra)
    return env


def tool_env(**extra: str) -> dict[str, str]:
    """clean_env(**extra) for an external tool (the Inspector, the conformance suite, mcpb, uv):
    HOME is a new empty directory, so nothing the user's home holds (the Inspector's stored OAuth
    state, a keychain notice it prints because of it, a tool's own config) changes what a test sees.

    What the tools need to reach their registries is kept: npm's cache and user config, uv's cache
    and Pythons, resolved once from the real HOME, so nothing is downloaded again.
    """
    home = tempfile.mkdtemp(prefix="retab-mcp-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    env = {k: v for k, v in clean_env().items() if not k.startswith("XDG_")}  # XDG_* point into the real home
    env |= {"HOME": home, **_package_manager_settings()}
    if "USERPROFILE" in env:  # Windows' HOME
        env["USERPROFILE"] = home
    env.update(extra)
    return env


@functools.cache
def _package_manager_settings() -> dict[str, str]:
    """Where npm and uv keep their caches and configuration under the real HOME, as variables."""
    settings: dict[str, str] = {}

    def ask(*command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    if npm := shutil.which("npm"):
        if cache := ask(npm, "config", "get", "cache"):
            settings["npm_config_cache"] = cache
        if (userconfig := ask(npm, "config", "get", "userconfig")) and Path(userconfig).is_file():
            settings["npm_config_userconfig"] = userconfig  # the registry, a proxy, a CA
    if uv := os.environ.get("UV") or shutil.which("uv"):
        if cache := ask(uv, "cache", "dir"):
            settings["UV_CACHE_DIR"] = cache
        if pythons := ask(uv, "python", "dir"):
            settings["UV_PYTHON_INSTALL_DIR"] = pythons
    return settings


@contextmanager
def sandbox_process() -> Iterator[str]:
    """`retab-mcp sandbox --port 0` as a subprocess; yields the base URL it prints first."""
    process = subprocess.Popen(
        [*SERVER_COMMAND, "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), f"the sandbox printed {base_url!r}"
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@functools.cache
def npm_command(package: str, name: str) -> str:
    """The absolute path of command `name` of the npm package `package` (`name@version`), the
    same file `npx -y package` runs.

    Resolved once per test process: every `npx` start spends ~0.6 s of CPU finding the package
    before the command runs, and the suite runs these commands dozens of times. The first
    resolution installs the package into npx's cache, under a lock, so parallel test processes
    do not install it into the same place at once.
    """
    npx = shutil.which("npx")
    assert npx is not None, "npx (Node.js) is not installed"
    with _machine_lock("npx"):
        done = subprocess.run(
            [npx, "-y", "--package", package, "-c", f"command -v {name}"],
            capture_output=True,
            text=True,
            timeout=600,
            env=tool_env(),
        )
    assert done.returncode == 0, f"npx could not install {package}: {done.stderr[-2000:]}"
    path = done.stdout.strip().splitlines()[-1]
    assert os.path.isabs(path), f"npx found no command {name} in {package}: {done.stdout!r}"
    return path


@contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process on this machine (POSIX; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # Windows: tests run one process at a time there anyway
        yield
        return
    with open(Path(tempfile.gettempdir()) / f"retab-mcp-tests-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
