"""The official MCP conformance suite, and the Inspector CLI, against `retab-mcp --transport http`.

The suite needs Node 22; where the machine's Node is older, a Node 22 from the npm registry
(`node-<platform>-<arch>@22`) is installed once into the user cache. The run is skipped, with the
reason printed, only where npm itself is unavailable."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest

from retab_mcp.sandbox import RunningSandbox
from tests.support import HttpServer, free_port, http_server, inspector, npm_command, tool_env

pytestmark = pytest.mark.slow

LEGACY_SUITE = "@modelcontextprotocol/conformance@0.1.16"
MODERN_SUITE = "@modelcontextprotocol/conformance@0.2.0-alpha.12"  # carries the 2026-07-28 requirements
BASELINE = Path(__file__).parent / "conformance-baseline.yml"


def node_major(node: str) -> int:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return int(version.strip().lstrip("v").split(".")[0])


@pytest.fixture(scope="module")
def node22_path() -> str:
    """A PATH whose first `node` and `npx` are Node >= 22."""
    node = shutil.which("node")
    if node and node_major(node) >= 22:
        return os.environ["PATH"]
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is unavailable: cannot provide the Node 22 the conformance suite needs")
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system())
    arch = {"x86_64": "x64", "AMD64": "x64", "arm64": "arm64", "aarch64": "arm64"}.get(platform.machine())
    if system is None or arch is None:
        pytest.skip(f"no Node 22 package on npm for {platform.system()} {platform.machine()}")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "retab-mcp" / "node22"
    bin_dir = cache / "node_modules" / f"node-{system}-{arch}" / "bin"
    if not (bin_dir / "node").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", f"node-{system}-{arch}@22"],
            check=True,
            capture_output=True,
            timeout=300,
            env=tool_env(),
        )
    # The suite's command (`#!/usr/bin/env node`) runs with the first `node` on PATH: this one.
    return os.pathsep.join([str(bin_dir), os.environ["PATH"]])


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    # --sandbox on loopback: a server key, so no caller key is needed, as the suite sends none.
    with http_server("--sandbox") as running:
        yield running


SCENARIOS = [
    (LEGACY_SUITE, None, "server-initialize"),
    (LEGACY_SUITE, None, "tools-list"),
    (LEGACY_SUITE, None, "ping"),
    (LEGACY_SUITE, None, "dns-rebinding-protection"),
    (MODERN_SUITE, "2026-07-28", "server-stateless"),
    (MODERN_SUITE, "2026-07-28", "caching"),
    (MODERN_SUITE, "2026-07-28", "http-header-validation"),
    (MODERN_SUITE, "2026-07-28", "tools-list"),
    (MODERN_SUITE, "2026-07-28", "dns-rebinding-protection"),
]


@pytest.mark.parametrize(
    ("suite", "spec", "scenario"), SCENARIOS, ids=[f"{s or '2025-11-25'}-{n}" for _, s, n in SCENARIOS]
)
def test_conformance_scenario(
    node22_path: str, server: HttpServer, tmp_path: Path, suite: str, spec: str | None, scenario: str
) -> None:
    command = [
        npm_command(suite, "conformance"),
        "server",
        "--url",
        server.mcp,
        "--scenario",
        scenario,
        "-o",
        str(tmp_path),
    ]
    if spec:
        command += ["--spec-version", spec]
    command += ["--expected-failures", str(BASELINE)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=tool_env(PATH=node22_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    [checks_file] = tmp_path.glob("*/checks.json")
    checks = json.loads(checks_file.read_text())
    assert checks, "the scenario ran no check"
    failures = [c for c in checks if c["status"] == "FAILURE"]
    real = [c["id"] for c in failures if not (c.get("details") or {}).get("untestable")]
    assert real == [], real


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
def test_inspector_over_http(server: HttpServer) -> None:
    target = [server.mcp, "--transport", "http"]
    code, listed, stderr = inspector("--method", "tools/list", target=target)
    assert code == 0, stderr
    assert [t["name"] for t in listed["result"]["tools"]] == [
        "cancel_blueprint",
        "cancel_edit",
        "get_blueprint",
        "get_edit",
        "list_edits",
    ]
    code, called, stderr = inspector(
        "--method",
        "tools/call",
        "--tool-name",
        "cancel_edit",
        "--tool-args-json",
        '{"edit_id": "edt_01G34H8J2K"}',
        "-q",
        target=target,
    )
    assert code == 0, stderr
    assert called["result"]["structuredContent"]["status"] == "cancelled"


# -- the OAuth authorization server (--auth oauth) ---------------------------------------------
# The suite's `authorization` scenarios test an authorization server: its metadata, then a whole
# code grant, for which it prints the sign-in URL and waits on its own callback. Here the test is
# the user: it signs in on the page, then follows the redirect back to the suite. (The suite has
# no resource-server auth scenario in `server` mode: tests/test_oauth.py covers that side.)

OAUTH_SECRET = "conformance-oauth-secret-0123456789abcdef"


def test_the_oauth_authorization_server_passes_the_suites_scenarios(
    node22_path: str,
    _running_sandbox: RunningSandbox,  # noqa: PT019
    tmp_path: Path,
) -> None:
    env = {"RETAB_MCP_SECRET_KEYS": OAUTH_SECRET, "RETAB_API_BASE_URL": _running_sandbox.base_url}
    with http_server("--auth", "oauth", **env) as oauth:
        port = free_port()
        registration = {"redirect_uris": [f"http://127.0.0.1:{port}/callback"], "client_name": "conformance"}
        client_id = httpx.post(oauth.url + "/register", json=registration).json()["client_id"]
        command = [
            npm_command(MODERN_SUITE, "conformance"), "authorization", "--url", oauth.url, "--client-id", client_id,
            "--resource", oauth.mcp, "--port", str(port), "-o", str(tmp_path),
        ]  # fmt: skip
        suite = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=tool_env(PATH=node22_path))
        killer = threading.Timer(180, suite.kill)  # bounded, whatever the suite does
        killer.start()
        try:
            assert suite.stdout is not None
            printed: list[str] = []
            for line in iter(suite.stdout.readline, ""):
                printed.append(line.rstrip())
                if line.startswith(oauth.url + "/authorize?"):
                    break
            assert printed[-1].startswith(oauth.url + "/authorize?"), "\n".join(printed)
            with httpx.Client() as browser:
                page = browser.get(printed[-1])
                request = re.search(r'name="request" value="([^"]+)"', page.text)
                assert request, page.text
                form = {"request": unescape(request.group(1)), "retab_api_key": "rt_test_conformance", "scope": "read"}
                signed_in = browser.post(oauth.url + "/authorize", data=form)
                assert signed_in.status_code == 303, signed_in.text
                httpx.get(signed_in.headers["location"], timeout=30)  # back to the suite's callback
            rest, _ = suite.communicate(timeout=120)
        finally:
            killer.cancel()
            if suite.poll() is None:
                suite.kill()
                suite.wait()
    assert suite.returncode == 0, "\n".join(printed) + rest
    checks = [check for path in tmp_path.glob("*/checks.json") for check in json.loads(path.read_text())]
    assert {check["id"] for check in checks} >= {"authorization-server-metadata", "authorization-code-grant"}
    assert [c["id"] for c in checks if c["status"] == "FAILURE"] == []
