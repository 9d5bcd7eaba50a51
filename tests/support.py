"""Helpers for tests that run retab-mcp as a real subprocess, the way clients and users do."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
