"""Processes and wires: the child environment, the sandbox process, an MCP client over stdio
pipes, process memory, and the statistics every figure is computed with.

The stdio client is hand-written (one `os.write`, one `select` + `os.read` loop per answer) so
the client's own cost is small and the same for every contender; the SDK's client would add its
own task scheduling and validation to every timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
BENCH_DIR: Final = Path(__file__).resolve().parent
BIN: Final = Path(sys.executable).parent
PROTOCOL_VERSION: Final = "2025-11-25"
SANDBOX_KEY: Final = "rt_test_sandbox"
BLUEPRINT_ID: Final = "fbp_a1b2c3d4e5f6"
EDIT_ID: Final = "edt_01G34H8J2K"
# The calls every per-call figure makes: (tool, arguments, sandbox path).
CALLS: Final[dict[str, tuple[dict[str, Any], str]]] = {
    "cancel_blueprint": ({"blueprint_id": BLUEPRINT_ID}, f"/v1/files/blueprints/{BLUEPRINT_ID}/cancel"),
    "cancel_edit": ({"edit_id": EDIT_ID}, f"/v1/edits/{EDIT_ID}/cancel"),
}
# The read calls of the per-call figures, made by the contenders that serve them: (tool, arguments,
# sandbox path of the matching GET). A read changes nothing, and a read of a stopped run answers as
# one of a running run does, so every read succeeds whatever the cancels have done to the run.
READ_CALLS: Final[dict[str, tuple[dict[str, Any], str]]] = {
    "get_edit": ({"edit_id": EDIT_ID}, f"/v1/edits/{EDIT_ID}?include_output=false"),
}
ALL_CALLS: Final = CALLS | READ_CALLS


def child_env(extra: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment of every measured process: bytecode caching on, as in users' installs.

    A build machine may set PYTHONDONTWRITEBYTECODE, which would make every start compile
    sources again (and hide real differences); the first (discarded) runs write the caches.
    """
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONDONTWRITEBYTECODE", *drop)}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.update(extra or {})
    return env


def rss_mb(pid: int) -> float:
    """Resident set size of a live process (VmRSS), in MB of 10^6 bytes, the unit of the goals."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and all its descendants have used so far, from /proc."""
    total = 0.0
    pending = [pid]
    ticks = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        pending += [int(child) for child in children]
    return total


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """End a process this harness started: close its stdin, then SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    if process.stdin is not None:
        # A stdio server ends on end of input, as it does when its client quits.
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=timeout / 2)
            return
        except subprocess.TimeoutExpired:
            pass
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout / 2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Sandbox:
    """`retab-mcp sandbox --port 0` in its own process: the upstream of every contender."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "retab-mcp"), "sandbox", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=child_env(drop=("RETAB_API_KEY",)),
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://"):
            stop(self.process)
            raise RuntimeError(f"the sandbox did not print its URL (got {line!r})")
        self.base_url = line

    def reset(self) -> None:
        import httpx

        httpx.post(f"{self.base_url}/_sandbox/reset", timeout=10).raise_for_status()

    def close(self) -> None:
        stop(self.process)


class ServerGone(RuntimeError):
    pass


@dataclass
class StdioServer:
    """An MCP server over stdio pipes, driven with newline-delimited JSON-RPC."""

    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] = field(init=False)
    started_ns: int = field(init=False)
    _buffer: bytearray = field(init=False, default_factory=bytearray)
    _next_id: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.started_ns = time.perf_counter_ns()
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
            # Not the repository: `python -c` puts its working directory first on sys.path,
            # which would shadow a `--baseline` checkout with the working tree's retab_mcp.
            cwd=tempfile.gettempdir(),
            bufsize=0,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict[str, Any]) -> None:
        data = memoryview(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        while data:
            written = os.write(self._in, data)
            data = data[written:]

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a request; returns its id."""
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self._next_id

    def answer(self, request_id: int, timeout: float = 60.0) -> bytes:
        """The raw line that answers `request_id` (notifications and logs in between are skipped)."""
        deadline = time.monotonic() + timeout
        needles = [b'"id":%d%s' % (request_id, end) for end in (b",", b"}")]
        needles += [b'"id": %d%s' % (request_id, end) for end in (b",", b"}")]
        while True:
            line = self._readline(deadline)
            # A byte search, not a parse, so the timing holds no client-side JSON work; the
            # caller parses and checks the line (`parse_answer`) outside the timing.
            if any(needle in line for needle in needles):
                return line

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        request_id = self.request(method, params)
        return parse_answer(self.answer(request_id, timeout), request_id, method)

    def initialize(self) -> None:
        self.call(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "retab-mcp-bench", "version": "0"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _readline(self, deadline: float) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.argv[0]} did not answer in time")
            ready, _, _ = select.select([self._out], [], [], left)
            if ready:
                chunk = os.read(self._out, 1 << 16)
                if not chunk:
                    raise ServerGone(f"{' '.join(self.argv)} exited with {self.process.wait()}")
                self._buffer += chunk

    def close(self) -> None:
        stop(self.process)


def parse_answer(line: bytes, request_id: int, method: str) -> dict[str, Any]:
    """The result of a JSON-RPC answer line, checked: the right id, no error, and for a tool
    call no `isError` (a benchmark of failing calls would measure nothing useful)."""
    message = json.loads(line)
    if message.get("id") != request_id or "method" in message:
        raise RuntimeError(f"expected the answer to request {request_id}, got {line[:300]!r}")
    if "error" in message:
        raise RuntimeError(f"{method} failed: {message['error']}")
    result: dict[str, Any] = message["result"]
    if method == "tools/call" and result.get("isError"):
        raise RuntimeError(f"tools/call answered isError: {json.dumps(result)[:500]}")
    return result


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p99, min, max and the interquartile range, in the values' own unit."""
    return {
        "n": len(values),
        "p50": median(values),
        "p99": percentile(values, 99),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
        "iqr": percentile(values, 75) - percentile(values, 25),
    }
