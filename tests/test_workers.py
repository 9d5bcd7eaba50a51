"""`--workers N`: N real server processes on one port, stateless only: a killed worker replaced, the
whole group stopped by SIGTERM and by its parent's death, a port already served refused."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from retab_mcp import workers
from retab_mcp.config import Settings
from retab_mcp.sandbox import RunningSandbox
from retab_mcp.server import RetabMCPServer
from tests.support import KEY_A, SERVER_COMMAND, HttpServer, clean_env, free_port, http_server

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")

CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_edit", "arguments": {}}}
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
    "Authorization": f"Bearer {KEY_A}",
}


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def sockets_of(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def call(client: httpx.Client, url: str, edit_id: str) -> dict[str, object]:
    body = {**CALL, "params": {"name": "get_edit", "arguments": {"edit_id": edit_id}}}
    answer = client.post(url, json=body, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()["result"]
    return result


def test_two_workers_share_the_port_and_both_serve(sandbox: RunningSandbox) -> None:
    with http_server("--workers", "2", RETAB_API_BASE_URL=sandbox.base_url) as server:
        workers = workers_of(server.process.pid)
        assert len(workers) == 2
        before = {pid: sockets_of(pid) for pid in workers}
        # 16 keep-alive connections, held open: the kernel spreads them over both workers.
        clients = [httpx.Client() for _ in range(16)]
        try:
            for client in clients:
                result = call(client, server.mcp, "edt_running01")
                assert result["structuredContent"]["status"] == "in_progress"  # type: ignore[index]
            held = {pid: sockets_of(pid) - before[pid] for pid in workers}
            assert sum(held.values()) >= 16
            assert all(count >= 1 for count in held.values()), held
        finally:
            for client in clients:
                client.close()
        assert server.stop() == 0
        assert not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in workers)


def test_a_worker_killed_by_a_signal_is_replaced_while_the_other_serves(sandbox: RunningSandbox) -> None:
    with workers_group(RETAB_API_BASE_URL=sandbox.base_url) as server:
        first, second = workers_of(server.process.pid)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: first not in workers_of(server.process.pid), 10)  # reaped: its socket is closed
        # Fresh connections all along the 0.5 s back-off: the survivor takes every one.
        served = 0
        deadline = time.monotonic() + 10
        while served == 0 or len(workers_of(server.process.pid)) < 2:
            assert time.monotonic() < deadline, server.stderr
            with httpx.Client() as client:
                assert call(client, server.mcp, "edt_running01")["isError"] is False
            served += 1
            time.sleep(0.05)
        (replacement,) = set(workers_of(server.process.pid)) - {second}
        assert replacement != first
        held = hold_connections(server, 16)
        assert held[replacement] >= 1, held
        assert held[second] >= 1, held
        assert "died of SIGKILL: starting another in 0.5 s" in server.stderr
        assert server.stop() == 0  # a replaced worker leaves the drain clean


def test_workers_that_keep_dying_stop_the_server_with_one_line(sandbox: RunningSandbox) -> None:
    with workers_group(RETAB_API_BASE_URL=sandbox.base_url) as server:
        killed: set[int] = set()
        deadline = time.monotonic() + 30
        while server.process.poll() is None:
            assert time.monotonic() < deadline, server.stderr
            for pid in set(workers_of(server.process.pid)) - killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.05)
        assert server.process.returncode == 128 + signal.SIGKILL
        assert len(killed) >= 5  # a 6th may be started before the 5th death is seen, and stopped with the rest
        stops = [line for line in server.stderr.splitlines() if "stopping the others" in line]
        assert len(stops) == 1, server.stderr
        assert "5 worker deaths within 60 s" in stops[0]
        assert "Traceback" not in server.stderr
        assert not any(_alive(pid) for pid in killed)


def test_a_worker_that_exits_on_its_own_stops_the_others(sandbox: RunningSandbox) -> None:
    with workers_group(RETAB_API_BASE_URL=sandbox.base_url) as server:
        first, second = workers_of(server.process.pid)
        os.kill(first, signal.SIGTERM)  # a drain asked of that worker alone: it exits 0
        assert server.process.wait(timeout=30) == 0
        assert not _alive(second)


def test_workers_stop_serving_when_their_parent_is_killed(sandbox: RunningSandbox) -> None:
    with workers_group(RETAB_API_BASE_URL=sandbox.base_url) as server:
        workers = workers_of(server.process.pid)
        with httpx.Client() as client:
            call(client, server.mcp, "edt_running01")
        server.process.kill()
        deadline = time.monotonic() + 2
        while _serves(server.port) or not all(_gone(pid) for pid in workers):
            assert time.monotonic() < deadline, f"orphans still serve: {workers}"
            time.sleep(0.05)


@pytest.mark.parametrize("occupant", ["workers", "plain listener"])
def test_a_server_on_a_port_already_served_refuses_it(sandbox: RunningSandbox, occupant: str) -> None:
    port = free_port()
    with contextlib.ExitStack() as stack:
        if occupant == "workers":
            first = stack.enter_context(workers_group(RETAB_API_BASE_URL=sandbox.base_url, port=port))
        else:
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", port))
            listener.listen()
        second = subprocess.Popen(
            [*SERVER_COMMAND, "--transport", "http", "--port", str(port), "--workers", "2", "--read-only"],
            env=clean_env(RETAB_API_BASE_URL=sandbox.base_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        stack.callback(_kill_group, second)
        out, err = second.communicate(timeout=30)
        assert second.returncode == 2, err
        assert out == ""
        assert err.splitlines() == [
            f"retab-mcp: port {port} on 127.0.0.1 is already in use; stop what serves it, or choose another "
            "RETAB_MCP_PORT (--port)"
        ]
        if occupant == "workers":
            for _ in range(20):  # fresh connections: every one reaches the first server's tools
                with httpx.Client() as client:
                    body = {**CALL, "params": {"name": "cancel_edit", "arguments": {"edit_id": "edt_running01"}}}
                    answer = client.post(first.mcp, json=body, headers=HEADERS).json()["result"]
                    assert answer["structuredContent"]["ok"] is True, answer
        else:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                listener.accept()[0].close()


def test_a_new_server_takes_the_port_despite_time_wait_connections(sandbox: RunningSandbox) -> None:
    port = free_port()
    with workers_group(RETAB_API_BASE_URL=sandbox.base_url, port=port) as first:
        for _ in range(8):  # the server closes these first: their port side lingers in TIME_WAIT
            with httpx.Client(headers={"Connection": "close"}) as client:
                call(client, first.mcp, "edt_running01")
        assert first.stop() == 0
    with workers_group(RETAB_API_BASE_URL=sandbox.base_url, port=port) as second, httpx.Client() as client:
        call(client, second.mcp, "edt_running01")


def test_a_host_that_cannot_be_listened_on_stops_start_up_with_one_line() -> None:
    done = subprocess.run(
        [*SERVER_COMMAND, "--transport", "http", "--host", "192.0.2.1", "--port", str(free_port()), "--workers", "2"],
        env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("retab-mcp: cannot listen on 192.0.2.1 port "), done.stderr


def test_a_host_name_that_does_not_resolve_stops_start_up_with_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unknown(*args: object, **kwargs: object) -> NoReturn:  # no DNS query leaves the test
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    settings = replace(settings, transport="http", host="nosuch.invalid", workers=2)
    assert workers.serve(RetabMCPServer(settings), settings) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "retab-mcp: RETAB_MCP_HOST (--host) 'nosuch.invalid' is not an address to listen on: Name or service not known"
    ]


def test_the_parent_watch_sees_a_reparented_worker() -> None:
    seen = threading.Event()
    watcher = threading.Thread(target=workers.watch_parent, args=(os.getppid() + 1, seen.set, 0.01), daemon=True)
    watcher.start()
    assert seen.wait(5)
    calm = threading.Event()
    threading.Thread(target=workers.watch_parent, args=(os.getppid(), calm.set, 0.01), daemon=True).start()
    assert not calm.wait(0.3)


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--transport", "http", "--workers", "2", "--stateful"], {}, "RETAB_MCP_STATEFUL"),
        (["--transport", "http"], {"RETAB_MCP_WORKERS": "2", "RETAB_MCP_STATEFUL": "true"}, "RETAB_MCP_STATEFUL"),
        (["--workers", "2"], {}, "--transport http"),
        (["--transport", "http", "--workers", "2", "--sandbox"], {}, "RETAB_MCP_SANDBOX"),
        (["--transport", "http", "--workers", "0"], {}, "RETAB_MCP_WORKERS"),
    ],
)
def test_workers_where_they_cannot_work_stop_start_up(args: list[str], env: dict[str, str], named: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "retab_mcp", *args], env=clean_env(**env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "RETAB_MCP_WORKERS" in done.stderr
    assert named in done.stderr


@contextlib.contextmanager
def workers_group(port: int | None = None, **env: str) -> Iterator[HttpServer]:
    """`--workers 2` in a process group of its own: whatever a test does to the parent, the
    finally kills every process of the group, orphans included."""
    port = port or free_port()
    process = subprocess.Popen(
        [*SERVER_COMMAND, "--transport", "http", "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env(RETAB_MCP_LOG_LEVEL="INFO", **env),
        start_new_session=True,
    )  # fmt: skip
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr or []), daemon=True)
    reader.start()
    server = HttpServer(process, port, stderr)
    try:
        wait_until(lambda: len(workers_of(process.pid)) == 2 and _ready(server), 20, process)
        yield server
    finally:
        _kill_group(process)
        reader.join(timeout=5)


def _kill_group(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def wait_until(condition: Callable[[], bool], seconds: float, process: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process is None or process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _ready(server: HttpServer) -> bool:
    try:
        return httpx.get(server.url + "/readyz").status_code == 200
    except httpx.TransportError:
        return False


def hold_connections(server: HttpServer, count: int) -> dict[int, int]:
    """Sockets each worker holds for `count` keep-alive connections, held open during the count."""
    workers = workers_of(server.process.pid)
    before = {pid: sockets_of(pid) for pid in workers}
    with contextlib.ExitStack() as stack:
        for _ in range(count):
            call(stack.enter_context(httpx.Client()), server.mcp, "edt_running01")
        return {pid: sockets_of(pid) - before[pid] for pid in workers}


def _serves(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return False
    return True


def _gone(pid: int) -> bool:
    """Reaped, or a zombie: nothing left that runs."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a reaped or unreaped dead worker is neither)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True
