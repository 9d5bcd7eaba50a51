"""Keys: what a Retab key (or this server's auth token) may look like, where an HTTP caller puts
one, and which key a call uses.

- Shape: an RFC 6750 token of a sane length (`KEY_PATTERN`). Anything else (spaces, control
  characters, non-ASCII) is refused before it reaches a header, where it would be forwarded or
  crash the HTTP client: settings at start-up (config.py), every key where it enters a request
  (`check_sent_key`, called by client.py whoever passed the key).
- Where: `Authorization: Bearer <key>` or `Api-Key: <key>` (`caller_key`).
- Which: the server's RETAB_API_KEY wins; then the caller's Authorization header carries the
  server's auth token, which must never be sent to Retab (`call_key`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Final

from retab_mcp.errors import CallFailed, ErrorCode

KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")
KEY_RULE: Final = "1 to 512 characters from A-Z, a-z, 0-9 and . _ ~ + / = -"


def well_formed(value: str) -> bool:
    """Whether `value` has the shape of a key (`KEY_RULE`)."""
    return KEY_PATTERN.fullmatch(value) is not None


def check_sent_key(api_key: str) -> None:
    """`CallFailed` (unauthorized) for a key that must not reach a header; nothing is sent then."""
    if not well_formed(api_key):
        raise CallFailed(
            ErrorCode.UNAUTHORIZED,
            f"The Retab API key sent with this request is malformed: a key is {KEY_RULE}. Nothing was sent.",
        )


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def caller_key(headers: Mapping[str, str] | None) -> str | None:
    """The Retab key an HTTP caller sent: `Authorization: Bearer <key>` or `Api-Key: <key>`."""
    if not headers:
        return None
    return bearer_token(headers) or headers.get("api-key", "").strip() or None


def call_key(server_key: str | None, headers: Mapping[str, str] | None) -> str | None:
    """The key a call sends to Retab: the server's, else the caller's; None if neither."""
    # A server key wins: then the caller's Authorization header carries the server's auth token,
    # which must never be sent to Retab.
    return server_key or caller_key(headers)


def fingerprint(key: str) -> str:
    """A stable digest that names a key (who holds a session, whose task it is) without it."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
