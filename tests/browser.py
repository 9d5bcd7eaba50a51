"""A real headless browser for tests: Debian's `chromium`, driven by npm `playwright-core` with
`executablePath` set to it (Playwright's own browser download cannot be had here).

`browser_script(script, *args)` runs a Node script with `playwright-core` resolvable, and returns
its stdout. Skips the test, saying why, only where chromium or npm truly cannot be had: the
machine's `chromium`, or `apt-get install -y chromium` when running as root (as CI does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import tool_env

PLAYWRIGHT = "playwright-core@1.65.2"


def chromium() -> str:
    """The chromium binary, installed with apt-get if this process may (root) and it is missing."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    if os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {"capture_output": True, "timeout": 900, "check": False}
        subprocess.run(["apt-get", "update"], **quiet)  # type: ignore[call-overload]
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], **quiet)  # type: ignore[call-overload]
        if found := shutil.which("chromium"):
            return found
    pytest.skip("no chromium: install Debian's `chromium` package (apt-get install chromium)")


def node_modules() -> Path:
    """A node_modules holding playwright-core, installed once into the user cache."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is unavailable: cannot install playwright-core to drive chromium")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "retab-mcp" / "playwright"
    modules = cache / "node_modules"
    if not (modules / "playwright-core" / "package.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", PLAYWRIGHT],
            capture_output=True, text=True, timeout=600, env=tool_env(PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    return modules


def browser_script(script: str, *args: str, timeout: float = 120) -> str:
    """Run `script` (Node, CommonJS) with CHROMIUM set to the binary and playwright-core on NODE_PATH."""
    executable, modules = chromium(), node_modules()
    done = subprocess.run(
        ["node", "-e", script, "--", *args],
        capture_output=True, text=True, timeout=timeout,
        env=tool_env(CHROMIUM=executable, NODE_PATH=str(modules)),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout
