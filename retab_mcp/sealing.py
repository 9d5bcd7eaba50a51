"""Sealed tokens: state a client carries instead of a store the server keeps.

OAuth's client ids, codes and tokens, and MCP task ids, are each a small JSON payload sealed with
AES-256-GCM (`cryptography`'s AEAD) under a key ring, so no database is needed and any replica
that holds the ring can open what another one sealed.

- The ring is `RETAB_MCP_SECRET_KEYS`: one or more secrets of at least `MIN_SECRET_CHARS`
  characters. The first seals; every one opens (rotation: put the new secret first, drop the old
  one once the longest lifetime of what it sealed has passed). Over stdio, where nothing outlives
  the process, an ephemeral ring of random bytes serves.
- Each secret is stretched to its AES key with HKDF-SHA256, and named in a token by 4 bytes of a
  digest of that key, so opening tries one key, not all of them.
- A token is sealed for one purpose (`"access"`, `"code"`, `"task"`, ...), bound as associated
  data: a token sealed for one purpose never opens as another.
- Every payload carries its expiry (`exp`, Unix seconds), checked on opening.
- Opening never raises: a tampered, foreign, expired, oversized or malformed token is None, and
  every one of those looks the same to the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_CHARS: Final = 32
VERSION: Final = "v1"
_INFO: Final = b"retab-mcp sealing v1"
_KEY_ID_BYTES: Final = 4
_NONCE_BYTES: Final = 12
# Far above any payload this server seals (a Retab key, a few ids and names): nothing larger is
# even decoded.
MAX_TOKEN_CHARS: Final = 8192


class KeyRing:
    """Secrets that seal (the first) and open (all) tokens."""

    def __init__(self, secrets: Sequence[str], *, clock: Callable[[], float] = time.time) -> None:
        if not secrets:
            raise ValueError("a key ring needs at least one secret")
        if any(len(secret) < MIN_SECRET_CHARS for secret in secrets):
            raise ValueError(f"every secret must have at least {MIN_SECRET_CHARS} characters")
        self._clock = clock
        keys = [_derive(secret.encode()) for secret in secrets]
        self._sealing_id, self._sealing = _key_id(keys[0]), AESGCM(keys[0])
        self._opening = {_key_id(key): AESGCM(key) for key in reversed(keys)}  # the first wins a clash

    @classmethod
    def ephemeral(cls, *, clock: Callable[[], float] = time.time) -> KeyRing:
        """A ring of one random secret: tokens open only in this process, until it exits."""
        return cls([base64.b64encode(os.urandom(32)).decode()], clock=clock)

    def seal(self, purpose: str, payload: Mapping[str, Any], *, ttl: float) -> str:
        """`payload` (JSON-serialisable) sealed for `purpose`, opening for `ttl` seconds."""
        body = json.dumps({**payload, "exp": int(self._clock() + ttl)}, separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._sealing.encrypt(nonce, body, purpose.encode())
        return f"{VERSION}.{_b64(self._sealing_id + nonce + sealed)}"

    def unseal(self, purpose: str, token: object) -> dict[str, Any] | None:
        """The payload `token` was sealed with for `purpose`, or None whatever is wrong with it."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.startswith(VERSION + "."):
            return None
        try:
            raw = base64.urlsafe_b64decode(token[len(VERSION) + 1 :] + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        head = _KEY_ID_BYTES + _NONCE_BYTES
        key_id, nonce, sealed = raw[:_KEY_ID_BYTES], raw[_KEY_ID_BYTES:head], raw[head:]
        aead = self._opening.get(key_id)
        if aead is None or len(nonce) != _NONCE_BYTES:
            return None
        try:
            payload = json.loads(aead.decrypt(nonce, sealed, purpose.encode()))
        except (InvalidTag, ValueError):
            return None
        if not isinstance(payload, dict) or not isinstance(exp := payload.get("exp"), int) or exp <= self._clock():
            return None
        return payload


def _derive(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"key id " + key).digest()[:_KEY_ID_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
