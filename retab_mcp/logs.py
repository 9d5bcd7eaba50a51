"""stderr logging with secrets masked.

stdout is the MCP protocol channel, so every log line goes to stderr, at every level. Keys are
masked in the formatted line itself, whichever library wrote it (httpx, httpcore, the SDK,
uvicorn): the configured key, and anything shaped like a bearer token or a Retab key, since
over HTTP each caller brings a key this process never saw at start-up.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Final

_KEY_SHAPES: Final = re.compile(
    r"(?i)(bearer\s+|api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"
    r"|\b(?:rt_(?:test|live)_|sk_retab_)[A-Za-z0-9_-]+"
)
MASK: Final = "[redacted]"
# Libraries that write a line for every request at INFO ("HTTP Request: POST ...", "Terminating
# session: None" after each stateless HTTP request): at INFO the log is one line per tool call
# (server.call_log), so theirs show from DEBUG on.
PER_REQUEST_LOGGERS: Final = ("httpx", "mcp.server.streamable_http", "mcp.server.lowlevel.server")


class RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return _KEY_SHAPES.sub(lambda m: (m.group(1) or "") + MASK, text)


def configure(level: str, secrets: Iterable[str] = ()) -> None:
    """Route all logging to stderr through the redacting formatter, replacing other handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = logging.NOTSET if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level))
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
