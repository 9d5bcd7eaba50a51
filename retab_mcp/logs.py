"""stderr logging with secrets masked.

stdout is the MCP protocol channel, so every log line goes to stderr, at every level. Keys are
masked in the formatted line itself, whichever library wrote it (httpx, httpcore, the SDK,
uvicorn), by the rule of tool results plus one more, which no caller reads to learn from: a
token holding any 8-character run of a secret is masked too (redaction.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Final

from retab_mcp.redaction import Redactor

# Libraries that write a line for every request at INFO ("HTTP Request: POST ...", "Terminating
# session: None" after each stateless HTTP request): at INFO the log is one line per tool call
# (server.call_log), so theirs show from DEBUG on.
PER_REQUEST_LOGGERS: Final = ("httpx", "mcp.server.streamable_http", "mcp.server.lowlevel.server")


class RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redactor = Redactor(secrets, fragments=True)

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.text(super().format(record))


def configure(level: str, secrets: Iterable[str | None] = ()) -> None:
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
