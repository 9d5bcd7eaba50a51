"""The sandbox's HTTP face: every endpoint of the run table (retab_mcp/endpoints.py), each kind's
cancel, read and list, on the table's own paths and in the real wire format, plus `/_sandbox/...`
routes that tests use to program faults and read the request log.

Query parameters are validated as the API's FastAPI does, answering 422 with its list-shaped
`detail`, so a client that sends a bad one finds out here rather than in production.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any, Final, Literal

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from retab_mcp.endpoints import ENDPOINTS
from retab_mcp.sandbox.state import (
    FORBIDDEN_API_KEY,
    STATUSES,
    Fault,
    Kind,
    RecordedRequest,
    Sandbox,
    fingerprint,
)

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
                    query=request.url.query,
                )
            )
            # Matched against the path and query, so a fault can target only the status polls.
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            generation = sandbox.generation
            fault = sandbox.take_fault(target)
            if fault is not None:
                await anyio.sleep(fault.delay)
                if fault.status is not None:
                    return _fault_response(fault, respond)
                if sandbox.generation != generation:
                    # Reset while this request was delayed: it acts on nothing.
                    return respond({"detail": "The sandbox was reset while this request was delayed."}, 503)
            if key is None:
                return respond({"detail": "Not authenticated"}, 401)
            if not key.startswith("rt_test_"):
                return respond({"detail": "Invalid API key"}, 401)
            if key == FORBIDDEN_API_KEY:
                return respond({"detail": "This API key may not access this resource."}, 403)
            run_id = request.path_params.get("run_id", "")
            query = Query(request)
            if action == "list":
                page = query.list_page()
                if query.errors:
                    return respond({"detail": query.errors}, 422)
                return respond(sandbox.list_runs(kind, **page))
            if action == "cancel":
                body = sandbox.cancel(kind, run_id)
            else:
                include_output = query.boolean("include_output", default=True)
                if query.errors:
                    return respond({"detail": query.errors}, 422)
                body = sandbox.read(kind, run_id, include_output=include_output)
            if body is None:
                return respond(
                    {
                        "detail": {
                            "code": "HTTP_EXCEPTION",
                            "message": "An HTTP exception occurred.",
                            "details": {"error": f"{kind.replace('_', ' ')} not found: {run_id}"},
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
            *(
                Route(
                    endpoint.path.replace("{id}", "{run_id}"),
                    api(endpoint.kind.key, endpoint.action),
                    methods=[endpoint.method],
                )
                for endpoint in ENDPOINTS
            ),
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


_ORDERS: Final = ("asc", "desc")
# What pydantic accepts as an int from a string: ASCII digits, a sign, blanks around, a zero fraction.
_INT: Final = re.compile(r"\s*([+-]?[0-9]+)(?:\.0*)?\s*")
_TRUE: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE: Final = frozenset({"0", "off", "f", "false", "n", "no"})


class Query:
    """A request's query parameters, read as FastAPI reads them: each problem is collected as an
    item of the 422 body's `detail` list, so all of them are reported at once.

    An empty value (`status=`) counts as absent: the docs' own list URL sends them so.
    """

    def __init__(self, request: Request) -> None:
        self._params = request.query_params
        self.errors: list[dict[str, Any]] = []

    def _raw(self, name: str) -> str | None:
        value = self._params.get(name)
        return value if value else None

    def _fail(self, name: str, kind: str, msg: str, value: str, ctx: dict[str, Any] | None = None) -> None:
        error: dict[str, Any] = {"type": kind, "loc": ["query", name], "msg": msg, "input": value}
        if ctx is not None:
            error["ctx"] = ctx
        self.errors.append(error)

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        self._fail(name, "bool_parsing", "Input should be a valid boolean, unable to interpret input", value)
        return default

    def integer(self, name: str, *, default: int, ge: int, le: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        match = _INT.fullmatch(value)
        if match is None:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            self._fail(name, "int_parsing", msg, value)
            return default
        number = int(match.group(1))
        if number < ge:
            self._fail(name, "greater_than_equal", f"Input should be greater than or equal to {ge}", value, {"ge": ge})
        elif number > le:
            self._fail(name, "less_than_equal", f"Input should be less than or equal to {le}", value, {"le": le})
        return number

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self._raw(name)
        if value is None or value in choices:
            return value
        quoted = [f"'{choice}'" for choice in choices]
        expected = ", ".join(quoted[:-1]) + " or " + quoted[-1]
        self._fail(name, "literal_error", f"Input should be {expected}", value, {"expected": expected})
        return None

    def list_page(self) -> dict[str, Any]:
        """`GET /v1/edits`'s parameters, as `Sandbox.list_runs` takes them."""
        limit = self.integer("limit", default=10, ge=1, le=100)
        order: Literal["asc", "desc"] = "asc" if self.choice("order", _ORDERS) == "asc" else "desc"
        return {
            "limit": limit,
            "order": order,
            "status": self.choice("status", STATUSES),
            "filename": self._raw("filename"),
            "template_id": self._raw("template_id"),
            "after": self._raw("after"),
            "before": self._raw("before"),
        }
