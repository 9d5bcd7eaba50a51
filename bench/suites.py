"""The measurements. Each returns plain data (lists of samples and summaries) for the report.

Interleaving: every suite takes one sample of each contender in turn (A B C A B C ...), in a
new (seeded) random order every round, so drift on a shared machine (another process, thermal
or frequency changes) lands on every contender alike instead of on whichever ran last, and no
contender always runs right after the same other one (and pays for its trailing work).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import random
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.contenders import Contender, Env
from bench.harness import (
    ALL_CALLS,
    CALLS,
    READ_CALLS,
    SANDBOX_KEY,
    StdioServer,
    child_env,
    cpu_seconds,
    parse_answer,
    rss_mb,
    summary,
)

Log = Callable[[str], None]


def rounds(items: Sequence[Any], count: int, seed: int = 5) -> Iterator[tuple[int, list[Any]]]:
    """`count` rounds of `items`, each in a new random order (the same orders every run)."""
    shuffle = random.Random(seed).shuffle
    order = list(items)
    for index in range(count):
        shuffle(order)
        yield index, order


def server_env(base_url: str) -> dict[str, str]:
    """How every stdio contender is pointed at the sandbox: the production path, by env vars."""
    return child_env({"RETAB_API_KEY": SANDBOX_KEY, "RETAB_API_BASE_URL": base_url})


def start(contender: Contender, envs: dict[str, Env], base_url: str) -> StdioServer:
    return StdioServer(contender.argv(envs[contender.env]), server_env(base_url) | dict(contender.extra_env))


# -- cold start ------------------------------------------------------------------------------


def cold_start(
    contenders: Sequence[Contender], envs: dict[str, Env], base_url: str, runs: int, warmup: int, log: Log
) -> dict[str, Any]:
    """Spawn -> `initialize` answered -> `tools/list` answered, over stdio, per contender.

    The client writes `initialize` as soon as the process exists (a pipe holds it until the
    server reads), which is what a client such as Claude Desktop does. The first `warmup`
    rounds are discarded: they write bytecode caches and warm the page cache.
    """
    samples: dict[str, dict[str, list[float]]] = {
        c.key: {"initialize_ms": [], "tools_list_ms": [], "first_call_ms": [], "rss_mb": []} for c in contenders
    }
    tool = "cancel_blueprint"
    for round_, order in rounds(contenders, warmup + runs):
        for contender in order:
            gc.collect()
            server = start(contender, envs, base_url)
            called = 0
            try:
                server.initialize()
                initialized = time.perf_counter_ns()
                request_id = server.request("tools/list")
                line = server.answer(request_id)
                listed = time.perf_counter_ns()
                rss = rss_mb(server.pid)
                tools = parse_answer(line, request_id, "tools/list")["tools"]
                served = set(CALLS) if contender.cancel_tools else set()
                served |= set(READ_CALLS) if contender.read_tools else set()
                if contender.cancel_tools:
                    if not served <= {t["name"] for t in tools}:
                        raise RuntimeError(f"{contender.key} lists {[t['name'] for t in tools]}")
                    # Not part of cold start; shows what start-up work was moved to the first call.
                    request_id = server.request("tools/call", {"name": tool, "arguments": CALLS[tool][0]})
                    line = server.answer(request_id)
                    called = time.perf_counter_ns()
                    parse_answer(line, request_id, "tools/call")
            finally:
                server.close()
            if round_ >= warmup:
                series = samples[contender.key]
                series["initialize_ms"].append((initialized - server.started_ns) / 1e6)
                series["tools_list_ms"].append((listed - server.started_ns) / 1e6)
                series["rss_mb"].append(rss)
                if called:
                    series["first_call_ms"].append((called - listed) / 1e6)
        if round_ >= warmup and (round_ - warmup + 1) % 10 == 0:
            log(f"  cold start: {round_ - warmup + 1}/{runs} rounds")
    return {
        key: {"samples": values, **{name: summary(series) for name, series in values.items() if series}}
        for key, values in samples.items()
    }


# -- per call --------------------------------------------------------------------------------


@dataclass
class InProcess:
    """A contender that is a library call in the benchmark's own process (no MCP at all)."""

    key: str
    label: str
    about: str
    # tool name -> coroutine that makes the call and returns its duration in nanoseconds
    calls: dict[str, Callable[[], Awaitable[int]]] = field(default_factory=dict)
    # tool name -> why this call cannot be measured (it fails against the API's wire format)
    broken: dict[str, str] = field(default_factory=dict)
    close: Callable[[], Awaitable[None]] | None = None


