"""Streamable HTTP: one deployment serving many agents, behind a load balancer.

Decisions, and why:
- Stateless JSON by default: no session lives in a replica, so any replica answers any request
  and the deployment scales out without sticky sessions. `--stateful` restores sessions and SSE
  streams for clients that want them.
- Whose key: with no `RETAB_API_KEY` on the server, each request brings the caller's Retab key
  (`Authorization: Bearer` or `Api-Key`), used for that request's upstream calls only; the tool
  reads it from that request's own headers, so keys cannot cross between concurrent requests.
  With a server key, callers must present `RETAB_MCP_AUTH_TOKEN` instead, and serving beyond
  loopback without one is refused at start-up (config.check_http_exposure): no open relay.
- DNS-rebinding protection stays on whatever the host (the SDK turns it off for non-loopback
  hosts unless told otherwise); real hostnames are added with --allowed-hosts/--allowed-origins.
- /healthz and /readyz sit outside the MCP path, without auth, for orchestrator probes.
- SIGTERM drains: no new call is admitted, every call in flight answers within the grace period
  (finished, or `shutting_down` just before it ends), then the process exits 0.
- Bounded for hostile clients: a request's headers must arrive within 10 s of its first byte
  (or of the connection's opening), idle keep-alive connections close after 5 s, and at most
  1,000 connections are served at once. `--stateful` sessions are capped
  (`RETAB_MCP_MAX_SESSIONS`), expire after 10 idle minutes, and in caller's-key mode open only
  for a key Retab accepts (checked once, then remembered for 10 minutes): a made-up bearer
  string opens none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import signal
import socket
import sys
import time
from collections.abc import Iterator
from typing import Final

import anyio
import h11
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from retab_mcp import __version__
from retab_mcp.config import Settings, display_url
from retab_mcp.endpoints import Endpoint
from retab_mcp.errors import CallFailed, ErrorCode
from retab_mcp.results import failed
from retab_mcp.server import RetabMCPServer, bearer_token, caller_key, log_call

# A tool call's JSON-RPC body is a few hundred bytes; nothing legitimate comes near this.
MAX_REQUEST_BODY_BYTES: Final = 64 * 1024
HEALTH_PATH: Final = "/healthz"  # the process is alive
READY_PATH: Final = "/readyz"  # the lifespan started: the upstream client is open
LOOPBACK_HOST_PATTERNS: Final = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGIN_PATTERNS: Final = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
HEADER_TIMEOUT_SECONDS: Final = 10.0
KEEP_ALIVE_SECONDS: Final = 5
MAX_CONNECTIONS: Final = 1000
SESSION_IDLE_SECONDS: Final = 600.0
KEY_MEMORY_SECONDS: Final = 600.0


def create_app(server: RetabMCPServer, settings: Settings) -> ASGIApp:
    """The ASGI app: the two probes, and the MCP endpoint behind the key gate."""
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOST_PATTERNS, *settings.allowed_hosts],
        allowed_origins=[*LOOPBACK_ORIGIN_PATTERNS, *settings.allowed_origins],
    )
    app = server.streamable_http_app(
        streamable_http_path=settings.http_path,
        stateless_http=not settings.stateful,
        json_response=not settings.stateful,
        transport_security=security,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
        max_sessions=settings.max_sessions,
        session_idle_timeout=SESSION_IDLE_SECONDS,
        host=settings.host,
    )
    return Front(app, server, settings)


class Front:
    """In front of the SDK's app: answers the probes, and 401 to MCP requests that do not say
    whose Retab key to use (see the top comment)."""

    def __init__(self, app: ASGIApp, server: RetabMCPServer, settings: Settings) -> None:
        self.app = app
        self.server = server
        self.path = settings.http_path
        self.server_key = settings.uses_server_key
        self.token = settings.auth_token.encode() if settings.auth_token else None
        # Caller's-key mode with sessions: a request that may open one must bring a key Retab accepts.
        self.session_keys = _AcceptedKeys(server) if settings.stateful and not self.server_key else None
        # Stateless JSON answers are a body this front can write itself: tool calls are admitted
        # here, before the SDK's per-request work (admission.py).
        self.gated = not settings.stateful

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A stateless request passed to the SDK holding an admission slot if it is a tool call,
        or answered here at once (`overloaded`, `shutting_down`) when there is no slot for it."""
        messages, body = await _read_body(receive)
        replay = _replaying(messages, receive)
        state = self.server.state
        call = self._tool_call(body) if body is not None and state is not None else None
        if call is None or state is None:
            await self.app(scope, replay, send)
            return
        request_id, endpoint, run_id = call
        started = time.perf_counter()
        try:
            slot = await state.gate.admit(anyio.current_time())
        except CallFailed as failure:
            answer = failed(endpoint, run_id, failure)
            log_call(endpoint, run_id or None, answer, None, started)
            result = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
            result.pop("resultType", None)  # 2026-07-28 vocabulary; these answers are to older clients
            await JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": result})(scope, replay, send)
            return
        with state.gate.holding(slot):
            await self.app(scope, replay, send)

    def _tool_call(self, body: bytes) -> tuple[str | int, Endpoint, str] | None:
        """(request id, endpoint, run id) of a JSON-RPC `tools/call` of a served tool, else None."""
        try:
            message = json.loads(body)
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return None
        request_id, params = message.get("id"), message.get("params")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool) or not isinstance(params, dict):
            return None
        endpoint = self.server.served(params.get("name"))
        if endpoint is None:
            return None
        arguments = params.get("arguments")
        run_id = arguments.get(endpoint.kind.id_arg) if isinstance(arguments, dict) else None
        return request_id, endpoint, run_id if isinstance(run_id, str) else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            response: Response | None = None
            if path == HEALTH_PATH:
                response = JSONResponse({"status": "ok"})
            elif path == READY_PATH:
                ready = self.server.state is not None
                response = JSONResponse({"status": "ready" if ready else "starting"}, status_code=200 if ready else 503)
            elif path.rstrip("/") == self.path:
                headers = Headers(scope=scope)
                response = self._refusal(headers)
                opens_session = scope["method"] == "POST" and "mcp-session-id" not in headers
                if response is None and self.session_keys is not None and opens_session:
                    response = await self.session_keys.refusal(caller_key(headers) or "")
                legacy = headers.get("mcp-protocol-version") in HANDSHAKE_PROTOCOL_VERSIONS
                if response is None and self.gated and scope["method"] == "POST" and legacy:
                    await self._admitted(scope, receive, send)
                    return
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers) -> Response | None:
        if not self.server_key:
            if caller_key(headers) is not None:
                return None
            return _unauthorized(
                "missing_key",
                "Send your Retab API key with every request, as `Authorization: Bearer <key>` or `Api-Key: <key>`.",
            )
        if self.token is None:  # a server key on loopback only (checked at start-up)
            return None
        presented = bearer_token(headers)
        if presented is None:
            return _unauthorized("missing_token", "Send this server's auth token as `Authorization: Bearer <token>`.")
        if not hmac.compare_digest(presented.encode(), self.token):
            # 403 without a challenge: MCP clients answer a 401 by starting OAuth, which this server
            # does not offer, so the user would read about OAuth instead of a wrong token.
            return _refused(
                403,
                "invalid_token",
                "The auth token is not valid for this server: send the value of its RETAB_MCP_AUTH_TOKEN.",
            )
        return None


