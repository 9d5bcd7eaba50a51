"""Who is measured, from which environment, with which command.

Each stdio server runs from an environment holding only what a user's install of it holds
(`--envs isolated`, the default of a full run), as `uvx <server>` would give them: the figures
then carry each server's own import costs and no one else's. In a shared environment one
package's optional imports can tax another's start-up (`httpx` imports `rich` at start-up when
it is installed, which fastmcp and the Retab SDK bring in), so a shared environment measures the
mix, not the server. The environments are built from uv.lock (`uv sync --frozen` for retab-mcp,
`uv pip install` constrained by the lock for the others) with bytecode compiled, under
`bench/.envs/`.

`--envs shared` runs everything from the interpreter running the bench (quick smoke runs), and
leaves out contenders whose packages are not installed there, saying so.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from bench.harness import BENCH_DIR, READ_CALLS, ROOT

EnvMode = Literal["isolated", "shared"]
ENVS_DIR: Final = BENCH_DIR / ".envs"


@dataclass(frozen=True, slots=True)
class Env:
    name: str
    bin: Path

    @property
    def python(self) -> str:
        return str(self.bin / "python")


@dataclass(frozen=True, slots=True)
class Contender:
    key: str
    label: str
    env: str  # which environment it runs from (isolated mode)
    argv: Callable[[Env], list[str]]
    distribution: str  # the installed package it needs (a distribution name, not a module)
    cancel_tools: bool  # serves cancel_blueprint and cancel_edit
    about: str
    extra_env: tuple[tuple[str, str], ...] = ()
    read_tools: bool = False  # serves the tools of harness.READ_CALLS as well


def _script(name: str) -> Callable[[Env], list[str]]:
    return lambda env: [env.python, str(BENCH_DIR / "servers" / name)]


def _console(name: str) -> Callable[[Env], list[str]]:
    return lambda env: [str(env.bin / name)]


FLOOR: Final = Contender(
    "floor",
    "floor: bare MCPServer, one no-op tool",
    "core",
    _script("floor.py"),
    "mcp",
    cancel_tools=False,
    about="the SDK's own start-up, nothing else (bench/servers/floor.py)",
)
RETAB_MCP: Final = Contender(
    "retab-mcp",
    "retab-mcp",
    "core",
    _console("retab-mcp"),
    "retab-mcp",
    cancel_tools=True,
    about="this server, as installed: the `retab-mcp` console script",
    read_tools=True,
)
FETCH: Final = Contender(
    "fetch",
    "mcp-server-fetch",
    "fetch",
    _console("mcp-server-fetch"),
    "mcp-server-fetch",
    cancel_tools=False,
    about="the official Python reference server (same SDK), for cold start only",
)
GENERATED: Final = Contender(
    "generated",
    "generated: fastmcp from_openapi",
    "fastmcp",
    _script("generated.py"),
    "fastmcp",
    cancel_tools=True,
    about="FastMCP.from_openapi over bench/openapi.json (bench/servers/generated.py)",
)
STDIO_CONTENDERS: Final = (FLOOR, RETAB_MCP, FETCH, GENERATED)
# Per call only, next to the floor's no-op: the same server with event-loop stdio, no threads.
FLOOR_LOOP_STDIO: Final = Contender(
    "floor-loop-stdio",
    "floor with event-loop stdio (experiment)",
    "core",
    _script("floor_loopio.py"),
    "mcp",
    cancel_tools=False,
    about="bench/servers/floor_loopio.py: the floor with stdin/stdout on asyncio pipes instead of worker threads",
)


# Per call only, next to the floor's no-op: no SDK at all, a JSON-RPC echo over event-loop stdio.
ECHO_LOOP_STDIO: Final = Contender(
    "echo-loop-stdio",
    "JSON-RPC echo, no SDK, event-loop stdio (experiment)",
    "core",
    _script("echo_loopio.py"),
    "mcp",
    cancel_tools=False,
    about="bench/servers/echo_loopio.py: answers every request at once: the pipes and wake-ups alone",
)


def baseline(ref: str, commit: str) -> Contender:
    """retab-mcp as of another commit, side by side with the working tree (`--baseline REF`):
    that commit's `retab_mcp/` is extracted under bench/.envs/ and put first on PYTHONPATH of
    the core environment, started the way the console script starts it."""
    source = ENVS_DIR / f"baseline-{commit[:12]}"
    if not (source / "retab_mcp").is_dir():
        source.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "retab_mcp"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    endpoints = source / "retab_mcp" / "endpoints.py"
    # An older commit may serve the cancels only: its per-call rows then have no read calls.
    reads = endpoints.is_file() and all(f'"{tool}"' in endpoints.read_text() for tool in READ_CALLS)
    return Contender(
        "baseline",
        f"retab-mcp at {ref} ({commit[:10]})",
        "core",
        lambda env: [env.python, "-c", "import sys; from retab_mcp.cli import main; sys.exit(main())"],
        "retab-mcp",
        cancel_tools=True,
        about=f"retab_mcp/ of commit {commit}, for a before/after comparison",
        extra_env=(("PYTHONPATH", str(source)),),
        read_tools=reads,
    )


# What each isolated environment installs beyond nothing (the "core" one is the project itself).
_EXTRA_ENVS: Final = {"fetch": "mcp-server-fetch", "fastmcp": "fastmcp"}


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise RuntimeError("uv is needed to build the isolated environments (or run with --envs shared)")
    return uv


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")


def prepare_envs(mode: EnvMode, log: Callable[[str], None]) -> dict[str, Env]:
    """The environments by name; in isolated mode, built (or brought up to date) first."""
    if mode == "shared":
        shared = Env("shared", Path(sys.executable).parent)
        return {name: shared for name in ("core", *_EXTRA_ENVS)}
    uv = _uv()
    ENVS_DIR.mkdir(exist_ok=True)
    envs: dict[str, Env] = {}
    core = ENVS_DIR / "core"
    log(f"environment core: retab-mcp and its dependencies only ({core})")
    sync_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    sync_env["UV_PROJECT_ENVIRONMENT"] = str(core)
    # No dependency group at all, whatever [tool.uv] default-groups says: a user's install.
    sync = [uv, "sync", "--frozen", "--no-default-groups", "--compile-bytecode", "--python", sys.executable]
    _run(sync, env=sync_env)
    envs["core"] = Env("core", core / "bin")
    constraints = ENVS_DIR / "constraints.txt"
    _run([uv, "export", "--frozen", "--all-groups", "--no-hashes", "--no-emit-project", "-q", "-o", str(constraints)])
    for name, package in _EXTRA_ENVS.items():
        path = ENVS_DIR / name
        log(f"environment {name}: {package} and its dependencies only ({path})")
        _run([uv, "venv", "-q", "--allow-existing", "--python", sys.executable, str(path)])
        python = str(path / "bin" / "python")
        _run([uv, "pip", "install", "-q", "--compile-bytecode", "--python", python, "-c", str(constraints), package])
        envs[name] = Env(name, path / "bin")
    return envs


def available(contender: Contender, envs: dict[str, Env]) -> str | None:
    """None when the contender can run; otherwise why not."""
    env = envs[contender.env]
    if env.name == "shared":
        # By distribution, not by module: fastmcp-slim (which other packages pull in) provides a
        # `fastmcp` module without the server, so an importable module proves nothing.
        try:
            importlib.metadata.version(contender.distribution)
        except importlib.metadata.PackageNotFoundError:
            return f"{contender.distribution} is not installed here (uv sync --group bench)"
        return None
    if not Path(contender.argv(env)[0]).exists():
        return f"{contender.argv(env)[0]} is missing"
    return None
