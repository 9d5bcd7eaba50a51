"""`--workers N`: N processes serving one HTTP port, for a machine whose cores one process cannot use.

Why: a Python process runs its event loop on one core, and under load retab-mcp's HTTP server is
CPU-bound on it (docs/benchmarks.md). Each worker is a whole server (lifespan, connection pool,
admission gate, drain), forked once the settings are checked and the tools are built.

How: every worker listens on its own socket bound to the same address with SO_REUSEPORT, so the
kernel spreads new connections over the workers (by connection, not by request: one keep-alive
client stays on one worker). The parent binds the address first, without SO_REUSEPORT and
without listening (listen.py): that bind fails if anything already listens there (a plain server, or another
group of workers, which the workers' SO_REUSEPORT would otherwise join silently), it holds the
port while the workers bind theirs, and it settles the port when `--port 0` asks for any. Its
SO_REUSEADDR lets it through the TIME_WAIT connections a stopped server leaves behind. Two groups
started in the same few milliseconds can still both bind: neither listens yet.

The parent then only supervises:
- SIGTERM or SIGINT is passed on to every worker as SIGTERM (each drains its calls, as a single
  process does) and the parent exits once they have: 0 for a clean drain.
- A worker killed by a signal (the OOM killer, a crash; not SIGTERM or SIGINT, which ask it to
  stop) is replaced: the connections it held or had queued are lost with it, the others keep
  serving. The replacement starts after a back-off (0.5 s, doubling up to 10 s); RESTART_LIMIT
  deaths within RESTART_WINDOW seconds mean the workers cannot stay up, so the others are
  stopped and the server exits 128 + the signal, one line saying why.
- A worker that exits with a status (a failure at start-up, or a drain someone asked that worker
  for) stops the others, and its status is the server's.
- Every worker gets SIGTERM, and drains, when the parent dies however it dies (even SIGKILL):
  prctl(PR_SET_PDEATHSIG) on Linux, else a thread watching getppid(). An orphan would keep serving
  the port with the old settings beside the next server. Its listener closes at once, so the port
  is free at once; its calls in flight get the usual drain (RETAB_MCP_SHUTDOWN_GRACE).

Stateless HTTP only (config.Settings.check_workers): a `--stateful` session lives in one process.
Under Kubernetes keep one worker per pod: replicas are the scaling unit there, each with its own
CPU limit, probes and drain.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from retab_mcp import listen
from retab_mcp.config import Settings
from retab_mcp.listen import StartError
from retab_mcp.server import RetabMCPServer

logger = logging.getLogger(__name__)
LISTEN_BACKLOG = 2048  # uvicorn's own default
RESTART_DELAY = 0.5  # before the first replacement; doubles with each recent death
RESTART_DELAY_MAX = 10.0
RESTART_LIMIT = 5  # worker deaths within RESTART_WINDOW that stop the server
RESTART_WINDOW = 60.0
PARENT_CHECK_SECONDS = 0.5  # the getppid() watch, where prctl is missing
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def serve(server: RetabMCPServer, settings: Settings) -> int:
    """Serve with `settings.workers` processes until they all exit; the exit status of the server."""
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(os, "fork"):
        print("retab-mcp: RETAB_MCP_WORKERS (--workers) above 1 needs SO_REUSEPORT and fork", file=sys.stderr)
        return 2
    try:
        reserved = listen.reserve(settings.host, settings.port)
    except StartError as exc:
        print(f"retab-mcp: {exc}", file=sys.stderr)
        return 2
    parent = os.getpid()
    family = socket.AddressFamily(reserved.family)
    with reserved:
        address = reserved.getsockname()

        def worker() -> NoReturn:
            reserved.close()
            _serve_worker(server, settings, family, address, parent)

        def started() -> None:
            from retab_mcp.http import start_line  # the workers say nothing themselves: one line, here

            print(f"{start_line(settings, address[1])} Workers: {settings.workers}.", file=sys.stderr, flush=True)

        return _Supervisor(worker).run(settings.workers, started)


def _serve_worker(
    server: RetabMCPServer, settings: Settings, family: socket.AddressFamily, address: tuple[str, int], parent: int
) -> NoReturn:
    """A forked worker, run to its end: its own listening socket, uvicorn's own signal handling."""
    status = 1
    try:
        _die_with_parent(parent)
        from retab_mcp.http import serve as serve_http

        with listen.bound(family, address, reuseport=True) as sock:
            sock.listen(LISTEN_BACKLOG)
            serve_http(server, settings, sock)
        status = 0
    except BaseException:
        logger.exception("worker %d failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(status)  # never the parent's clean-up


def _die_with_parent(parent: int) -> None:
    """Have SIGTERM sent to this process when `parent` dies; exit now if it already has."""
    if not _parent_death_signal(signal.SIGTERM):
        threading.Thread(target=watch_parent, args=(parent, _terminate), daemon=True, name="parent-watch").start()
    if os.getppid() != parent:  # it died between the fork and the line above
        os._exit(0)


def _parent_death_signal(sig: signal.Signals) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        result: int = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return result == 0


def watch_parent(parent: int, on_death: Callable[[], None], every: float = PARENT_CHECK_SECONDS) -> None:
    """Call `on_death` once this process's parent is no longer `parent` (it was reparented)."""
    while os.getppid() == parent:
        time.sleep(every)
    on_death()


def _terminate() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class _Supervisor:
    """The parent's loop: forks the workers, replaces those killed by a signal, forwards a stop.

    Signals wake it through a pipe (signal.set_wakeup_fd), so a restart can wait for its back-off
    while SIGCHLD, SIGTERM and SIGINT are still seen at once."""

    def __init__(self, worker: Callable[[], NoReturn]) -> None:
        self._worker = worker
        self.running: dict[int, float] = {}  # pid -> when it was forked (monotonic)
        self.restarts: list[float] = []  # when each pending replacement is due
        self.deaths: deque[float] = deque()  # recent deaths by signal, for the back-off and the limit
        self.stopping = False
        self.status = 0

    def run(self, count: int, started: Callable[[], None]) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        handlers = {signal.SIGTERM: self._stop, signal.SIGINT: self._stop, signal.SIGCHLD: _ignore}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        previous_fd = signal.set_wakeup_fd(wake_write)
        try:
            for _ in range(count):
                if not self.stopping:
                    self._fork((wake_read, wake_write))
            started()
            while True:
                self._reap()
                now = time.monotonic()
                due = [at for at in self.restarts if at <= now]
                if not self.stopping:
                    for at in due:
                        self.restarts.remove(at)
                        self._fork((wake_read, wake_write))
                if not self.running and (self.stopping or not self.restarts):
                    return self.status
                timeout = max(0.0, min(self.restarts) - now) if self.restarts and not self.stopping else None
                select.select([wake_read], [], [], timeout)
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 512)
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)

    def _fork(self, inherited: tuple[int, int]) -> None:
        # Signals wait until the child has dropped the parent's handlers: the parent's _stop run
        # in a child would signal the child's siblings.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    signal.set_wakeup_fd(-1)
                    for fd in inherited:
                        os.close(fd)
                    for sig in _SIGNALS:
                        signal.signal(sig, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                except BaseException:
                    os._exit(1)
                self._worker()
            self.running[pid] = time.monotonic()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _reap(self) -> None:
        while self.running:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            if self.running.pop(pid, None) is not None:
                self._ended(pid, os.waitstatus_to_exitcode(wait_status))

    def _ended(self, pid: int, code: int) -> None:
        status = code if code >= 0 else 128 - code
        if self.stopping:
            self.status = self.status or status
            return
        if -code in (signal.SIGTERM, signal.SIGINT):
            # Asked to stop before its handlers were in place (a worker starting up drains on
            # either once they are): a stop someone asked of that worker, not a crash.
            code = 0
        if code >= 0:
            if code:
                logger.error("worker %d exited with status %d: stopping the others", pid, code)
            self.status = code
            self._stop(signal.SIGTERM, None)
            return
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths[0] < now - RESTART_WINDOW:
            self.deaths.popleft()
        name = signal.Signals(-code).name
        if len(self.deaths) >= RESTART_LIMIT:
            logger.error(
                "worker %d died of %s, %d worker deaths within %d s: stopping the others",
                pid, name, len(self.deaths), RESTART_WINDOW,
            )  # fmt: skip
            self.status = status
            self._stop(signal.SIGTERM, None)
            return
        delay = min(RESTART_DELAY * 2 ** (len(self.deaths) - 1), RESTART_DELAY_MAX)
        logger.warning("worker %d died of %s: starting another in %.1f s", pid, name, delay)
        self.restarts.append(now + delay)

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _ignore(sig: int, frame: FrameType | None) -> None:
    """SIGCHLD's handler: its only job is the byte set_wakeup_fd writes."""
