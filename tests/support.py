"""Helpers for tests that run retab-mcp as a real subprocess, the way clients and users do, and
the external tools that drive it (tool_env: never with the user's HOME)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from retab_mcp.config import ENV_VARS

ROOT = Path(__file__).resolve().parent.parent

# `python -m retab_mcp` of the interpreter running the tests: the installed package, no shell.
SERVER_COMMAND = [sys.executable, "-m", "retab_mcp"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any variable the server reads, plus `extra`.

    A developer's own RETAB_API_KEY or base URL must never reach a test's subprocess.
    """
    names = {var.name for var in ENV_VARS}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("RETAB_")}
    env.update(extra)
    return env


def tool_env(**extra: str) -> dict[str, str]:
    """clean_env(**extra) for an external tool (the Inspector, the conformance suite, mcpb, uv):
    HOME is a new empty directory, so nothing the user's home holds (the Inspector's stored OAuth
    state, a keychain notice it prints because of it, a tool's own config) changes what a test sees.

    What the tools need to reach their registries is kept: npm's cache and user config, uv's cache
    and Pythons, resolved once from the real HOME, so nothing is downloaded again.
    """
    home = tempfile.mkdtemp(prefix="retab-mcp-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    env = {k: v for k, v in clean_env().items() if not k.startswith("XDG_")}  # XDG_* point into the real home
    env |= {"HOME": home, **_package_manager_settings()}
    if "USERPROFILE" in env:  # Windows' HOME
        env["USERPROFILE"] = home
    env.update(extra)
    return env


@functools.cache
def _package_manager_settings() -> dict[str, str]:
    """Where npm and uv keep their caches and configuration under the real HOME, as variables."""
    settings: dict[str, str] = {}

    def ask(*command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    if npm := shutil.which("npm"):
        if cache := ask(npm, "config", "get", "cache"):
            settings["npm_config_cache"] = cache
        if (userconfig := ask(npm, "config", "get", "userconfig")) and Path(userconfig).is_file():
            settings["npm_config_userconfig"] = userconfig  # the registry, a proxy, a CA
    if uv := os.environ.get("UV") or shutil.which("uv"):
        if cache := ask(uv, "cache", "dir"):
            settings["UV_CACHE_DIR"] = cache
        if pythons := ask(uv, "python", "dir"):
            settings["UV_PYTHON_INSTALL_DIR"] = pythons
    return settings


@contextmanager
def sandbox_process() -> Iterator[str]:
    """`retab-mcp sandbox --port 0` as a subprocess; yields the base URL it prints first."""
    process = subprocess.Popen(
        [*SERVER_COMMAND, "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), f"the sandbox printed {base_url!r}"
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@functools.cache
def npm_command(package: str, name: str) -> str:
    """The absolute path of command `name` of the npm package `package` (`name@version`), the
    same file `npx -y package` runs.

    Resolved once per test process: every `npx` start spends ~0.6 s of CPU finding the package
    before the command runs, and the suite runs these commands dozens of times. The first
    resolution installs the package into npx's cache, under a lock, so parallel test processes
    do not install it into the same place at once.
    """
    npx = shutil.which("npx")
    assert npx is not None, "npx (Node.js) is not installed"
    with _machine_lock("npx"):
        done = subprocess.run(
            [npx, "-y", "--package", package, "-c", f"command -v {name}"],
            capture_output=True,
            text=True,
            timeout=600,
            env=tool_env(),
        )
    assert done.returncode == 0, f"npx could not install {package}: {done.stderr[-2000:]}"
    path = done.stdout.strip().splitlines()[-1]
    assert os.path.isabs(path), f"npx found no command {name} in {package}: {done.stdout!r}"
    return path


@contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process on this machine (POSIX; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # Windows: tests run one process at a time there anyway
        yield
        return
    with open(Path(tempfile.gettempdir()) / f"retab-mcp-tests-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class HttpProcess:
    """A `retab-mcp --transport http` subprocess: its base URL and what it wrote on stderr."""

    url: str
    stderr: list[bytes]

    @property
    def mcp(self) -> str:
        return self.url + "/mcp"

    @property
    def log(self) -> str:
        return b"".join(self.stderr).decode()


@contextmanager
def http_process(*args: str, **env: str) -> Iterator[HttpProcess]:
    """`retab-mcp --transport http` on a free loopback port, logging at INFO, with `env` on top of
    clean_env(); yielded once /readyz answers 200, and stopped (SIGTERM) after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [*SERVER_COMMAND, "--transport", "http", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=clean_env(RETAB_MCP_LOG_LEVEL="INFO", **env),
    )
    server = HttpProcess(f"http://127.0.0.1:{port}", [])
    reader = threading.Thread(target=lambda: server.stderr.extend(process.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(server.url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, server.log
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