def _unauthorized(error: str, message: str) -> Response:
    return _refused(401, error, message, {"WWW-Authenticate": f'Bearer realm="retab-mcp", error="{error}"'})


def _refused(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": error, "message": message})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The request's messages as read, and its body; None past the size limit (the SDK answers
    413) or when the client went away."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BODY_BYTES:
            return messages, None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return messages, b"".join(chunks)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that gives `messages` again first."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


class _AcceptedKeys:
    """The caller keys Retab accepted lately, by fingerprint: who may open a stateful session."""

    def __init__(self, server: RetabMCPServer) -> None:
        self._server = server
        self._accepted: dict[str, float] = {}

    async def refusal(self, key: str) -> Response | None:
        fingerprint = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        now = time.monotonic()
        if self._accepted.get(fingerprint, 0.0) > now:
            return None
        state = self._server.state
        if state is None:
            return JSONResponse({"error": "starting", "message": "The server is starting."}, status_code=503)
        try:
            # The cheapest authenticated read there is: one edit, status only.
            await state.client.request(
                "GET", "/v1/edits", params={"limit": "1"}, api_key=key, verb="list", subject="edits",
                deadline=state.client.clock() + min(5.0, state.settings.call_timeout),
            )  # fmt: skip
        except CallFailed as failure:
            if failure.code in (ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN):
                return _unauthorized("invalid_key", "Retab does not accept this API key: no session was opened.")
            return JSONResponse(
                {"error": "unverified_key", "message": "The key could not be checked with Retab; try again."},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if len(self._accepted) > 10_000:
            self._accepted = {seen: until for seen, until in self._accepted.items() if until > now}
        self._accepted[fingerprint] = now + KEY_MEMORY_SECONDS
        return None


class _HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers.

    uvicorn arms no timer on a new connection, and its keep-alive timer is reset by every byte:
    a client that sends one header byte every few seconds held a connection (and a slot of the
    server's) for ever. Here a request's headers must be complete within `header_timeout` of the
    connection's opening or of the end of the previous response."""

    header_timeout = HEADER_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            self._header_timer.cancel()  # this request's headers are in
            self._header_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class _DrainingServer(uvicorn.Server):
    """uvicorn with the drain this server promises.

    - At shutdown, before uvicorn waits for in-flight requests, the admission gate stops
      admitting and moves every call's hard stop to just before the grace ends: each call
      finishes, or answers `shutting_down`, while uvicorn still waits for it. uvicorn alone
      cancels what is left at the end of the grace, and the client gets a bare 500.
    - uvicorn re-raises a caught SIGTERM after its graceful shutdown, so the process dies of the
      signal (exit 143). Orchestrators ask for a stop with SIGTERM and expect a clean exit.
    """

    def __init__(self, config: uvicorn.Config, server: RetabMCPServer, settings: Settings) -> None:
        super().__init__(config)
        self._mcp = server
        self.settings = settings

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Listening: say where, and whose key it spends, at every log level. A worker of --workers
        # (given its socket) leaves that to the parent, which says it once for all of them.
        if self.started and sockets is None:
            ports = [s.getsockname()[1] for server in self.servers for s in server.sockets]
            print(start_line(self.settings, ports[0] if ports else self.settings.port), file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._mcp.state is not None:
            self._mcp.state.gate.drain(self.config.timeout_graceful_shutdown or 0)
        await super().shutdown(sockets)


def start_line(settings: Settings, port: int) -> str:
    """What an operator needs to know once the server listens: where, which mode, whose key."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    mode = "stateful: sessions and SSE streams" if settings.stateful else "stateless: JSON responses"
    retab = display_url(settings.base_url)
    if settings.sandbox:
        key = "the embedded Retab sandbox's (no real key is used)"
    elif not settings.uses_server_key:
        key = f"each caller's own, sent with every request; Retab API at {retab}"
    elif settings.auth_token:
        key = f"the server's, for callers presenting RETAB_MCP_AUTH_TOKEN; Retab API at {retab}"
    else:
        key = f"the server's, for any caller on this machine (no RETAB_MCP_AUTH_TOKEN); Retab API at {retab}"
    return f"retab-mcp {__version__}: MCP at http://{host}:{port}{settings.http_path} ({mode}). Retab key: {key}."


def uvicorn_config(server: RetabMCPServer, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(server, settings),
        host=settings.host,
        port=settings.port,
        http=_HeaderTimeoutProtocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
        log_config=None,  # the process's stderr logging, keys masked
        access_log=False,  # one structured line per tool call instead (server.call_log)
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        server_header=False,
    )


def serve(server: RetabMCPServer, settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM; on `sock` when given (a worker of --workers), else on host and port."""
    _DrainingServer(uvicorn_config(server, settings), server, settings).run(sockets=[sock] if sock else None)
