"""Keys out of everything the server writes: log lines, tool results, resource errors.

One rule for every channel. Masked are:
- the secrets this process knows (the server's key, its auth token, the key the caller sent with
  this request), and any run of 8 or more of their characters: an upstream reply that echoes
  part of a key (a `detail` quoting the `Authorization` header, cut short) leaks no fragment;
- anything shaped like a bearer token, an `Api-Key` value or a Retab key (`rt_test_`, `rt_live_`,
  `sk_retab_`), whoever's it is, since over HTTP each caller brings a key this process never saw
  at start-up.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any, Final

_KEY_SHAPES: Final = re.compile(
    r"(?i)(bearer\s+|api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"
    r"|\b(?:rt_(?:test|live)_|sk_retab_)[A-Za-z0-9_-]+"
)
# Each match of _KEY_SHAPES contains one of these (lower-cased): a cheap test before the pattern.
_KEY_SHAPE_MARKERS: Final = ("bearer", "api-key", "rt_test_", "rt_live_", "sk_retab_")
MASK: Final = "[redacted]"
# The shortest run of a secret's characters that counts as a fragment of it.
FRAGMENT_CHARS: Final = 8
_REPEATED_MASKS: Final = re.compile(r"(?:" + re.escape(MASK) + r"){2,}")


class Redactor:
    """Masks a fixed set of secrets, and every key-shaped string, in text and in JSON trees."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._fragments, self._pattern = _fragments(self._secrets)

    def text(self, text: str) -> str:
        if self._pattern is not None and self._holds_fragment(text):
            text = self._mask_fragments(text)
        if _may_hold_key_shape(text):
            text = _KEY_SHAPES.sub(lambda m: (m.group(1) or "") + MASK, text)
        return _REPEATED_MASKS.sub(MASK, text) if MASK in text else text

    def needed(self, text: str) -> bool:
        """Whether `text` holds anything to mask. Cheap, as it runs on every result: substring
        searches first (a regular expression of this shape costs ~0.1 ms on a 2 KB result)."""
        return self._holds_fragment(text) or (_may_hold_key_shape(text) and bool(_KEY_SHAPES.search(text)))

    def _holds_fragment(self, text: str) -> bool:
        return any(fragment in text for fragment in self._fragments)

    def tree(self, value: Any) -> Any:
        """`value` (parsed JSON) with every string, keys included, masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(key)): self.tree(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.tree(item) for item in value]
        return value

    def _mask_fragments(self, text: str) -> str:
        """Each run of a secret's characters that starts with one of its fragments, masked as far
        as it goes on matching the secret (so no tail of it is left behind)."""
        assert self._pattern is not None
        spans: list[tuple[int, int]] = []
        for match in self._pattern.finditer(text):
            start, end = match.span()
            for secret in self._secrets:
                offset = secret.find(match.group())
                while offset != -1:
                    stop = end
                    while (
                        stop < len(text)
                        and offset + stop - start < len(secret)
                        and (text[stop] == secret[offset + stop - start])
                    ):
                        stop += 1
                    end = max(end, stop)
                    offset = secret.find(match.group(), offset + 1)
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
        if not spans:
            return text
        pieces, last = [], 0
        for start, end in spans:
            pieces += [text[last:start], MASK]
            last = end
        pieces.append(text[last:])
        return "".join(pieces)


@functools.lru_cache(maxsize=256)
def _fragments(secrets: tuple[str, ...]) -> tuple[tuple[str, ...], re.Pattern[str] | None]:
    """Every `FRAGMENT_CHARS`-long run of any of `secrets` (the whole of a shorter one), and one
    pattern matching any of them."""
    runs: list[str] = []
    for secret in secrets:
        width = min(FRAGMENT_CHARS, len(secret))
        runs += [secret[i : i + width] for i in range(len(secret) - width + 1)]
    unique = tuple(dict.fromkeys(runs))
    return unique, re.compile("|".join(map(re.escape, unique))) if unique else None


def _may_hold_key_shape(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _KEY_SHAPE_MARKERS)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with `secrets` and key-shaped strings masked."""
    return Redactor(secrets).text(text)
