"""`--workers N`: N real server processes on one port, stateless only, stopped together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from retab_mcp.sandbox import RunningSandbox
from tests.support import clean_env
from tests.test_http import KEY_A, http_server

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


def test_a_worker_that_dies_stops_the_server_with_its_status(sandbox: RunningSandbox) -> None:
    with http_server("--workers", "2", RETAB_API_BASE_URL=sandbox.base_url) as server:
        first, second = workers_of(server.process.pid)
        os.kill(first, signal.SIGKILL)
        assert server.process.wait(timeout=30) == 128 + signal.SIGKILL
        assert "exited with status 137: stopping the others" in server.stderr
        assert not _alive(second)


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
