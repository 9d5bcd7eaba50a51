"""Helpers for tests that run retab-mcp as a real subprocess, the way clients and users do."""

from __future__ import annotations

import os
import subprocess
import sys
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
