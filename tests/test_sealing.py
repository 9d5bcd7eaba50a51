"""Sealed tokens (retab_mcp/sealing.py): what one ring seals, it and any ring holding the same
secret open, for the same purpose and until the expiry only; anything else opens as None."""

from __future__ import annotations

import base64

import pytest

from retab_mcp.sealing import MAX_TOKEN_CHARS, KeyRing

OLD = "o" * 31 + "1"
NEW = "n" * 31 + "2"
OTHER = "x" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_opens_for_its_purpose_on_any_ring_with_its_secret() -> None:
    token = KeyRing([OLD]).seal("access", {"key": "rt_test_abc", "scope": ["retab:read"]}, ttl=60)
    payload = KeyRing([NEW, OLD]).unseal("access", token)  # another process, the ring rotated
    assert payload is not None
    assert (payload["key"], payload["scope"]) == ("rt_test_abc", ["retab:read"])
    assert "rt_test_abc" not in token  # sealed, not signed
    assert KeyRing([OLD]).unseal("refresh", token) is None  # another purpose
    assert KeyRing([OTHER]).unseal("access", token) is None  # another ring
    assert KeyRing([NEW]).unseal("access", token) is None  # the old secret dropped


def test_rotation_seals_with_the_first_secret() -> None:
    clock = Clock()
    token = KeyRing([NEW, OLD], clock=clock).seal("code", {"n": 1}, ttl=60)
    assert KeyRing([NEW], clock=clock).unseal("code", token) == {"n": 1, "exp": int(clock.now + 60)}
    assert KeyRing([OLD], clock=clock).unseal("code", token) is None


def test_a_token_expires() -> None:
    clock = Clock()
    ring = KeyRing([OLD], clock=clock)
    token = ring.seal("task", {"run": "edt_1"}, ttl=10)
    clock.now += 9
    assert ring.unseal("task", token) is not None
    clock.now += 1
    assert ring.unseal("task", token) is None


@pytest.mark.parametrize("position", [0, 3, 8, 20, -1])
def test_every_tampered_byte_is_refused(position: int) -> None:
    ring = KeyRing([OLD])
    token = ring.seal("access", {"k": "v"}, ttl=60)
    raw = bytearray(base64.urlsafe_b64decode(token[3:] + "=" * (-len(token) % 4)))
    raw[position] ^= 1
    assert ring.unseal("access", "v1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()) is None


@pytest.mark.parametrize(
    "token", ["", "v1.", "v1.!!!!", "v2.AAAA", "v1." + "A" * MAX_TOKEN_CHARS, "v1.AAAAAAAAAAAAAAAAAAAAAAAA", None, 7]
)
def test_malformed_tokens_open_as_none(token: object) -> None:
    assert KeyRing([OLD]).unseal("access", token) is None


def test_short_or_missing_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        KeyRing(["short"])
    with pytest.raises(ValueError, match="at least one"):
        KeyRing([])


def test_an_ephemeral_ring_opens_its_own_tokens_only() -> None:
    ring = KeyRing.ephemeral()
    token = ring.seal("task", {"a": 1}, ttl=60)
    assert ring.unseal("task", token) is not None
    assert KeyRing.ephemeral().unseal("task", token) is None
