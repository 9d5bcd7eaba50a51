"""Error codes, and how every failure of a tool call maps to one.

Every failure a tool call can meet becomes one `CallFailed` carrying an `ErrorCode`; the result
layer turns it into the envelope's `error` object. The agent decides from the code (and
`retryable`) what to do next, so each code has one meaning:

| code                   | cause                                      | retryable |
|------------------------|--------------------------------------------|-----------|
| invalid_argument       | the tool's arguments are malformed          | no        |
| configuration_error    | the server is not set up (no API key)       | no        |
| unauthorized           | HTTP 401: key missing, wrong or revoked     | no        |
| forbidden              | HTTP 403: key valid, not permitted          | no        |
| not_found              | HTTP 404: no such run (or route: base URL)  | no        |
| conflict               | HTTP 409: a race; re-read and retry         | yes       |
| invalid_request        | HTTP 400, 422 and other 4xx                 | no        |
| rate_limited           | HTTP 429                                    | yes       |
| upstream_unavailable   | HTTP 5xx                                    | yes       |
| timeout                | the call's time budget ran out              | yes       |
| network_error          | the API could not be reached                | yes       |
| overloaded             | this process has too many calls in flight   | yes       |
| shutting_down          | this process is stopping (SIGTERM)          | yes       |
| invalid_response       | a body that is not the documented JSON      | no        |
| internal_error         | a bug in retab-mcp itself                   | no        |

Messages are written here, by the server; the hint that tells the agent what to do next is
written beside the envelope (hints.py), since it names tools and this module knows none.
Upstream text is untrusted (an HTML error page, a stack trace, or text that tries to instruct
the model): only a parsed FastAPI `detail` is passed on, flattened to one line and bounded in
length; an `x-request-id` only when it is short and plain (`request_id_from`). A caller's run id
is quoted back only when it is one a caller could be shown without a second thought
(`run_subject`): a valid id holding nothing shaped like a key. Everything built here is redacted
before it leaves (redaction.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from retab_mcp.redaction import may_hold_key_shape


class ErrorCode(StrEnum):
    INVALID_ARGUMENT = "invalid_argument"
    CONFIGURATION_ERROR = "configuration_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID_REQUEST = "invalid_request"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    OVERLOADED = "overloaded"
    SHUTTING_DOWN = "shutting_down"
    INVALID_RESPONSE = "invalid_response"
    INTERNAL_ERROR = "internal_error"


RETRYABLE: Final = frozenset(
    {
        ErrorCode.CONFLICT,
        ErrorCode.RATE_LIMITED,
        ErrorCode.UPSTREAM_UNAVAILABLE,
        ErrorCode.TIMEOUT,
        ErrorCode.NETWORK_ERROR,
        ErrorCode.OVERLOADED,
        ErrorCode.SHUTTING_DOWN,
    }
)

# The HTTP statuses the client itself retries (cancel is idempotent, so a repeat is safe).
# 409 is retryable for the agent, after it re-reads the run, but not blindly by the client.
RETRIED_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

MAX_DETAIL_CHARS: Final = 300
# An `x-request-id` is echoed in results for support requests: never at any length or in any form.
REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# A run id that may be quoted back to the caller: the schema's id (client.RUN_ID_PATTERN).
_QUOTABLE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
# An error body is a line or two of JSON; one far larger is not worth parsing for its `detail`.
MAX_ERROR_BODY_BYTES: Final = 64 * 1024


# eq=False: an exception compares by identity (and stays hashable for traceback machinery).
@dataclass(eq=False)
class CallFailed(Exception):
    """A tool call that cannot give the agent a run. Raised by the client and the tool layer."""

    code: ErrorCode
    message: str
    http_status: int | None = None
    request_id: str | None = None
    retry_after_seconds: float | None = None
    # A bounded, one-line rendering of the API's own `detail`, when it sent a parsable one.
    detail: str | None = None
    attempts: int = 0
    # What to do next, where the code's general hint does not fit this failure.
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


def code_for_status(status: int) -> ErrorCode:
    match status:
        case 401:
            return ErrorCode.UNAUTHORIZED
        case 403:
            return ErrorCode.FORBIDDEN
        case 404:
            return ErrorCode.NOT_FOUND
        case 409:
            return ErrorCode.CONFLICT
        case 429:
            return ErrorCode.RATE_LIMITED
        case _ if status >= 500:
            return ErrorCode.UPSTREAM_UNAVAILABLE
        case _ if 400 <= status < 500:
            return ErrorCode.INVALID_REQUEST
        case _:
            return ErrorCode.INVALID_RESPONSE


_STATUS_MESSAGES: Final = {
    ErrorCode.UNAUTHORIZED: "Retab rejected the API key",
    ErrorCode.FORBIDDEN: "The API key is valid but not permitted to {verb} {subject}",
    ErrorCode.NOT_FOUND: "Retab has no {subject}",
    ErrorCode.CONFLICT: "Retab reported a conflict on {subject}",
    ErrorCode.INVALID_REQUEST: "Retab rejected the request to {verb} {subject}",
    ErrorCode.RATE_LIMITED: "Retab is rate-limiting this API key",
    ErrorCode.UPSTREAM_UNAVAILABLE: "The Retab API is failing or unavailable",
    ErrorCode.INVALID_RESPONSE: "The Retab API answered with an unexpected response",
}


def upstream_failure(
    status: int,
    body: bytes | bytearray,
    *,
    verb: str,
    subject: str,
    request_id: str | None,
    retry_after_seconds: float | None,
    base_url: str = "",
) -> CallFailed:
    """The failure for a non-2xx response: a server-written message plus the parsed `detail`.

    `verb` and `subject` say what was asked ("cancel", "edit 'edt_1'"), for the message;
    `base_url` where it was asked (display_url: no credentials), for a 404 that is no answer
    about a run.
    """
    code = code_for_status(status)
    detail = parse_detail(body)
    if code is ErrorCode.NOT_FOUND and (verb == "list" or detail is None):
        # A list has no id to be wrong, and a 404 that is not Retab's JSON (an HTML page, an empty
        # body) says the route is not there: the base URL.
        return CallFailed(
            code,
            f"{base_url or 'The Retab API'} has no such endpoint (HTTP 404 to the request to {verb} {subject}): "
            "this is not the Retab API, or not at this path.",
            http_status=status,
            request_id=request_id,
            hint="Tell the user RETAB_API_BASE_URL may be wrong (unset, it is https://api.retab.com; a trailing /v1 "
            "is ignored): the id was not checked. Retrying will not help.",
        )
    message = _STATUS_MESSAGES[code].format(verb=verb, subject=subject) + f" (HTTP {status})."
    if detail:
        message += f" Retab said: {detail}"
    hint = None
    if code is ErrorCode.NOT_FOUND and detail in _ROUTE_NOT_FOUND:
        # A framework's words for a route it does not have, which Retab's "Not found" for a run
        # resembles: the id, or the base URL.
        hint = (
            "Check the id: it must be the exact id Retab returned when the run was created. If ids Retab "
            "returned get this too, tell the user RETAB_API_BASE_URL may be wrong. Retrying will not help."
        )
    return CallFailed(
        code,
        message,
        http_status=status,
        request_id=request_id,
        retry_after_seconds=retry_after_seconds,
        detail=detail,
        hint=hint,
    )


# What web frameworks answer for a route they do not have (Starlette, FastAPI): not Retab's words.
_ROUTE_NOT_FOUND: Final = frozenset({"Not Found", "404 Not Found", "404 page not found"})


def parse_detail(body: bytes | bytearray) -> str | None:
    """The API's FastAPI-style `detail`, in any of its three shapes, as one bounded line.

    Anything that is not such JSON (an HTML page from a proxy, a stack trace) gives None, so it
    never reaches the agent; so does a body too large to be an error message, unparsed.
    """
    if len(body) > MAX_ERROR_BODY_BYTES:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or "detail" not in payload:
        return None
    detail = payload["detail"]
    if isinstance(detail, str):
        text = detail
    elif isinstance(detail, dict):
        # {"code", "message", "details": {"error": ...}}: the inner error is the useful part.
        inner = detail.get("details")
        inner_error = inner.get("error") if isinstance(inner, dict) else None
        text = str(inner_error or detail.get("message") or "")
    elif isinstance(detail, list):
        # 422: [{"loc": [...], "msg": ...}, ...]
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(part) for part in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        text = "; ".join(parts)
    else:
        return None
    return bounded_line(text) or None


def request_id_from(value: str | None) -> str | None:
    """An upstream `x-request-id` fit to echo (128 plain characters at most), else None."""
    return value if value is not None and REQUEST_ID.fullmatch(value) else None


def run_subject(noun: str, run_id: object) -> str:
    """How a message names the run a caller asked for: "edit 'edt_1'", or "edit with the id you
    sent" when that id is malformed or holds anything shaped like a key. The rule depends on the
    id alone, never on a secret, so what comes back says nothing about the key."""
    return f"{noun} {run_id!r}" if quotable_id(run_id) else f"{noun} with the id you sent"


def quotable_id(run_id: object) -> bool:
    """Whether a run id a caller sent may be written back (in a message or a log line): a valid
    id with nothing shaped like a key in it."""
    return isinstance(run_id, str) and bool(_QUOTABLE_ID.fullmatch(run_id)) and not may_hold_key_shape(run_id)


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]+")


def bounded_line(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
