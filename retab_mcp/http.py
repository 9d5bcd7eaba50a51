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
"""

from __future__ import annotations

import contextlib
import hmac
import json
import signal
import socket
from collections.abc import Iterator
from typing import Final

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from retab_mcp.config import Settings
from retab_mcp.server import RetabMCPServer, bearer_token, caller_key

# A tool call's JSON-RPC body is a few hundred bytes; nothing legitimate comes near this.
MAX_REQUEST_BODY_BYTES: Final = 64 * 1024
HEALTH_PATH: Final = "/healthz"  # the process is alive
READY_PATH: Final = "/readyz"  # the lifespan started: the upstream client is open
LOOPBACK_HOST_PATTERNS: Final = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGIN_PATTERNS: Final = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


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
                response = self._refusal(Headers(scope=scope))
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
            return _unauthorized("invalid_token", "The auth token is not valid for this server.")
        return None


def _unauthorized(error: str, message: str) -> Response:
    return Response(
        json.dumps({"error": error, "message": message}),
        status_code=401,
        media_type="application/json",
        headers={"WWW-Authenticate": f'Bearer realm="retab-mcp", error="{error}"'},
    )


class _DrainingServer(uvicorn.Server):
    """uvicorn with the drain this server promises.

    - At shutdown, before uvicorn waits for in-flight requests, the admission gate stops
      admitting and moves every call's hard stop to just before the grace ends: each call
      finishes, or answers `shutting_down`, while uvicorn still waits for it. uvicorn alone
      cancels what is left at the end of the grace, and the client gets a bare 500.
    - uvicorn re-raises a caught SIGTERM after its graceful shutdown, so the process dies of the
      signal (exit 143). Orchestrators ask for a stop with SIGTERM and expect a clean exit.
    """

    def __init__(self, config: uvicorn.Config, server: RetabMCPServer) -> None:
        super().__init__(config)
        self._mcp = server

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


def serve(server: RetabMCPServer, settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(server, settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # the process's stderr logging, keys masked
        access_log=False,  # one structured line per tool call instead (server.call_log)
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        server_header=False,
    )
    _DrainingServer(config, server).run()
