"""`--workers N`: N processes serving one HTTP port, for a machine whose cores one process cannot use.

Why: a Python process runs its event loop on one core, and under load retab-mcp's HTTP server is
CPU-bound on it (docs/benchmarks.md). Each worker is a whole server (lifespan, connection pool,
admission gate, drain), forked once the settings are checked and the tools are built.

How: every worker listens on its own socket bound to the same address with SO_REUSEPORT, so the
kernel spreads new connections over the workers (by connection, not by request: one keep-alive
client stays on one worker). The parent binds the address first (without listening), which
reserves it and settles the port when `--port 0` asks for any, then only supervises: SIGTERM
or SIGINT is passed on to every worker as SIGTERM (each drains its calls, as a single process
does), and when a worker exits on its own the others are stopped too and its status is the
server's, so that whatever restarts the server sees the failure.

Stateless HTTP only (config.Settings.check_workers): a `--stateful` session lives in one process.
Under Kubernetes keep one worker per pod: replicas are the scaling unit there, each with its own
CPU limit, probes and drain.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from types import FrameType

from retab_mcp.config import Settings
from retab_mcp.server import RetabMCPServer

logger = logging.getLogger(__name__)
LISTEN_BACKLOG = 2048  # uvicorn's own default


def serve(server: RetabMCPServer, settings: Settings) -> int:
    """Serve with `settings.workers` processes until they all exit; the exit status of the server."""
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(os, "fork"):
        print("retab-mcp: RETAB_MCP_WORKERS (--workers) above 1 needs SO_REUSEPORT and fork", file=sys.stderr)
        return 2
    family, address = _address(settings.host, settings.port)
    with _bound(family, address) as reserved:
        address = reserved.getsockname()
        children = [_fork_worker(server, settings, family, address, reserved) for _ in range(settings.workers)]
        from retab_mcp.http import start_line  # the workers say nothing themselves: one line, here

        print(f"{start_line(settings, address[1])} Workers: {settings.workers}.", file=sys.stderr, flush=True)
        return _supervise(children)


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return family, (str(address[0]), int(address[1]))


@contextlib.contextmanager
def _bound(family: socket.AddressFamily, address: tuple[str, int]) -> Iterator[socket.socket]:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        yield sock
    finally:
        sock.close()


def _fork_worker(
    server: RetabMCPServer,
    settings: Settings,
    family: socket.AddressFamily,
    address: tuple[str, int],
    reserved: socket.socket,
) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The worker: default signal handling (uvicorn installs its own), its own listening socket.
    status = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        reserved.close()
        from retab_mcp.http import serve as serve_http

        with _bound(family, address) as sock:
            sock.listen(LISTEN_BACKLOG)
            serve_http(server, settings, sock)
        status = 0
    except BaseException:
        logger.exception("worker %d failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(status)  # never the parent's clean-up


def _supervise(children: list[int]) -> int:
    """Wait for every worker; the first to exit (a failure, or a drain someone asked it for)
    stops the others. The status: the first non-zero one, a signal N counted as 128 + N."""
    running = set(children)
    stopping = False
    status = 0

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while running:
            pid, wait_status = os.wait()
            running.discard(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            code = code if code >= 0 else 128 - code
            status = status or code
            if not stopping:
                if code:
                    logger.error("worker %d exited with status %d: stopping the others", pid, code)
                stop(signal.SIGTERM, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
