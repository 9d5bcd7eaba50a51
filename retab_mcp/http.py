"""Streamable HTTP: one deployment serving many agents, behind a load balancer.

Decisions, and why:
- Stateless by default: no session lives in a replica, so any replica answers any request
  and the deployment scales out without sticky sessions. Answers are JSON, except a call that
  asks for progress, answered with a short SSE stream (streaming.py); `--json-response` forces
  JSON. `--stateful` restores sessions and SSE streams for clients that want them.
- Whose key: with no `RETAB_API_KEY` on the server, each request brings the caller's Retab key
  (`Authorization: Bearer` or `Api-Key`), used for that request's upstream calls only; the tool
  reads it from that request's own headers, so keys cannot cross between concurrent requests.
  A request without one is served (initialize, tools/list, ping send nothing upstream); its
  tool calls and resource reads answer how to send a key. Not a 401: clients take a 401 with a
  challenge for a cue to start OAuth, and show that failure instead of the server's message.
  With a server key, callers must present `RETAB_MCP_AUTH_TOKEN` instead, and serving beyond
  loopback without one is refused at start-up (config.check_http_exposure): no open relay. A
  token set without a server key guards nothing: start-up says so. With `--auth oauth`, users
  sign in and their tokens carry their key (oauth.py); the front turns a valid token into the
  request's `Api-Key`, so from there on it is served as a caller's key.
- DNS-rebinding protection stays on whatever the host (the SDK turns it off for non-loopback
  hosts unless told otherwise); real hostnames are added with --allowed-hosts/--allowed-origins.
- /healthz and /readyz sit outside the MCP path, without auth, for orchestrator probes, and
  outside the connection limit: a liveness probe must not restart a pod that is only busy.
- SIGTERM drains: no new call is admitted, every call in flight answers within the grace period
  (finished, or `shutting_down` just before it ends), then the process exits 0.
- Bounded for hostile clients: a request's headers and body must arrive within 10 s of the
  connection's opening (or of the previous response), idle keep-alive connections close after
  5 s, and past 1,000 connections or requests at once an MCP request is answered 503 (the
  probes are exempt). The front reads each MCP request's body itself (64 KiB at most), so a
  client that leaves mid-body costs nothing but its socket, and a stateless call whose client
  leaves is cancelled (the SDK does not watch for it there).
- Stateless: `GET` (a client asking for an SSE stream) is answered 405 with `Allow: POST`.
- `--stateful` sessions are capped (`RETAB_MCP_MAX_SESSIONS`) and expire after 10 idle minutes.
  In caller's-key mode they open only for a key Retab accepts (or for no key, all such
  sessions counted as one caller's), one key holds at most a tenth of them, and a session
  answers only the key that opened it (404 to another, as the SDK answers an unknown session:
  a session id found elsewhere discloses nothing). See `_Sessions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import h11
import uvicorn
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from retab_mcp import _sdk
from retab_mcp._version import __version__
from retab_mcp.admission import handing_over
from retab_mcp.config import Settings, display_url
from retab_mcp.endpoints import Endpoint
from retab_mcp.errors import CallFailed
from retab_mcp.keys import bearer_token, caller_key
from retab_mcp.keys import fingerprint as key_fingerprint
from retab_mcp.oauth import OAuth
from retab_mcp.results import failed
from retab_mcp.server import RetabMCPServer, log_call
from retab_mcp.streaming import JSON_ANSWER, decoded, json_answers, may_stream

# A tool call's JSON-RPC body is a few hundred bytes; nothing legitimate comes near this.
MAX_REQUEST_BODY_BYTES: Final = 64 * 1024
HEALTH_PATH: Final = "/healthz"  # the process is alive
READY_PATH: Final = "/readyz"  # the lifespan started: the upstream client is open
LOOPBACK_HOST_PATTERNS: Final = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGIN_PATTERNS: Final = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
PROBE_PATHS: Final = frozenset({HEALTH_PATH, READY_PATH})
# A whole request, headers and body, arrives within this of its start: a legitimate one takes
# milliseconds (its body is at most 64 KiB).
REQUEST_TIMEOUT_SECONDS: Final = 10.0
KEEP_ALIVE_SECONDS: Final = 5
MAX_CONNECTIONS: Final = 1000
SESSION_IDLE_SECONDS: Final = 600.0
KEY_MEMORY_SECONDS: Final = 600.0
# A key Retab refused is refused again without asking, for this long.
REJECTED_KEY_SECONDS: Final = 60.0
# The share of RETAB_MCP_MAX_SESSIONS one caller's key may hold open (at least one session).
SESSION_SHARE: Final = 10


def create_app(server: RetabMCPServer, settings: Settings) -> ASGIApp:
    """The ASGI app: the two probes, and the MCP endpoint behind the key gate."""
    # The public URL's host is, by definition, a name clients reach this server by.
    public_host = [urlsplit(settings.public_url).netloc] if settings.public_url else []
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOST_PATTERNS, *settings.allowed_hosts, *public_host],
        allowed_origins=[*LOOPBACK_ORIGIN_PATTERNS, *settings.allowed_origins],
    )
    app = server.streamable_http_app(
        streamable_http_path=settings.http_path,
        stateless_http=not settings.stateful,
        # Stateless: JSON unless the front allows a stream for the request (streaming.py).
        json_response=settings.json_response or not settings.stateful,
        transport_security=security,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
        max_sessions=settings.max_sessions,
        session_idle_timeout=SESSION_IDLE_SECONDS,
        host=settings.host,
    )
    if not settings.stateful:
        _sdk.answer_per_request(server.session_manager, JSON_ANSWER)
    return Front(app, server, settings)


class Front:
    """In front of the SDK's app: answers the probes, 401 to MCP requests that do not say whose
    Retab key to use, and reads each MCP request's body itself (see the top comment)."""

    def __init__(self, app: ASGIApp, server: RetabMCPServer, settings: Settings) -> None:
        self.app = app
        self.server = server
        self.path = settings.http_path
        self.server_key = settings.uses_server_key
        self.token = settings.auth_token.encode() if settings.auth_token else None
        # Caller's-key mode with sessions: a request that may open one must bring a key Retab accepts.
        self.sessions = _Sessions(server, settings) if settings.stateful and not self.server_key else None
        # Stateless JSON answers are a body this front can write itself: tool calls are admitted
        # here, before the SDK's per-request work (admission.py).
        self.gated = not settings.stateful
        # Stateless answers that may stream: those of calls that ask for progress (streaming.py).
        self.streams = not settings.stateful and not settings.json_response
        # --auth oauth: the sign-in routes, and the token check before anything else (oauth.py).
        self.oauth = OAuth(server, settings) if settings.oauth else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == HEALTH_PATH:
                await JSONResponse({"status": "ok"})(scope, receive, send)
                return
            if path == READY_PATH:
                ready = self.server.state is not None
                answer = JSONResponse({"status": "ready" if ready else "starting"}, status_code=200 if ready else 503)
                await answer(scope, receive, send)
                return
            if path.rstrip("/") == self.path:
                await self._mcp(scope, receive, send)
                return
            if self.oauth is not None and self.oauth.serves(path):
                await self.oauth.app(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.oauth is not None:
            # A valid token becomes the request's Api-Key: from here on, as a caller's key.
            admitted = self.oauth.admit(scope)
            if isinstance(admitted, Response):
                await admitted(scope, receive, send)
                return
            scope = admitted
        headers = Headers(scope=scope)
        refusal = self._refusal(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        key = caller_key(headers) or ""
        if self.sessions is not None:
            # The SDK binds a session to the `user` that opened it, and answers another one 404.
            scope["user"] = self.sessions.owner(key)
        if scope["method"] == "GET" and self.gated:
            # Stateless: there is no SSE stream to offer, and the spec's answer is 405 (the SDK's
            # own waits for the client to go away).
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        messages, body = await _read_body(receive)
        if messages[-1]["type"] != "http.request":
            return  # the client went away, or missed the request deadline: no one to answer
        if self.oauth is not None and body is not None and (step_up := self.oauth.step_up(scope, body)):
            await step_up(scope, receive, send)
            return
        replay = _replaying(messages, receive)
        version = headers.get("mcp-protocol-version")
        legacy = version is None or version in HANDSHAKE_PROTOCOL_VERSIONS  # the SDK's own routing
        if self.sessions is not None and "mcp-session-id" not in headers:
            refusal = await self.sessions.refusal(key, opens=legacy)
            if refusal is not None:
                await refusal(scope, replay, send)
                return
            if legacy:
                await self.sessions.opening(key, self.app, scope, replay, send)
                return
        if not self.gated or body is None:
            await self.app(scope, replay, send)
            return
        message = decoded(body)
        serve = self._admitted(message) if version in HANDSHAKE_PROTOCOL_VERSIONS else self.app
        with json_answers(not (self.streams and may_stream(message, headers.get("accept", "")))):
            if _waits(message):
                await _until_gone(serve, scope, messages, receive, send)
            else:  # one request to Retab at most: not worth a watcher task per call
                await serve(scope, replay, send)

    def _admitted(self, message: dict[str, Any] | None) -> ASGIApp:
        """The SDK's app, holding an admission slot while it serves a stateless tool call; or,
        when there is no slot for it, an answer of this front's (`overloaded`, `shutting_down`)."""

        async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
            state = self.server.state
            call = self._tool_call(message) if state is not None else None
            if call is None or state is None:
                await self.app(scope, receive, send)
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
                await JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": result})(scope, receive, send)
                return
            with state.gate.holding(slot), handing_over(slot):  # to `server.call`: handed_slot()
                await self.app(scope, receive, send)

        return admitted

    def _tool_call(self, message: dict[str, Any] | None) -> tuple[str | int, Endpoint, str] | None:
        """(request id, endpoint, run id) of a JSON-RPC `tools/call` of a served tool, else None:
        then the SDK answers the request, an error included."""
        if message is None or message.get("method") != "tools/call":
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

    def _refusal(self, headers: Headers) -> Response | None:
        if not self.server_key:
            # No 401 for a missing key: clients read one as a cue to start OAuth, and show its
            # failure, never this server's words. Nothing goes upstream without a key, and a tool
            # call or a resource read answers how to send one (server.api_key_for).
            return None
        if self.token is None:  # a server key on loopback only (checked at start-up)
            return None
        presented = bearer_token(headers)
        if presented is None:
            return _unauthorized("missing_token", "Send this server's auth token as `Authorization: Bearer <token>`.")
        if not hmac.compare_digest(presented.encode(), self.token):
            # RFC 6750 section 3.1: an invalid token is a 401 with a challenge. The message says
            # which token, for clients that read a 401 as a cue to start OAuth (README).
            return _unauthorized(
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
    413) or when the client went away (the last message is then `http.disconnect`)."""
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


def _waits(message: dict[str, Any] | None) -> bool:
    """Whether `message` is a tool call that may wait for its run (`wait_seconds` above 0): one
    that goes on polling Retab while its client is gone, unless `_until_gone` stops it."""
    params = message.get("params") if message else None
    arguments = params.get("arguments") if isinstance(params, dict) else None
    wait = arguments.get("wait_seconds") if isinstance(arguments, dict) else None
    return not isinstance(wait, bool) and isinstance(wait, int | float) and wait > 0


async def _until_gone(app: ASGIApp, scope: Scope, messages: list[Message], receive: Receive, send: Send) -> None:
    """`app` serving a request whose body is read (`messages`), cancelled if its client goes away
    before the answer: the SDK's stateless JSON path does not watch, and a call waiting for its
    run would go on polling Retab for no one."""
    pending = list(messages)
    gone = anyio.Event()
    answered = False

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def sending(message: Message) -> None:
        nonlocal answered
        await send(message)
        answered = message["type"] == "http.response.body" and not message.get("more_body", False)

    async def watch(group: anyio.CancelScope) -> None:
        await receive()  # past the body, only `http.disconnect` comes: the client left, or was answered
        gone.set()
        if not answered:
            group.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch, group.cancel_scope)
        await app(scope, replay, sending)
        group.cancel_scope.cancel()  # answered: the watch is over


class _Sessions:
    """Caller's-key mode with sessions: which keys may open one (Retab accepts them), and how many
    each holds, by key fingerprint (never the key).

    - A key is checked with Retab once, then remembered: accepted for 10 minutes, refused for 60 s,
      so that a made-up key costs one upstream request, not one per attempt. Concurrent requests
      with the same unknown key wait for one check. The check takes an admission slot like a
      tool call, so this server cannot be used to relay unbounded credential checks.
    - One key holds at most a tenth of RETAB_MCP_MAX_SESSIONS: one tenant cannot take them all.
    """

    def __init__(self, server: RetabMCPServer, settings: Settings) -> None:
        self._server = server
        self.share = max(1, settings.max_sessions // SESSION_SHARE)
        self._accepted: dict[str, float] = {}
        self._rejected: dict[str, float] = {}
        self._checking: dict[str, anyio.Event] = {}
        self._opening: Counter[str] = Counter()

    def owner(self, key: str) -> AuthenticatedUser:
        fingerprint = key_fingerprint(key)
        return AuthenticatedUser(AccessToken(token=fingerprint, client_id=fingerprint, scopes=[]))

    async def opening(self, key: str, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """`app` serving a request that may open a session, counted as one of the key's until
        its answer starts: by then the SDK has registered the session, or refused it."""
        fingerprint = key_fingerprint(key)
        self._opening[fingerprint] += 1
        counted = True

        def uncount() -> None:
            nonlocal counted
            if counted:
                counted = False
                self._opening[fingerprint] -= 1
                if not self._opening[fingerprint]:
                    del self._opening[fingerprint]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                uncount()
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            uncount()

    def _held(self, fingerprint: str) -> int:
        """Sessions of this key: those open, and those being opened (an upper bound)."""
        # The SDK's record of who opened each open session: it has no public view of it (_sdk.py).
        owners = _sdk.session_owners(self._server.session_manager)
        return self._opening[fingerprint] + sum(1 for owner in owners if owner == fingerprint)

    async def refusal(self, key: str, opens: bool) -> Response | None:
        """Why a request that may open a session (`opens`) or needs none is refused, or None."""
        fingerprint = key_fingerprint(key)
        # No key: nothing to ask Retab; its sessions count as one caller's, and answer every
        # tool call with how to send a key.
        verdict = self._known(fingerprint) if key else True
        if verdict is None:
            checking = self._checking.get(fingerprint)
            if checking is None:
                checking = self._checking[fingerprint] = anyio.Event()
                try:
                    answer = await self._check(key, fingerprint)
                finally:
                    del self._checking[fingerprint]
                    checking.set()
                if answer is not None:
                    return answer
            else:
                await checking.wait()
            verdict = self._known(fingerprint)
        if verdict is None:
            return _unverified()
        if not verdict:
            return _unauthorized("invalid_key", "Retab does not accept this API key: no session was opened.")
        if opens and self._held(fingerprint) >= self.share:
            return _refused(
                429,
                "too_many_sessions",
                f"This key holds {self.share} sessions, the most one key may hold here (a tenth of "
                "RETAB_MCP_MAX_SESSIONS): end one (HTTP DELETE) or let it expire, then try again.",
                {"Retry-After": "60"},
            )
        return None

    def _known(self, fingerprint: str) -> bool | None:
        """True: Retab accepted the key lately; False: it refused it lately; None: not known."""
        now = time.monotonic()
        if self._accepted.get(fingerprint, 0.0) > now:
            return True
        if self._rejected.get(fingerprint, 0.0) > now:
            return False
        return None

    async def _check(self, key: str, fingerprint: str) -> Response | None:
        """Ask Retab about `key` and remember its answer; a response if the check itself failed."""
        state = self._server.state
        if state is None:
            return JSONResponse({"error": "starting", "message": "The server is starting."}, status_code=503)
        accepted = await state.accepts(key)
        if accepted is None:
            return _unverified()
        if not accepted:
            _remember(self._rejected, fingerprint, REJECTED_KEY_SECONDS)
            return None
        _remember(self._accepted, fingerprint, KEY_MEMORY_SECONDS)
        return None


def _remember(memory: dict[str, float], fingerprint: str, seconds: float) -> None:
    now = time.monotonic()
    if len(memory) > 10_000:
        for seen, until in list(memory.items()):
            if until <= now:
                del memory[seen]
    memory[fingerprint] = now + seconds


def _unverified() -> Response:
    return JSONResponse(
        {"error": "unverified_key", "message": "The key could not be checked with Retab; try again."},
        status_code=503,
        headers={"Retry-After": "5"},
    )


class _BoundedProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each whole request, and probes answered
    whatever the load.

    - uvicorn arms no timer on a new connection, its keep-alive timer is reset by every byte, and
      it has no body timeout: a client that sent one byte every few seconds, of its headers or of
      its body, held a connection (and a slot of the server's) for ever. Here a request's headers
      and body must be complete within `request_timeout` of the connection's opening or of the
      end of the previous response; else the connection is closed.
    - uvicorn's `limit_concurrency` answers 503 to every request past it, /healthz included, and
      an orchestrator then restarts a pod that is only busy: the probes are exempt.
    """

    request_timeout = REQUEST_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._request_timer: asyncio.TimerHandle | None = self.loop.call_later(self.request_timeout, self._too_slow)

    @property
    def limit_concurrency(self) -> int | None:
        # Read by uvicorn as it starts a request, once `self.scope` is that request's.
        if self.scope is not None and self.scope["path"] in PROBE_PATHS:
            return None
        return self._limit_concurrency

    @limit_concurrency.setter
    def limit_concurrency(self, value: int | None) -> None:
        self._limit_concurrency = value

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_timer is not None and self.conn.their_state not in _RECEIVING:
            self._request_timer.cancel()  # this request is in, whole
            self._request_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._request_timer is None and not self.transport.is_closing() and self.conn.their_state in _RECEIVING:
            self._request_timer = self.loop.call_later(self.request_timeout, self._too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._request_timer = None
        if self.conn.their_state in _RECEIVING and not self.transport.is_closing():
            self.transport.close()


# The states of a client still sending its request (or about to).
_RECEIVING: Final = (h11.IDLE, h11.SEND_BODY)


class _DrainingServer(uvicorn.Server):
    """uvicorn with the drain this server promises.

    - At shutdown, before uvicorn waits for in-flight requests, the admission gate stops
      admitting and moves every call's hard stop to just before the grace ends: each call
      finishes, or answers `shutting_down`, while uvicorn still waits for it. uvicorn alone
      cancels what is left at the end of the grace, and the client gets a bare 500.
    - uvicorn re-raises a caught SIGTERM after its graceful shutdown, so the process dies of the
      signal (exit 143). Orchestrators ask for a stop with SIGTERM and expect a clean exit.
    """

    def __init__(self, config: uvicorn.Config, server: RetabMCPServer, settings: Settings, announce: bool) -> None:
        super().__init__(config)
        self._mcp = server
        self.settings = settings
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Listening: say where, and whose key it spends, at every log level. A worker of --workers
        # leaves that to the parent, which says it once for all of them.
        if self.started and self.announce:
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
    if settings.stateful:
        mode = "stateful: sessions and SSE streams"
    elif settings.json_response:
        mode = "stateless: JSON responses only"
    else:
        mode = "stateless: JSON responses, SSE for calls that ask for progress"
    retab = display_url(settings.base_url)
    if settings.sandbox:
        key = "the embedded Retab sandbox's (no real key is used)"
    elif settings.oauth:
        key = f"each user's own, signed in with OAuth at {settings.issuer_url}"
        key += f" (or sent as Api-Key); Retab API at {retab}"
    elif not settings.uses_server_key:
        ignored = " (RETAB_MCP_AUTH_TOKEN is set and ignored)" if settings.auth_token else ""
        key = f"each caller's own, sent with every request{ignored}; Retab API at {retab}"
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
        http=_BoundedProtocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
        log_config=None,  # the process's stderr logging, keys masked
        access_log=False,  # one structured line per tool call instead (server.call_log)
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        server_header=False,
    )


def serve(server: RetabMCPServer, settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM; on `sock` when given (a worker of --workers), else on host and port,
    taken first (listen.StartError: a busy port is one line, not uvicorn's traceback)."""
    from retab_mcp import listen

    announce = sock is None
    with sock or listen.reserve(settings.host, settings.port) as listening:
        _DrainingServer(uvicorn_config(server, settings), server, settings, announce).run(sockets=[listening])
