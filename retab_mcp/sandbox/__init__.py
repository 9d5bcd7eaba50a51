"""The embedded Retab sandbox: an offline stand-in for the Retab endpoints of the run table.

It is how a newcomer runs the server with no key and no network (`retab-mcp --sandbox`), what
anything else can be pointed at (`retab-mcp sandbox --port N`, then `RETAB_API_BASE_URL`), and
the backend of the tests, always over a real loopback socket. It follows
`shared/reference/retab-api.md`: the wire format, both auth headers, runs in every lifecycle
state that advance over time (and, of each kind, one that completes and one that fails 3 s after
its first read, so that a wait ends), idempotent cancel (some runs stop only seconds after it), reads and
lists with their query parameters on routes derived from the run table (retab_mcp/endpoints.py),
the API's 404 and 422 bodies, and programmable faults.

Keys: any `rt_test_...` key is accepted (`rt_test_sandbox` is the default), `rt_test_forbidden`
gets 403, anything else 401. Nothing here is imported unless the sandbox is used.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retab_mcp.listen import reserve
from retab_mcp.sandbox.state import (
    FORBIDDEN_API_KEY,
    SANDBOX_API_KEY,
    SEEDED_RUNS,
    STOP_DELAY_SECONDS,
    STOP_DELAYS,
    Fault,
    RecordedRequest,
    Sandbox,
    fingerprint,
    finishing_lines,
    seeded_ids_by_status,
)

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "FORBIDDEN_API_KEY",
    "SANDBOX_API_KEY",
    "SEEDED_RUNS",
    "STOP_DELAYS",
    "STOP_DELAY_SECONDS",
    "Fault",
    "RecordedRequest",
    "RunningSandbox",
    "Sandbox",
    "fingerprint",
    "seeded_ids_by_status",
    "serve",
    "serve_in_thread",
]


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    sandbox: Sandbox
    base_url: str


def _server(sandbox: Sandbox) -> uvicorn.Server:
    # Imported here: `retab-mcp --help` lists the seeded runs (state.py) without the web stack.
    import uvicorn

    from retab_mcp.sandbox.app import create_app

    config = uvicorn.Config(
        create_app(sandbox),
        log_config=None,  # the process's own logging (stderr), never stdout
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


@contextmanager
def serve_in_thread(sandbox: Sandbox | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningSandbox]:
    """Serve the sandbox on a loopback socket from a daemon thread, for the life of the block.

    A thread with its own event loop keeps the sandbox out of the MCP server's loop (a stalled
    sandbox request cannot stall the server) and out of its signal handling.
    """
    sandbox = sandbox or Sandbox()
    # TCP_NODELAY matters here: with Nagle on, each response on a kept-alive connection waits
    # ~40 ms for a delayed ACK; listen.py's sockets let asyncio turn it off. A busy port is a
    # listen.StartError.
    sock = reserve(host, port, port_setting="--port")
    server = _server(sandbox)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="retab-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Retab sandbox did not start")
        time.sleep(0.002)
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield RunningSandbox(sandbox, f"http://{bound_host}:{bound_port}")
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def serve(host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the sandbox in the foreground until interrupted (`retab-mcp sandbox`)."""
    with serve_in_thread(host=host, port=port) as running:
        print(
            f"Retab sandbox at {running.base_url} (key {SANDBOX_API_KEY}); Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        print(_seeded_banner(), file=sys.stderr, flush=True)
        # The URL on stdout (this is not the MCP server), so scripts can read the port; last, so a
        # script that reads it and stops the sandbox at once still leaves the banner whole.
        print(running.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


def _seeded_banner() -> str:
    """The seeded ids by status, one line each, so a newcomer knows what to try."""
    lines = ["Seeded runs (active ones advance on their own):"]
    lines += [f"  {status}: {', '.join(ids)}" for status, ids in seeded_ids_by_status().items()]
    lines += finishing_lines()
    stopping = ", ".join(STOP_DELAYS)
    lines.append(f"  {stopping}: a cancel answers in_progress; cancelled {STOP_DELAY_SECONDS:g} s later")
    return "\n".join(lines)
