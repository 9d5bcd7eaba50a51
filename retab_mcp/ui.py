"""The run view: an MCP App (`io.modelcontextprotocol/ui`) that shows a person the runs a tool
answered with, in the hosts that render Apps (Claude, Claude Desktop, VS Code, Cursor, ChatGPT...).

Decisions, and why:
- One `ui://` resource for every tool the server serves: each tool of the run table reads,
  lists or cancels runs, and the view renders any kind's envelope. Which kinds, tools and id
  arguments there are reaches the view as JSON written into the HTML when the server is built,
  from the rows served, so a new kind is still a row. The view never calls a tool the process
  does not serve (no cancel button under `--read-only`).
- The HTML (views/runs.html, package data) is one self-contained page: inline CSS and JS, no
  network, so the hosts' default CSP (no connections) is enough. It talks to the host only by
  postMessage JSON-RPC, and calls tools through the host, so the host's approval of a cancel
  still applies.
- It refreshes a running run with the read tool on the backoff `wait_seconds` uses
  (actions.FIRST_POLL_SECONDS doubling up to actions.POLL_CAP_SECONDS), and stops when every run
  shown has stopped, when the host tears the view down, or after MAX_VIEW_READS reads.
- Results are not changed for it: hosts that render no App get the same text and structured
  content as ever; the tools only carry `_meta.ui.resourceUri`.
- The SDK advertises the extension in 2026-07-28 discovery but sieves it out of a 2025-11-25
  `initialize` result, the handshake Claude Desktop's stdio path uses. `advertise_apps` (a server
  middleware) puts it back there, and only there: one seam, after the SDK's own serialization.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from mcp.server.apps import EXTENSION_ID, Apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from retab_mcp._version import __version__
from retab_mcp.actions import FIRST_POLL_SECONDS, POLL_CAP_SECONDS
from retab_mcp.endpoints import Endpoint

RUNS_URI: Final = "ui://retab-mcp/runs"
RUNS_HTML: Final = Path(__file__).with_name("views") / "runs.html"
# Reads one view makes in all while it refreshes running runs (a list can show many).
MAX_VIEW_READS: Final = 60
TOOL_META: Final = {"ui": {"resourceUri": RUNS_URI}}


def view_config(endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    """What the view needs to know of the rows served: per kind, its envelope keys and tools."""
    kinds: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        kind = endpoint.kind
        entry = kinds.setdefault(
            kind.toolset,
            {
                "key": kind.key,
                "page_key": kind.page_key,
                "noun": kind.noun,
                "plural": kind.plural,
                "id_arg": kind.id_arg,
                "read": None,
                "cancel": None,
                "list": None,
            },
        )
        entry[endpoint.action] = endpoint.tool
    return {
        "version": __version__,
        "kinds": list(kinds.values()),
        "first_poll_seconds": FIRST_POLL_SECONDS,
        "poll_cap_seconds": POLL_CAP_SECONDS,
        "max_reads": MAX_VIEW_READS,
    }


def runs_html(endpoints: tuple[Endpoint, ...]) -> str:
    """The view's HTML, with the served rows' configuration in it."""
    # `<` escaped: nothing in the JSON can close the script element it sits in.
    config = json.dumps(view_config(endpoints), separators=(",", ":")).replace("<", "\\u003c")
    return RUNS_HTML.read_text(encoding="utf-8").replace("__CONFIG__", config)


def apps(endpoints: tuple[Endpoint, ...]) -> Apps:
    """The Apps extension with the run view as its one resource (the tools carry TOOL_META)."""
    extension = Apps()
    extension.add_html_resource(
        RUNS_URI,
        runs_html(endpoints),
        name="run_view",
        title="Retab runs",
        description="A live view of the runs a tool answered with: status, file, timing, Cancel and Load more.",
        prefers_border=True,
    )
    return extension


async def advertise_apps(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: the Apps extension in the capabilities of a 2025-11-25 `initialize`
    result, which the SDK's per-version serialization leaves out."""
    result = await call_next(ctx)
    if ctx.method == "initialize" and isinstance(result, dict):
        capabilities = result.get("capabilities")
        if isinstance(capabilities, dict):
            extensions = capabilities.get("extensions")
            extensions = dict(extensions) if isinstance(extensions, dict) else {}
            extensions.setdefault(EXTENSION_ID, {})
            result = {**result, "capabilities": {**capabilities, "extensions": extensions}}
    return result
