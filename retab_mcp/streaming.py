"""Stateless HTTP answers: plain JSON, or a short SSE stream when the call asked for progress.

A tool call that waits for its run reports progress (`notifications/progress`) only if its
request carried a `progressToken`, and a JSON answer has nowhere to put it. So over stateless
HTTP the answer is chosen per request, by the front (http.py) that has already read the body:
- SSE allowed for a request that carries a `progressToken` from a client that accepts
  `text/event-stream`: the progress streams, then the result, in both protocol eras;
- JSON for everything else, as before: in the 2025-11-25 era the SDK's transport answers every
  POST as SSE once JSON answers are off, and in the 2026-07-28 era it turns to SSE after 15 s
  even with nothing to report, and refuses (406) a client that accepts JSON only;
- JSON always with `--json-response` (`RETAB_MCP_JSON_RESPONSE`), for proxies that buffer SSE.

The SDK reads its session manager's `json_response` once per request, in the request's own task,
to build that request's transport; `_sdk.answer_per_request` makes that attribute read this
request's choice (`json_answers`, a context variable) instead of one process-wide value. The SDK
has no public per-request switch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# This request's choice: True for a JSON answer, False to allow SSE; None: the manager's own.
JSON_ANSWER: ContextVar[bool | None] = ContextVar("retab_mcp_json_answer", default=None)


@contextmanager
def json_answers(json_answer: bool) -> Iterator[None]:
    """Within this block, the SDK answers the request being served as JSON (True) or may stream (False)."""
    token = JSON_ANSWER.set(json_answer)
    try:
        yield
    finally:
        JSON_ANSWER.reset(token)


def decoded(body: bytes) -> dict[str, Any] | None:
    """The JSON-RPC message of a request body, if it is one object; None for anything else."""
    try:
        # Decoded first, as the SDK reads it: a BOM or bytes that are not UTF-8 are not a message.
        message = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: nesting ~1,000 deep
        return None
    return message if isinstance(message, dict) else None


def may_stream(message: Mapping[str, Any] | None, accept: str) -> bool:
    """Whether this request's answer may be an SSE stream: it asks for progress, and its client
    accepts a stream."""
    params = message.get("params") if message else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    asks = isinstance(token, str | int) and not isinstance(token, bool)
    return asks and "text/event-stream" in accept.lower()