def raw_httpx(base_url: str) -> InProcess:
    client = httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {SANDBOX_KEY}"}, timeout=httpx.Timeout(30.0)
    )

    def call(method: str, path: str) -> Callable[[], Awaitable[int]]:
        async def one() -> int:
            started = time.perf_counter_ns()
            response = await client.request(method, path)
            response.raise_for_status()
            response.json()
            return time.perf_counter_ns() - started

        return one

    return InProcess(
        "httpx",
        "floor: raw httpx POST",
        "httpx.AsyncClient POST (a cancel) or GET (a read) + .json(), in the benchmark's process",
        {tool: call("POST", path) for tool, (_, path) in CALLS.items()}
        | {tool: call("GET", path) for tool, (_, path) in READ_CALLS.items()},
        close=client.aclose,
    )


def tool_body(base_url: str) -> InProcess:
    """retab-mcp's tool body without MCP: `server.call()` (the client with its retries and
    budget, then the envelope) awaited in the benchmark's process. Between it and raw httpx is
    retab-mcp's own work; between it and retab-mcp over stdio, the SDK's and the pipes'."""
    from retab_mcp.client import RetabClient
    from retab_mcp.config import Settings
    from retab_mcp.endpoints import BY_TOOL
    from retab_mcp.server import AppState
    from retab_mcp.server import call as tool_call

    settings = Settings(api_key=SANDBOX_KEY, base_url=base_url)
    client = RetabClient(settings)
    state = AppState(settings, client)

    def call(tool: str) -> Callable[[], Awaitable[int]]:
        endpoint = BY_TOOL[tool]
        # The arguments as the SDK hands them to the tool: validated, defaults filled in.
        arguments = {"include_output": False, "wait_seconds": 0.0, **ALL_CALLS[tool][0]}

        async def one() -> int:
            started = time.perf_counter_ns()
            result = await tool_call(endpoint, arguments, state, None)
            elapsed = time.perf_counter_ns() - started
            if result.is_error:
                raise RuntimeError(f"{tool} failed: {result.content[0]}")
            return elapsed

        return one

    return InProcess(
        "body",
        "retab-mcp's tool body, in-process (no MCP)",
        "retab_mcp.server.call() awaited in the benchmark's process: client, retries/budget, envelope",
        {tool: call(tool) for tool in ALL_CALLS},
        close=client.aclose,
    )


def retab_sdk(base_url: str) -> InProcess:
    """The official SDK, as a user's own code would call it. Imported by name: it belongs to the
    `bench` dependency group only."""
    retab: Any = importlib.import_module("retab")
    client = retab.AsyncRetab(api_key=SANDBOX_KEY, base_url=base_url, max_retries=0)
    (blueprint_args, _), (edit_args, _) = CALLS["cancel_blueprint"], CALLS["cancel_edit"]
    methods = {
        "cancel_blueprint": lambda: client.files.create_blueprint_cancel(blueprint_args["blueprint_id"]),
        "cancel_edit": lambda: client.edits.create_edit_cancel(edit_args["edit_id"]),
    }

    def call(method: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[int]]:
        async def one() -> int:
            started = time.perf_counter_ns()
            await method()
            return time.perf_counter_ns() - started

        return one

    async def close() -> None:
        await client.close()

    return InProcess(
        "sdk",
        f"Retab SDK {importlib.metadata.version('retab')} (AsyncRetab)",
        "AsyncRetab(...).files.create_blueprint_cancel / .edits.create_edit_cancel, in the benchmark's process",
        {tool: call(method) for tool, method in methods.items()},
        close=close,
    )


def per_call(
    stdio: Sequence[Contender],
    in_process: Sequence[InProcess],
    envs: dict[str, Env],
    base_url: str,
    calls: int,
    warmup: int,
    log: Log,
    noops: Sequence[Contender] = (),
) -> dict[str, Any]:
    """Per-call latency of the two cancels and the read call(s), interleaved across every
    contender, one call at a time; each contender makes the calls it serves (`READ_CALLS` only
    where it has those tools).

    Stdio contenders are timed from writing the `tools/call` line to reading its answer line;
    in-process ones around the awaited call. Every answer is checked (outside the timing) to be
    a successful result, so errors can never pass for speed. `noops` (the floor server, and its
    event-loop-stdio variant) add their no-op tool to the rounds: what the SDK's stdio and
    JSON-RPC cost with no work behind them.
    """
    loop = asyncio.new_event_loop()
    servers: dict[str, StdioServer] = {}
    try:
        for contender in [*stdio, *noops]:
            servers[contender.key] = start(contender, envs, base_url)
        for server in servers.values():
            server.initialize()
        # A call that fails against the sandbox's wire format is recorded as broken, not timed.
        for caller in in_process:
            for tool in list(caller.calls):
                try:
                    loop.run_until_complete(caller.calls[tool]())
                except Exception as exc:
                    caller.broken[tool] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    del caller.calls[tool]

        def stdio_call(server: StdioServer, tool: str) -> int:
            arguments = ALL_CALLS[tool][0] if tool in ALL_CALLS else {}
            started = time.perf_counter_ns()
            request_id = server.request("tools/call", {"name": tool, "arguments": arguments})
            line = server.answer(request_id)
            elapsed = time.perf_counter_ns() - started
            parse_answer(line, request_id, "tools/call")
            return elapsed

        runners: list[tuple[str, str, Callable[[], int]]] = []
        for contender in noops:
            runners.append((contender.key, "noop", lambda s=servers[contender.key]: stdio_call(s, "noop")))  # type: ignore[misc]
        readers = {contender.key for contender in stdio if contender.read_tools}
        for tool in ALL_CALLS:
            for key, server in servers.items():
                if any(key == contender.key for contender in noops):
                    continue
                if tool in READ_CALLS and key not in readers:
                    continue
                runners.append((key, tool, lambda s=server, t=tool: stdio_call(s, t)))  # type: ignore[misc]
            for caller in in_process:
                if tool in caller.calls:
                    fn = caller.calls[tool]
                    runners.append((caller.key, tool, lambda f=fn: loop.run_until_complete(f())))  # type: ignore[misc]
        samples: dict[str, dict[str, list[float]]] = {}
        for key, tool, _ in runners:
            samples.setdefault(key, {})[tool] = []
        gc.collect()
        cpu_start: dict[str, float] = {}
        for index, order in rounds(runners, warmup + calls):
            if index == warmup:  # the servers' CPU time over the timed rounds only
                cpu_start = {key: cpu_seconds(server.pid) for key, server in servers.items()}
            for key, tool, run in order:
                elapsed = run()
                if index >= warmup:
                    samples[key][tool].append(elapsed / 1e6)
            if index >= warmup and (index - warmup + 1) % 1000 == 0:
                log(f"  per call: {index - warmup + 1}/{calls} rounds")
        cpu_per_call = {
            key: (cpu_seconds(server.pid) - cpu_start[key]) / (calls * len(samples[key])) * 1000
            for key, server in servers.items()
        }
    finally:
        for server in servers.values():
            server.close()
        for caller in in_process:
            if caller.close is not None:
                loop.run_until_complete(caller.close())
        loop.close()
    return {
        key: {tool: {"samples_ms": values, **summary(values)} for tool, values in tools.items()}
        | ({"cpu_per_call_ms": cpu_per_call[key]} if key in cpu_per_call else {})
        for key, tools in samples.items()
    }


# -- memory and cost as work grows -----------------------------------------------------------


def soak(
    contenders: Sequence[Contender],
    envs: dict[str, Env],
    base_url: str,
    total: int,
    checkpoints: Sequence[int],
    window: int,
    log: Log,
) -> dict[str, Any]:
    """`total` calls per server (the two tools alternating, servers interleaved call by call);
    at each checkpoint the server's RSS and the latency of the `window` calls just before it.

    A raw httpx POST to the sandbox is interleaved too, as a control: the machine's own drift
    over the minutes this takes moves it as well, so the latency over it is what is judged
    for flatness."""
    servers: dict[str, StdioServer] = {}
    result: dict[str, Any] = {c.key: {"checkpoints": []} for c in contenders}
    loop = asyncio.new_event_loop()
    control = raw_httpx(base_url)
    try:
        for contender in contenders:
            servers[contender.key] = start(contender, envs, base_url)
        for key, server in servers.items():
            server.initialize()
            server.call("tools/list")
            result[key]["rss_after_start_mb"] = rss_mb(server.pid)
        tools = list(CALLS)
        recent: dict[str, list[float]] = {key: [] for key in [*servers, control.key]}
        for index, order in rounds([*servers, control.key], total + 1):
            if index == 0:
                continue  # calls are counted from 1, so the checkpoints fall on round numbers
            tool = tools[index % len(tools)]
            arguments, _ = CALLS[tool]
            for key in order:
                if key == control.key:
                    elapsed = loop.run_until_complete(control.calls[tool]())
                else:
                    server = servers[key]
                    started = time.perf_counter_ns()
                    request_id = server.request("tools/call", {"name": tool, "arguments": arguments})
                    line = server.answer(request_id)
                    elapsed = time.perf_counter_ns() - started
                    parse_answer(line, request_id, "tools/call")
                window_samples = recent[key]
                window_samples.append(elapsed / 1e6)
                if len(window_samples) > window:
                    del window_samples[0]
            if index in checkpoints:
                baseline_p50 = summary(recent[control.key])["p50"]
                for key, server in servers.items():
                    stats = summary(recent[key])
                    result[key]["checkpoints"].append(
                        {
                            "calls": index,
                            "rss_mb": rss_mb(server.pid),
                            "p50_ms": stats["p50"],
                            "p99_ms": stats["p99"],
                            "httpx_p50_ms": baseline_p50,
                            "p50_over_httpx_ms": stats["p50"] - baseline_p50,
                            "window": len(recent[key]),
                        }
                    )
                log(f"  soak: {index}/{total} calls per server")
    finally:
        for server in servers.values():
            server.close()
        if control.close is not None:
            loop.run_until_complete(control.close())
        loop.close()
    for data in result.values():
        last = data["checkpoints"][-1]
        first = data["checkpoints"][0]
        data["growth_mb"] = last["rss_mb"] - data["rss_after_start_mb"]
        data["growth_after_first_checkpoint_mb"] = last["rss_mb"] - first["rss_mb"]
    return result


