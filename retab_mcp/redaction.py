"""Keys out of everything the server writes: tool results, resource errors, progress, doctor's
report, log lines.

What is masked, always as the whole token-like run around it (`TOKEN_CHARS`), never a part of one:
- each secret this process knows (the server's key, its auth token, the key the caller sent with
  this request), and exact encodings of each whole secret that an upstream might echo: base64
  (standard and URL-safe, at each of the three byte alignments, so padding and neighbours do not
  matter), hex in either case, percent-encoding, the secret reversed;
- anything shaped like a bearer token, an `Api-Key` value or a Retab key (`rt_test_`, `rt_live_`,
  `sk_retab`), whoever's it is, since over HTTP each caller brings a key this process never saw
  at start-up.

Why whole secrets only, never a run of a secret's characters: text a caller controls (a run id,
an argument name, an upstream echo of either) passes through here and comes back to it. Were
every 8-character run of a secret masked, whether a caller's text came back masked would say
whether that text is part of the key: starting from the public `rt_live_`, one call per
candidate character recovers the key. Matching whole secrets tells a caller only whether it sent
the whole key, which it then already had. A secret shorter than `MIN_SECRET_CHARS` is masked
only where it stands alone, not inside a word, so that ordinary words holding it stay readable.

Logs, which no caller reads, also mask any token holding an 8-character run of a secret
(`fragments=True`): a cut-short echo of a key reaches no log line. Splits of a key into pieces
and other transformations by an upstream are out of scope (SECURITY.md).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import quote

from retab_mcp._json import map_json

MASK: Final = "[redacted]"
# The characters of a token: what a key, its base64, hex or percent-encoding is made of. A mask
# covers the whole run of them around what it hides.
TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/=%-")
MIN_SECRET_CHARS: Final = 8
# What a short secret must not touch on either side to count as standing alone.
_WORD_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# The shortest run of a secret's characters that counts as a fragment of it (logs only).
FRAGMENT_CHARS: Final = 8
# What the config templates hold in place of a key (clients.KEY_PLACEHOLDER): never a secret, and
# masking it would garble doctor's advice about it.
NOT_SECRETS: Final = frozenset({"YOUR_RETAB_API_KEY"})

# A Retab key's public prefixes, matched anywhere in a token, in any case.
KEY_PREFIXES: Final = ("rt_live_", "rt_test_", "sk_retab")
_KEY_SHAPES: Final = re.compile(
    # A value in angle brackets ("Bearer <key>") is a placeholder in the server's own words: no key holds `<`.
    r"(?i)(bearer\s+|api-key[\"']?\s*[:=]\s*[\"']?)(?!<)[^\s\"',;]+"
    # A prefix with a key's character after it: the bare prefix, as in "rt_live_...", is public.
    r"|(?:rt_(?:test|live)|sk_retab)_[A-Za-z0-9_-]"
)
# Each match of _KEY_SHAPES contains one of these (lower-cased): a cheap test before the pattern.
_KEY_SHAPE_MARKERS: Final = ("bearer", "api-key", *KEY_PREFIXES)
_REPEATED_MASKS: Final = re.compile(r"(?:" + re.escape(MASK) + r"){2,}")


class Redactor:
    """Masks a fixed set of secrets, and every key-shaped token, in text and in JSON trees."""

    def __init__(self, secrets: Iterable[str | None] = (), *, fragments: bool = False) -> None:
        known = {s for s in secrets if s and s not in NOT_SECRETS}
        self._needles, self._short = _needles(tuple(sorted(known)))
        self._fragments = _fragments(tuple(sorted(s for s in known if len(s) >= FRAGMENT_CHARS))) if fragments else ()

    def text(self, text: str) -> str:
        spans = self._spans(text)
        if not spans:
            return text
        pieces, last = [], 0
        for start, end in _merged(spans):
            pieces += [text[last:start], MASK]
            last = end
        pieces.append(text[last:])
        return _REPEATED_MASKS.sub(MASK, "".join(pieces))

    def needed(self, text: str) -> bool:
        """Whether `text` may hold anything to mask. Cheap, as it runs on every result: substring
        searches only (a regular expression costs ~0.1 ms on a 2 KB result)."""
        return (
            any(needle in text for needle in self._needles)
            or any(secret in text for secret in self._short)
            or any(fragment in text for fragment in self._fragments)
            or may_hold_key_shape(text)
        )

    def tree(self, value: Any) -> Any:
        """`value` (parsed JSON) with every string, keys included, masked."""
        return map_json(value, self._leaf, self._key)

    def _leaf(self, value: Any, _key: object, _parent: object) -> Any:
        return self.text(value) if isinstance(value, str) else value

    def _key(self, key: str) -> str:
        return self.text(str(key))

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Where to mask: the whole token around each hit."""
        spans: list[tuple[int, int]] = []
        for needle in (*self._needles, *self._fragments):
            at = text.find(needle)
            while at != -1:
                spans.append(_token_around(text, at, at + len(needle)))
                at = text.find(needle, at + 1)
        for secret in self._short:
            at = text.find(secret)
            while at != -1:
                end = at + len(secret)
                if (at == 0 or text[at - 1] not in _WORD_CHARS) and (end == len(text) or text[end] not in _WORD_CHARS):
                    spans.append((at, end))
                at = text.find(secret, at + 1)
        if may_hold_key_shape(text):
            for match in _KEY_SHAPES.finditer(text):
                start, end = match.span()
                if match.group(1):  # "Bearer <token>": the scheme stays, the token goes
                    start = match.end(1)
                    end = _token_around(text, start, end)[1]
                    spans.append((start, end))
                else:
                    spans.append(_token_around(text, start, end))
        return spans


def _token_around(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and text[start - 1] in TOKEN_CHARS:
        start -= 1
    while end < len(text) and text[end] in TOKEN_CHARS:
        end += 1
    return start, end


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@functools.lru_cache(maxsize=256)
def _needles(secrets: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(each secret of `MIN_SECRET_CHARS` or more with its encodings, the shorter secrets)."""
    needles: list[str] = []
    for secret in secrets:
        if len(secret) >= MIN_SECRET_CHARS:
            needles += encodings(secret)
    short = tuple(secret for secret in secrets if len(secret) < MIN_SECRET_CHARS)
    return tuple(dict.fromkeys(needles)), short


def encodings(secret: str) -> list[str]:
    """`secret` and the exact encodings of the whole of it that an upstream might echo."""
    raw = secret.encode()
    forms = [secret, secret[::-1], raw.hex(), raw.hex().upper(), quote(secret, safe="")]
    forms += ["".join(f"%{byte:02X}" for byte in raw), "".join(f"%{byte:02x}" for byte in raw)]
    for skip in range(3):
        # The whole 3-byte groups from `skip` on: the part of the base64 that does not depend on
        # what comes before or after the secret in the encoded data.
        aligned = raw[skip:][: (len(raw) - skip) // 3 * 3]
        forms += [base64.b64encode(aligned).decode(), base64.urlsafe_b64encode(aligned).decode()]
    return [form for form in forms if len(form) >= MIN_SECRET_CHARS]


@functools.lru_cache(maxsize=256)
def _fragments(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Every `FRAGMENT_CHARS`-long run of any of `secrets`."""
    runs = [secret[i : i + FRAGMENT_CHARS] for secret in secrets for i in range(len(secret) - FRAGMENT_CHARS + 1)]
    return tuple(dict.fromkeys(runs))


def may_hold_key_shape(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _KEY_SHAPE_MARKERS)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with `secrets` and key-shaped tokens masked."""
    return Redactor(secrets).text(text)
