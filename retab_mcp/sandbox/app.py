"""The sandbox's HTTP face: Retab's two cancel endpoints and their reads, in the real wire format,
plus `/_sandbox/...` routes that tests use to program faults and read the request log."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from retab_mcp.sandbox.state import FORBIDDEN_API_KEY, Fault, Kind, RecordedRequest, Sandbox, fingerprint

_REASONS = {
    400: "Bad Request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def create_app(sandbox: Sandbox) -> Starlette:
    request_ids = itertools.count(1)

    def respond(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        headers = {"x-request-id": f"req_sbx_{next(request_ids):06d}", **(headers or {})}
        return JSONResponse(content, status_code=status, headers=headers)

    def api(kind: Kind, action: str):  # type: ignore[no-untyped-def]
        async def endpoint(request: Request) -> Response:
            key, scheme = _api_key(request)
            sandbox.record(
                RecordedRequest(
                    method=request.method,
                    path=request.url.path,
                    auth_scheme=scheme,
                    key_fingerprint=fingerprint(key) if key else None,
                    user_agent=request.headers.get("user-agent"),
                )
            )
            fault = sandbox.take_fault(request.url.path)
            if fault is not None:
                await anyio.sleep(fault.delay)
                if fault.status is not None:
                    return _fault_response(fault, respond)
            if key is None:
                return respond({"detail": "Not authenticated"}, 401)
            if not key.startswith("rt_test_"):
                return respond({"detail": "Invalid API key"}, 401)
            if key == FORBIDDEN_API_KEY:
                return respond({"detail": "This API key may not access this resource."}, 403)
            run_id = request.path_params.get("run_id", "")
            if action == "list":
                limit = int(request.query_params.get("limit", "10") or 10)
                return respond({"data": sandbox.list_runs(kind, limit), "list_metadata": {}})
            if action == "cancel":
                body = sandbox.cancel(kind, run_id)
            else:
                include_output = request.query_params.get("include_output", "true").lower() != "false"
                body = sandbox.read(kind, run_id, include_output=include_output)
            if body is None:
                return respond(
                    {
                        "detail": {
                            "code": "HTTP_EXCEPTION",
                            "message": "An HTTP exception occurred.",
                            "details": {"error": f"{kind} not found: {run_id}"},
                        }
                    },
                    404,
                )
            return respond(body)

        return endpoint

    async def add_fault(request: Request) -> Response:
        fields = {f.name for f in dataclasses.fields(Fault)}
        payload = await request.json()
        sandbox.add_fault(Fault(**{k: v for k, v in payload.items() if k in fields}))
        return JSONResponse({"ok": True})

    async def requests(request: Request) -> Response:
        return JSONResponse([dataclasses.asdict(r) for r in sandbox.recorded()])

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return JSONResponse({"ok": True})

    async def advance(request: Request) -> Response:
        sandbox.advance(float((await request.json())["seconds"]))
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/files/blueprints/{run_id}/cancel", api("blueprint", "cancel"), methods=["POST"]),
            Route("/v1/files/blueprints/{run_id}", api("blueprint", "read"), methods=["GET"]),
            Route("/v1/edits/{run_id}/cancel", api("edit", "cancel"), methods=["POST"]),
            Route("/v1/edits/{run_id}", api("edit", "read"), methods=["GET"]),
            Route("/v1/edits", api("edit", "list"), methods=["GET"]),
            Route("/_sandbox/faults", add_fault, methods=["POST"]),
            Route("/_sandbox/requests", requests, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/advance", advance, methods=["POST"]),
        ]
    )


def _api_key(request: Request) -> tuple[str | None, str | None]:
    """The key from `Authorization: Bearer` (current SDKs) or `Api-Key` (older SDKs, cURL docs)."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "bearer"
    api_key = request.headers.get("api-key", "").strip()
    if api_key:
        return api_key, "api-key"
    return None, None


def _fault_response(fault: Fault, respond: Any) -> Response:
    status = fault.status or 500
    if fault.body is None:
        response: Response = respond({"detail": _REASONS.get(status, "Error")}, status, fault.headers)
        return response
    headers = {"x-request-id": "req_sbx_fault", **fault.headers}
    return Response(fault.body, status_code=status, headers=headers, media_type=fault.content_type)