# -- command-line start-up -------------------------------------------------------------------


def cli_start(
    envs: dict[str, Env], runs: int, warmup: int, log: Log, before: Contender | None = None
) -> dict[str, Any]:
    """Spawn to exit of the commands a user types before any server runs, next to the
    interpreter's own start (`python -c pass`), interleaved; bytecode compiled. With `before`
    (a --baseline), its `--version` too."""
    core = envs["core"]
    commands = {
        "python -c pass": [core.python, "-c", "pass"],
        "retab-mcp --version": [str(core.bin / "retab-mcp"), "--version"],
        "retab-mcp --help": [str(core.bin / "retab-mcp"), "--help"],
        "retab-mcp config claude-desktop": [str(core.bin / "retab-mcp"), "config", "claude-desktop"],
    }
    extra_env: dict[str, dict[str, str]] = {}
    if before is not None:
        name = f"{before.label} --version"
        commands[name] = [*before.argv(core), "--version"]
        extra_env[name] = dict(before.extra_env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    env = child_env()
    for round_, order in rounds(list(commands), warmup + runs):
        for name in order:
            started = time.perf_counter_ns()
            subprocess.run(
                commands[name],
                env=env | extra_env.get(name, {}),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
                cwd=tempfile.gettempdir(),  # not the repository, whose retab_mcp would shadow a baseline's
            )
            if round_ >= warmup:
                samples[name].append((time.perf_counter_ns() - started) / 1e6)
    log(f"  command line: {runs} rounds of {len(commands)} commands")
    return {name: {"samples_ms": values, **summary(values)} for name, values in samples.items()}


# -- a task poll next to a tool call -----------------------------------------------------------


def task_poll(base_url: str, count: int, warmup: int, log: Log) -> dict[str, dict[str, float]]:
    """What a client pays per tasks/get poll of a task (--tasks) next to a get_edit call on the same
    running edit: both through the SDK's own client (2026-07-28, in memory, so no transport),
    interleaved call by call. Each is one status read from the sandbox; the poll also opens the
    sealed id (AES-GCM) and checks the caller."""
    return asyncio.run(_task_poll(base_url, count, warmup, log))


async def _task_poll(base_url: str, count: int, warmup: int, log: Log) -> dict[str, dict[str, float]]:
    from typing import Literal

    from mcp.client import Client, ClientExtension, ResultClaim
    from mcp.types import Request, RequestParams, Result

    from retab_mcp.config import Settings
    from retab_mcp.server import RetabMCPServer

    class Created(Result):
        result_type: Literal["task"]
        task_id: str

    class State(Result):
        status: str

    class Params(RequestParams):
        task_id: str

    class Get(Request[Params, Literal["tasks/get"]]):
        method: Literal["tasks/get"] = "tasks/get"

    async def never(created: Any, ctx: Any) -> Any:
        raise AssertionError("the handle is taken as it is")

    class Tasks(ClientExtension):
        identifier = "io.modelcontextprotocol/tasks"

        def claims(self) -> tuple[ResultClaim[Any], ...]:
            return (ResultClaim(result_type="task", model=Created, resolve=never),)

    settings = Settings(api_key=SANDBOX_KEY, base_url=base_url, tasks=True)
    edit = "edt_running01"  # in progress for an hour: every poll answers `working`
    samples: dict[str, list[float]] = {"get_edit": [], "tasks/get": []}
    async with Client(RetabMCPServer(settings), extensions=[Tasks()]) as client:
        created = await client.session.call_tool("get_edit", {"edit_id": edit, "wait_seconds": 5}, allow_claimed=True)
        assert isinstance(created, Created), created
        request = Get(params=Params(task_id=created.task_id))

        async def poll() -> None:
            state = await client.session.send_request(request, State)
            assert state.status == "working", state

        async def read() -> None:
            result = await client.call_tool("get_edit", {"edit_id": edit})
            assert not result.is_error, result

        steps = {"get_edit": read, "tasks/get": poll}
        for index, order in rounds(list(steps), warmup + count):
            for name in order:
                started = time.perf_counter_ns()
                await steps[name]()
                if index >= warmup:
                    samples[name].append((time.perf_counter_ns() - started) / 1e6)
    log(f"task poll: {count} rounds")
    return {name: summary(values) for name, values in samples.items()}
