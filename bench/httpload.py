"""HTTP mode: calls per second and latency at fixed concurrency, stateless JSON Streamable HTTP.

Each server runs in its own process on loopback, with the sandbox in another. The load comes
from a small hand-written HTTP/1.1 client (one keep-alive connection per worker, asyncio
streams): on a 2-core machine every cycle the client spends is taken from the server, so the
client is kept to the bytes it must write and read. Each request is a bare `tools/call` with
`MCP-Protocol-Version: 2025-11-25`, which a stateless server answers without a session.

Two kinds of load:
- closed loop (`run`): `concurrency` clients, each sending its next call when the last one is
  answered: calls/s, latency and the server's CPU time per call (its process tree, from /proc).
- open loop (`offered`): calls sent at a fixed rate whatever the server does, as many agents
  would, past what the server can serve: what comes back is sorted into goodput (a successful
  result in time), typed refusals (the `overloaded` / `shutting_down` envelopes, or HTTP 503),
  other errors, and timeouts.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.harness import CALLS, PROTOCOL_VERSION, SANDBOX_KEY, child_env, cpu_seconds, free_port, stop, summary

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class HttpContender:
    key: str
    label: str
    argv: list[str]  # with "{port}" where the port goes
    env: dict[str, str]
    calls: list[tuple[str, dict[str, Any]]]  # (tool, arguments), taken in turn
    # Once the server listens, the value of each request's Authorization header (the caller's key
    # by default; an OAuth access token for --auth oauth, see bench/oauth.py).
    authorize: Callable[[str], str] | None = None


class HttpServer:
    def __init__(self, contender: HttpContender) -> None:
        self.port = free_port()
        self.contender = contender
        argv = [part.replace("{port}", str(self.port)) for part in contender.argv]
        self.argv = argv
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=contender.env,
            # Not the repository: `python -c` puts its working directory first on sys.path,
            # which would shadow a `--baseline` checkout with the working tree's retab_mcp.
            cwd=tempfile.gettempdir(),
        )
        self.authorization = f"Bearer {SANDBOX_KEY}"
        self.requests = self._requests()

    def _requests(self) -> list[bytes]:
        return [self._request(tool, arguments, i) for i, (tool, arguments) in enumerate(self.contender.calls)]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{' '.join(self.argv)} exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(self.argv)} did not listen on {self.port}") from None
                time.sleep(0.05)
                continue
            if self.contender.authorize is not None:
                self.authorization = self.contender.authorize(f"http://127.0.0.1:{self.port}")
                self.requests = self._requests()
            return

    def _request(self, tool: str, arguments: dict[str, Any], request_id: int) -> bytes:
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": request_id + 1,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            },
            separators=(",", ":"),
        ).encode()
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {PROTOCOL_VERSION}\r\n"
            f"Authorization: {self.authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def close(self) -> None:
        stop(self.process)


class BadAnswer(RuntimeError):
    pass


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    status, body = await _raw_exchange(reader, writer, request)
    if status != 200:
        raise BadAnswer(f"HTTP {status}: {body[:300]!r}")
    return body


async def _raw_exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, rest = head.partition(b"\r\n")
    length = None
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise BadAnswer(f"no Content-Length (not JSON response mode?): {head[:300]!r}")
    body = await reader.readexactly(length)
    return int(status_line.split(b" ", 2)[1]), body


def _check(body: bytes) -> None:
    message = json.loads(body)
    result = message.get("result")
    if not isinstance(result, dict) or result.get("isError"):
        raise BadAnswer(f"not a successful tool result: {body[:300]!r}")


async def _load(server: HttpServer, concurrency: int, warmup: float, duration: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    measure_to = measure_from + duration
    latencies: list[float] = []
    completed = 0
    failures = 0
    answered = 0  # every answer in the slice, warm-up included: what the CPU time was spent on
    bodies: list[bytes] = []

    async def worker(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        index = offset
        try:
            while True:
                began = loop.time()
                if began >= measure_to:
                    return
                body = await _exchange(reader, writer, server.requests[index % len(server.requests)])
                ended = loop.time()
                index += 1
                nonlocal answered
                answered += 1
                if b'"isError":true' in body or b'"result"' not in body:
                    nonlocal failures
                    failures += 1  # every answer is looked at; the first few are parsed in full
                if measure_from <= ended <= measure_to:
                    nonlocal completed
                    completed += 1  # throughput: calls completed inside the window
                    if began >= measure_from:  # latency: calls wholly inside it
                        latencies.append((ended - began) * 1000)
                    if len(bodies) < 4:
                        bodies.append(body)
        finally:
            writer.close()

    cpu_before = cpu_seconds(server.process.pid)
    answered_before = answered
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    cpu = cpu_seconds(server.process.pid) - cpu_before
    for body in bodies:
        _check(body)
    return {
        "calls_per_s": completed / duration,
        "latencies": latencies,
        "completed": completed,
        "failures": failures,
        "cpu_s": cpu,
        "answered": answered - answered_before,
    }


def run(
    contenders: Sequence[HttpContender],
    levels: Sequence[int],
    slices: int,
    warmup: float,
    duration: float,
    log: Log,
) -> dict[str, Any]:
    """Every contender at every level, in `slices` interleaved slices (A B B A ...) whose calls
    are pooled: throughput is the calls completed over the measured seconds, p50/p99 over the
    calls of every slice. A server that fails (does not start, answers an error) is reported
    as failed with the reason, and the others go on."""
    servers: dict[str, HttpServer] = {}
    results: dict[str, Any] = {c.key: {} for c in contenders}
    try:
        for contender in contenders:
            servers[contender.key] = HttpServer(contender)
        for key, server in list(servers.items()):
            try:
                server.wait_ready()
            except RuntimeError as exc:
                results[key] = {"failed": str(exc)}
                log(f"  http: {key} failed: {exc}")
                servers.pop(key).close()
        for level in levels:
            pooled: dict[str, list[dict[str, Any]]] = {key: [] for key in servers}
            for slice_ in range(slices):
                order = list(servers)
                if slice_ % 2:
                    order.reverse()
                for key in order:
                    if "failed" in results[key]:
                        continue
                    try:
                        pooled[key].append(asyncio.run(_load(servers[key], level, warmup, duration)))
                    except (OSError, BadAnswer, asyncio.IncompleteReadError, ValueError) as exc:
                        results[key] = {"failed": f"{type(exc).__name__}: {exc}"[:500]}
                        log(f"  http: {key} failed: {results[key]['failed']}")
            for key, parts in pooled.items():
                if "failed" in results[key] or not parts:
                    continue
                latencies = [value for part in parts for value in part["latencies"]]
                if not latencies:
                    # Nothing wholly inside the window (a short window on a busy machine): no figure.
                    results[key][str(level)] = {"concurrency": level, "skipped": "no call completed in the window"}
                    continue
                stats = summary(latencies)
                answered = sum(p["answered"] for p in parts)
                results[key][str(level)] = {
                    "concurrency": level,
                    "calls_per_s": sum(p["completed"] for p in parts) / (duration * len(parts)),
                    "p50_ms": stats["p50"],
                    "p99_ms": stats["p99"],
                    "cpu_per_call_ms": sum(p["cpu_s"] for p in parts) / answered * 1000,
                    "completed": sum(p["completed"] for p in parts),
                    "failed_calls": sum(p["failures"] for p in parts),
                    "latency_ms": stats,
                    "slices": [
                        {"calls_per_s": p["calls_per_s"], "cpu_s": p["cpu_s"], **summary(p["latencies"])} for p in parts
                    ],
                }
            log(f"  http: concurrency {level} done")
    finally:
        for server in servers.values():
            server.close()
    return results


# -- open loop: offered load past saturation ----------------------------------------------------

# What the server answers a call it turns away with: a typed, retryable envelope.
REFUSALS: Final = (b'"code":"overloaded"', b'"code":"shutting_down"')
MAX_CLIENT_CONNECTIONS: Final = 900  # under the server's own connection cap (http.MAX_CONNECTIONS)


async def _open_loop(server: HttpServer, rate: float, duration: float, wait_s: float) -> dict[str, Any]:
    """`rate` calls per second for `duration` seconds, each on an idle keep-alive connection or a
    new one; latency counts from when the call was due, so a slow generator cannot hide a slow
    server."""
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    counts = {"goodput": 0, "refused": 0, "http_503": 0, "errors": 0, "timeouts": 0, "unsent": 0}
    latencies: list[float] = []
    opened = 0
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, due: float) -> None:
        nonlocal opened
        if idle:
            reader, writer = idle.pop()
        elif opened >= MAX_CLIENT_CONNECTIONS:
            counts["unsent"] += 1
            return
        else:
            opened += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            except OSError:
                counts["errors"] += 1
                return
        request = server.requests[index % len(server.requests)]
        try:
            status, body = await asyncio.wait_for(_raw_exchange(reader, writer, request), wait_s)
        except TimeoutError:
            counts["timeouts"] += 1
            writer.close()
            return
        except (OSError, asyncio.IncompleteReadError, ValueError, BadAnswer):
            counts["errors"] += 1
            writer.close()
            return
        idle.append((reader, writer))
        if status == 503:
            counts["http_503"] += 1
        elif status == 200 and b'"isError":true' not in body and b'"result"' in body:
            counts["goodput"] += 1
            latencies.append((loop.time() - due) * 1000)
        elif status == 200 and any(refusal in body for refusal in REFUSALS):
            counts["refused"] += 1
        else:
            counts["errors"] += 1

    cpu_before = cpu_seconds(server.process.pid)
    start = loop.time() + 0.05
    total = max(1, round(rate * duration))
    for index in range(total):
        due = start + index / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    sent_in = loop.time() - start
    await asyncio.gather(*pending)
    cpu = cpu_seconds(server.process.pid) - cpu_before
    for _, writer in idle:
        writer.close()
    stats = summary(latencies)
    return {
        "offered_per_s": rate,
        "sent_per_s": total / max(sent_in, duration),
        "calls": total,
        **counts,
        "goodput_per_s": counts["goodput"] / duration,
        "p50_ms": stats["p50"],
        "p99_ms": stats["p99"],
        "cpu_s": cpu,
        "connections": opened,
    }


def offered(contender: HttpContender, rates: Sequence[float], duration: float, timeout: float, log: Log) -> Any:
    """The offered-load curve of one server: each rate in turn, lowest first."""
    server = HttpServer(contender)
    try:
        server.wait_ready()
        asyncio.run(_load(server, 4, 0.2, 0.3))  # warm: the pool, the first call's imports
        points = []
        for rate in rates:
            points.append(asyncio.run(_open_loop(server, rate, duration, timeout)))
            log(f"  offered load: {rate:.0f} calls/s done")
            time.sleep(0.5)  # let the last timeouts' work finish before the next rate
        return {"label": contender.label, "timeout_s": timeout, "points": points}
    except (RuntimeError, OSError, BadAnswer) as exc:
        return {"label": contender.label, "failed": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        server.close()


def retab_mcp_http(
    argv: list[str],
    base_url: str,
    *,
    key: str = "retab-mcp",
    label: str = "retab-mcp --transport http",
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> HttpContender:
    """retab-mcp over HTTP: `argv` starts it (the console script, or a baseline's `python -c`)."""
    return HttpContender(
        key,
        label,
        [*argv, "--transport", "http", "--host", "127.0.0.1", "--port", "{port}", *extra],
        # No key on the server: each request carries the caller's, as in a shared deployment.
        child_env({"RETAB_API_BASE_URL": base_url, **(env or {})}, drop=("RETAB_API_KEY",)),
        [(tool, arguments) for tool, (arguments, _) in CALLS.items()],
    )


def generated_http(python: str, script: str, base_url: str) -> HttpContender:
    return HttpContender(
        "generated",
        "generated: fastmcp from_openapi, HTTP",
        [python, script, "--http", "{port}"],
        child_env({"RETAB_API_KEY": SANDBOX_KEY, "RETAB_API_BASE_URL": base_url}),
        [(tool, arguments) for tool, (arguments, _) in CALLS.items()],
    )


def floor_http(python: str, script: str) -> HttpContender:
    return HttpContender(
        "floor",
        "floor: bare MCPServer, no-op tool, HTTP",
        [python, script, "--http", "{port}"],
        child_env(),
        [("noop", {})],
    )
