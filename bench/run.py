"""retab-mcp benchmarks against the alternatives. Run from the repository root:

    uv run --group bench --compile-bytecode python -m bench            # the full run, ~12 minutes
    uv run --group bench --compile-bytecode python -m bench --quick    # a smoke run, ~30 s

It prints markdown tables on stdout (progress goes to stderr) and writes the figures, every
sample included, as JSON under bench/results/. docs/benchmarks.md says what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import httpload, suites
from bench.contenders import (
    ECHO_LOOP_STDIO,
    FLOOR,
    FLOOR_LOOP_STDIO,
    GENERATED,
    RETAB_MCP,
    STDIO_CONTENDERS,
    Contender,
    EnvMode,
    available,
    baseline,
    prepare_envs,
)
from bench.harness import BENCH_DIR, READ_CALLS, ROOT, Sandbox, child_env, median

RESULTS_DIR = BENCH_DIR / "results"


@dataclass(frozen=True, slots=True)
class Profile:
    cold_rounds: int
    cold_warmup: int
    calls: int
    call_warmup: int
    soak_total: int
    soak_checkpoints: tuple[int, ...]
    soak_window: int
    http_levels: tuple[int, ...]
    http_slices: int
    http_warmup_s: float
    http_duration_s: float
    offered_multiples: tuple[float, ...]  # offered load as multiples of the measured capacity
    offered_duration_s: float
    cli_rounds: int


FULL = Profile(
    cold_rounds=40,
    cold_warmup=2,
    calls=2000,
    call_warmup=100,
    soak_total=20_000,
    soak_checkpoints=(1_000, 10_000, 20_000),
    soak_window=1_000,
    http_levels=(1, 16, 64),
    http_slices=2,
    http_warmup_s=0.5,
    http_duration_s=3.0,
    offered_multiples=(0.5, 1.0, 2.0, 4.0, 8.0),
    offered_duration_s=3.0,
    cli_rounds=20,
)
QUICK = Profile(
    cold_rounds=1,
    cold_warmup=0,
    calls=20,
    call_warmup=5,
    soak_total=60,
    soak_checkpoints=(10, 30, 60),
    soak_window=10,
    http_levels=(1, 4),
    http_slices=1,
    http_warmup_s=0.1,
    http_duration_s=0.3,
    offered_multiples=(0.5, 4.0),
    offered_duration_s=0.3,
    cli_rounds=2,
)


_BEGAN = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _BEGAN:6.1f} s] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the machinery, measures nothing")
    parser.add_argument(
        "--envs",
        choices=["isolated", "shared"],
        help="isolated: each server from an environment of its own (default of a full run); "
        "shared: all from this interpreter's (default with --quick)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON (default bench/results)")
    parser.add_argument("--no-http", action="store_true", help="leave out the HTTP figures")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run retab-mcp as of git commit REF, interleaved with the working tree (before/after)",
    )
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    mode: EnvMode = args.envs or ("shared" if args.quick else "isolated")

    began = time.time()
    meta = machine() | {"quick": args.quick, "envs": mode, "argv": ["python", "-m", "bench", *(argv or sys.argv[1:])]}
    envs = prepare_envs(mode, log)
    # The project is installed editable, so its bytecode is written on first import; write it
    # now (with PYTHONDONTWRITEBYTECODE unset) rather than in the first measured start.
    subprocess.run(
        [envs["core"].python, "-m", "compileall", "-q", str(ROOT / "retab_mcp")], env=child_env(), check=True
    )
    meta["versions"] = versions(envs)
    candidates = list(STDIO_CONTENDERS)
    if args.baseline:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", f"{args.baseline}^{{commit}}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        before = baseline(args.baseline, commit)
        candidates.insert(candidates.index(RETAB_MCP) + 1, before)
        source = dict(before.extra_env)["PYTHONPATH"]
        subprocess.run([envs["core"].python, "-m", "compileall", "-q", source], env=child_env(), check=True)
        meta["baseline"] = {"ref": args.baseline, "commit": commit}
    skipped: dict[str, str] = {}
    stdio: list[Contender] = []
    for contender in candidates:
        reason = available(contender, envs)
        if reason is None:
            stdio.append(contender)
        else:
            skipped[contender.key] = reason
            log(f"skipping {contender.label}: {reason}")
    if RETAB_MCP not in stdio or FLOOR not in stdio:
        log("retab-mcp and the floor are needed for every figure")
        return 2

    results: dict[str, Any] = {"meta": meta, "profile": dataclasses.asdict(profile), "skipped": skipped}
    log(f"command line: {profile.cli_rounds} rounds")
    earlier = next((c for c in candidates if c.key == "baseline"), None)
    results["cli"] = suites.cli_start(envs, profile.cli_rounds, 1, log, earlier)
    sandbox = Sandbox()
    try:
        log(f"sandbox at {sandbox.base_url}; cold start, {profile.cold_rounds} rounds of {len(stdio)} servers")
        results["cold_start"] = suites.cold_start(
            stdio, envs, sandbox.base_url, profile.cold_rounds, profile.cold_warmup, log
        )
        sandbox.reset()
        callers = [c for c in stdio if c.cancel_tools]
        in_process = [suites.raw_httpx(sandbox.base_url), suites.tool_body(sandbox.base_url)]
        if installed("retab"):
            in_process.append(suites.retab_sdk(sandbox.base_url))
        else:
            skipped["sdk"] = "the retab package is not installed here (uv sync --group bench)"
            log(f"skipping the Retab SDK: {skipped['sdk']}")
        noops = [FLOOR] + ([FLOOR_LOOP_STDIO, ECHO_LOOP_STDIO] if os.name == "posix" else [])
        log(f"per call: {profile.calls} rounds over {len(callers) + len(in_process) + len(noops)} contenders")
        results["per_call"] = suites.per_call(
            callers, in_process, envs, sandbox.base_url, profile.calls, profile.call_warmup, log, noops=noops
        )
        results["in_process"] = {c.key: {"label": c.label, "about": c.about, "broken": c.broken} for c in in_process}
        sandbox.reset()
        results["task_poll"] = suites.task_poll(sandbox.base_url, profile.calls, profile.call_warmup, log)
        sandbox.reset()
        log(f"soak: {profile.soak_total} calls per server")
        results["soak"] = suites.soak(
            callers, envs, sandbox.base_url, profile.soak_total, profile.soak_checkpoints, profile.soak_window, log
        )
        sandbox.reset()
        if args.no_http:
            results["http"] = {"skipped": "--no-http"}
        else:
            results["http"] = http_figures(envs, sandbox.base_url, profile, skipped, candidates)
            sandbox.reset()
            results["offered"] = offered_figures(envs, sandbox.base_url, profile, results["http"])
    finally:
        sandbox.close()

    meta["duration_s"] = time.time() - began
    meta["loadavg_end"] = os.getloadavg()
    everyone = [*candidates, FLOOR_LOOP_STDIO, ECHO_LOOP_STDIO]
    results["contenders"] = {c.key: {"label": c.label, "about": c.about} for c in everyone}
    results["goals"] = goals(results)
    table = render(results)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(began))
    name = f"bench-{'quick-' if args.quick else ''}{stamp}.json"
    payload = json.dumps(results | {"table": table}, indent=1)
    (args.out / name).write_text(payload)
    (args.out / ("latest-quick.json" if args.quick else "latest.json")).write_text(payload)
    log(f"wrote {args.out / name} ({meta['duration_s']:.0f} s)")
    return 0


def http_figures(
    envs: dict[str, Any], base_url: str, profile: Profile, skipped: dict[str, str], candidates: list[Contender]
) -> Any:
    core = envs["core"]
    contenders = [httpload.floor_http(core.python, str(BENCH_DIR / "servers" / "floor.py"))]
    help_text = subprocess.run(
        [str(core.bin / "retab-mcp"), "--help"], capture_output=True, text=True, env=child_env(), check=False
    ).stdout
    if "--transport" in help_text:
        ours = [str(core.bin / "retab-mcp")]
        contenders.append(httpload.retab_mcp_http(ours, base_url))
        if "--json-response" in help_text:
            # The same server forced to JSON answers: what allowing SSE (for calls that ask for
            # progress) costs the calls that do not, side by side in the same slices.
            contenders.append(
                httpload.retab_mcp_http(
                    ours, base_url, key=JSON_ONLY_KEY, label="retab-mcp --transport http --json-response",
                    extra=("--json-response",),
                )
            )  # fmt: skip
        if "--workers" in help_text:
            contenders.append(
                httpload.retab_mcp_http(
                    ours, base_url, key=WORKERS_KEY, label="retab-mcp --transport http --workers 2", extra=WORKERS
                )
            )
        for before in (c for c in candidates if c.key == "baseline"):
            contenders.append(
                httpload.retab_mcp_http(
                    before.argv(core),
                    base_url,
                    key="baseline",
                    label=f"{before.label}, HTTP",
                    env=dict(before.extra_env),
                )
            )
    else:
        skipped["retab-mcp-http"] = "`retab-mcp --help` lists no --transport: this build has no HTTP transport"
        log(f"skipping retab-mcp over HTTP: {skipped['retab-mcp-http']}")
    if available(GENERATED, envs) is None:
        fastmcp = envs[GENERATED.env]
        contenders.append(
            httpload.generated_http(fastmcp.python, str(BENCH_DIR / "servers" / "generated.py"), base_url)
        )
    log(f"http: concurrency {', '.join(map(str, profile.http_levels))}, {len(contenders)} servers")
    return httpload.run(
        contenders, profile.http_levels, profile.http_slices, profile.http_warmup_s, profile.http_duration_s, log
    ) | {"labels": {c.key: c.label for c in contenders}}


WORKERS_KEY = "retab-mcp-workers"
JSON_ONLY_KEY = "retab-mcp-json-only"
WORKERS = ("--workers", "2")
OFFERED_CALL_TIMEOUT_S = 5.0  # the server's call budget for the curve; the client waits 1 s more


def offered_figures(envs: dict[str, Any], base_url: str, profile: Profile, http: Any) -> Any:
    """The offered-load curve of one retab-mcp process, at multiples of its capacity (its
    calls/s at concurrency 16 in the closed-loop run)."""
    ours = http.get(RETAB_MCP.key, {})
    capacity = max((level.get("calls_per_s", 0) for level in ours.values() if isinstance(level, dict)), default=0)
    if not capacity:
        return {"skipped": "retab-mcp's HTTP capacity was not measured"}
    contender = httpload.retab_mcp_http(
        [str(envs["core"].bin / "retab-mcp")],
        base_url,
        env={"RETAB_MCP_CALL_TIMEOUT": str(OFFERED_CALL_TIMEOUT_S)},
    )
    rates = [capacity * multiple for multiple in profile.offered_multiples]
    log(f"offered load: {', '.join(f'{rate:.0f}' for rate in rates)} calls/s (capacity {capacity:.0f})")
    return httpload.offered(contender, rates, profile.offered_duration_s, OFFERED_CALL_TIMEOUT_S + 1, log) | {
        "capacity_per_s": capacity,
        "multiples": list(profile.offered_multiples),
        "call_timeout_s": OFFERED_CALL_TIMEOUT_S,
    }


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# -- what the run was on ---------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")),
        "0",
    )
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor(),
        "memory_gb": round(int(memory) * 1024 / 1e9, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "git_commit": commit.stdout.strip(),
        "git_dirty": bool(dirty.stdout.strip()),
        "loadavg_start": os.getloadavg(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def versions(envs: dict[str, Any]) -> dict[str, str]:
    """Package versions as each server's own environment has them."""
    wanted = {
        "core": ["retab-mcp", "mcp", "httpx", "pydantic"],
        "fetch": ["mcp-server-fetch", "mcp"],
        "fastmcp": ["fastmcp", "mcp", "httpx2"],
    }
    found: dict[str, str] = {}
    for env_name, packages in wanted.items():
        script = (
            "import importlib.metadata as m, json\n"
            "out = {}\n"
            f"for p in {packages!r}:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))"
        )
        done = subprocess.run([envs[env_name].python, "-c", script], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            for package, version in json.loads(done.stdout).items():
                found[f"{env_name}:{package}"] = version
    for package in ("retab", "httpx"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[f"bench:{package}"] = importlib.metadata.version(package)
    return found


# -- goals -----------------------------------------------------------------------------------


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The goals, each judged on figures of this one run (ratios, so that the machine's speed
    cancels out)."""
    out: list[dict[str, Any]] = []

    def goal(name: str, target: str, measured: str, holds: bool | None) -> None:
        out.append({"goal": name, "target": target, "measured": measured, "holds": holds})

    per_call = results["per_call"]
    raw, mine = per_call.get("httpx", {}), per_call.get(RETAB_MCP.key, {})
    ratios = {tool: mine[tool]["p50"] / raw[tool]["p50"] for tool in raw if tool in mine}
    goal(
        "stdio per-call p50 vs raw httpx",
        "<= 1.6x (each tool)",
        ", ".join(
            f"{tool} {ratio:.2f}x ({mine[tool]['p50']:.2f} vs {raw[tool]['p50']:.2f} ms)"
            for tool, ratio in ratios.items()
        ),
        bool(ratios) and max(ratios.values()) <= 1.6,
    )
    before = per_call.get("baseline", {})
    if "cpu_per_call_ms" in before and "cpu_per_call_ms" in mine:
        ratio = mine["cpu_per_call_ms"] / before["cpu_per_call_ms"]
        measured = f"{ratio:.2f}x ({mine['cpu_per_call_ms']:.3f} vs {before['cpu_per_call_ms']:.3f} ms)"
        goal("stdio server CPU per call vs the baseline", "<= 0.85x", measured, ratio <= 0.85)
    else:
        goal("stdio server CPU per call vs the baseline", "<= 0.85x", "not measured: run with --baseline REF", None)
    gen = per_call.get(GENERATED.key)
    if gen:
        shared = [tool for tool in mine if tool in gen and isinstance(gen[tool], dict)]
        goal(
            "stdio per-call p50 ahead of the generated server",
            "faster (each tool it serves)",
            ", ".join(f"{tool} {mine[tool]['p50']:.2f} vs {gen[tool]['p50']:.2f} ms" for tool in shared),
            bool(shared) and all(mine[tool]["p50"] < gen[tool]["p50"] for tool in shared),
        )

    http = results["http"] if "skipped" not in results["http"] else {}
    ours, fastmcp = _levels(http, RETAB_MCP.key), _levels(http, GENERATED.key)
    if ours:
        low, high = str(min(map(int, ours))), str(max(map(int, ours)))
        ratio = ours[high]["cpu_per_call_ms"] / ours[low]["cpu_per_call_ms"]
        goal(
            f"HTTP CPU per call at c={high} vs c={low}",
            "<= 1.15x",
            f"{ratio:.2f}x ({ours[high]['cpu_per_call_ms']:.2f} vs {ours[low]['cpu_per_call_ms']:.2f} ms)",
            ratio <= 1.15,
        )
        if high in fastmcp:
            goal(
                f"HTTP p99 at c={high} vs fastmcp's",
                "<= 1.0x",
                f"{ours[high]['p99_ms'] / fastmcp[high]['p99_ms']:.2f}x "
                f"({ours[high]['p99_ms']:.0f} vs {fastmcp[high]['p99_ms']:.0f} ms)",
                ours[high]["p99_ms"] <= fastmcp[high]["p99_ms"],
            )
            shared = [level for level in ours if level in fastmcp]
            goal(
                "HTTP calls/s vs fastmcp's",
                ">= 1.0x at every concurrency",
                ", ".join(
                    f"c={level} {ours[level]['calls_per_s'] / fastmcp[level]['calls_per_s']:.2f}x" for level in shared
                ),
                all(ours[level]["calls_per_s"] >= fastmcp[level]["calls_per_s"] for level in shared),
            )
        json_only = _levels(http, JSON_ONLY_KEY)
        if json_only:
            shared = [level for level in ours if level in json_only]
            goal(
                "HTTP calls/s with SSE allowed vs JSON only (calls without progress)",
                ">= 0.95x at every concurrency",
                ", ".join(
                    f"c={level} {ours[level]['calls_per_s'] / json_only[level]['calls_per_s']:.2f}x "
                    f"({ours[level]['calls_per_s']:.0f} vs {json_only[level]['calls_per_s']:.0f}/s)"
                    for level in shared
                ),
                bool(shared) and all(ours[n]["calls_per_s"] >= 0.95 * json_only[n]["calls_per_s"] for n in shared),
            )
        two = _levels(http, WORKERS_KEY)
        if two:
            best = max(two, key=lambda level: two[level]["calls_per_s"] / ours[level]["calls_per_s"])
            ratio = two[best]["calls_per_s"] / ours[best]["calls_per_s"]
            goal(
                "HTTP calls/s, 2 workers vs 1",
                ">= 1.6x where 2 cores are free",
                ", ".join(f"c={level} {two[level]['calls_per_s'] / ours[level]['calls_per_s']:.2f}x" for level in two)
                + f" ({results['meta']['nproc']} CPUs, shared with the load generator and the sandbox)",
                ratio >= 1.6,
            )
    else:
        goal("HTTP figures", "measured", "not measured", None)

    cli = results.get("cli", {})
    if cli:
        over = cli["retab-mcp --version"]["p50"] - cli["python -c pass"]["p50"]
        goal(
            "`retab-mcp --version` over `python -c pass`",
            "<= 60 ms",
            f"+{over:.0f} ms ({cli['retab-mcp --version']['p50']:.0f} vs {cli['python -c pass']['p50']:.0f} ms)",
            over <= 60,
        )
    cold = results["cold_start"]
    ours_ms, floor_ms = cold[RETAB_MCP.key]["tools_list_ms"]["p50"], cold[FLOOR.key]["tools_list_ms"]["p50"]
    paired = paired_ratio(cold, RETAB_MCP.key, FLOOR.key)
    goal(
        "cold start to tools/list vs the bare SDK server",
        "<= 1.05x",
        f"{ours_ms / floor_ms:.3f}x ({ours_ms:.0f} vs {floor_ms:.0f} ms; paired {paired:.3f}x)",
        ours_ms / floor_ms <= 1.05,
    )
    ours_rss, floor_rss = cold[RETAB_MCP.key]["rss_mb"]["p50"], cold[FLOOR.key]["rss_mb"]["p50"]
    goal(
        "idle RSS vs the bare SDK server",
        "<= 1.05x",
        f"{ours_rss / floor_rss:.3f}x ({ours_rss:.1f} vs {floor_rss:.1f} MB)",
        ours_rss / floor_rss <= 1.05,
    )
    soak = results["soak"].get(RETAB_MCP.key)
    first, last = soak["checkpoints"][0], soak["checkpoints"][-1]
    goal(
        f"RSS growth from call {first['calls']:,} to {last['calls']:,}",
        "< 0.5 MB",
        f"{soak['growth_after_first_checkpoint_mb']:+.2f} MB ({first['rss_mb']:.2f} -> {last['rss_mb']:.2f})",
        soak["growth_after_first_checkpoint_mb"] < 0.5,
    )
    return out


def _levels(http: dict[str, Any], key: str) -> dict[str, Any]:
    """A server's measured concurrency levels (those with figures), by level."""
    levels = http.get(key, {})
    if "failed" in levels:
        return {}
    return {level: data for level, data in levels.items() if "calls_per_s" in data}


def paired_ratio(cold: dict[str, Any], key: str, floor: str) -> float:
    """Median of round-by-round ratios: each pair ran minutes apart at most, so drift cancels."""
    mine, base = cold[key]["samples"]["tools_list_ms"], cold[floor]["samples"]["tools_list_ms"]
    return median([a / b for a, b in zip(mine, base, strict=True)])


# -- the tables ------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    meta, profile = results["meta"], results["profile"]
    labels = {key: value["label"] for key, value in results["contenders"].items()}
    labels |= {key: value["label"] for key, value in results.get("in_process", {}).items()}
    lines = [
        f"## retab-mcp benchmarks{' (quick smoke run: counts too small to mean anything)' if meta['quick'] else ''}",
        "",
        f"{meta['nproc']} CPUs ({meta['cpu_model']}), Python {meta['python']}, {meta['platform']}; "
        f"servers from {meta['envs']} environments; commit {meta['git_commit'][:10]}"
        f"{' (uncommitted changes)' if meta['git_dirty'] else ''}; {meta['duration_s']:.0f} s; "
        f"load average {meta['loadavg_start'][0]:.2f} at start, {meta['loadavg_end'][0]:.2f} at end.",
        "",
    ]

    cold = results["cold_start"]
    floor = cold[FLOOR.key]["tools_list_ms"]["p50"]
    n = cold[FLOOR.key]["tools_list_ms"]["n"]
    lines += [
        f"### Cold start over stdio: spawn -> initialize -> tools/list ({n} interleaved runs each)",
        "",
        "| server | initialize answered p50 | tools/list answered p50 | p99 | IQR | vs floor | paired "
        "| RSS after start | first call after tools/list p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, data in cold.items():
        first = data.get("first_call_ms")
        first_cell = f"{first['p50']:.1f} ms" if first else "-"
        lines.append(
            f"| {labels[key]} | {data['initialize_ms']['p50']:.0f} ms | {data['tools_list_ms']['p50']:.0f} ms "
            f"| {data['tools_list_ms']['p99']:.0f} ms | {data['tools_list_ms']['iqr']:.0f} ms "
            f"| {data['tools_list_ms']['p50'] / floor:.3f}x | {paired_ratio(cold, key, FLOOR.key):.3f}x "
            f"| {data['rss_mb']['p50']:.1f} MB | {first_cell} |"
        )

    per_call = results["per_call"]
    raw = per_call["httpx"]
    tools = list(raw)
    n = raw[tools[0]]["n"]
    header = " | ".join(f"{tool} p50 | p99 | p50 over raw httpx" for tool in tools)
    lines += [
        "",
        f"### Per call: {n} calls of each tool per contender, interleaved one call at a time",
        "",
        f"({', '.join(READ_CALLS)}: a read, made only by the contenders that serve it, over a GET "
        "with include_output=false for raw httpx; `-` where a contender has no such tool.)",
        "",
        f"| contender | {header} |",
        "|---|" + "---:|" * (3 * len(tools)),
    ]
    broken = {key: value["broken"] for key, value in results.get("in_process", {}).items()}
    # A contender whose every call failed has no samples at all; it still gets its row.
    rows = {**per_call, **{key: {} for key in broken if key not in per_call}}
    for key, data in rows.items():
        if "noop" in data:
            continue
        cells = []
        for tool in tools:
            if tool in data:
                over = data[tool]["p50"] - raw[tool]["p50"]
                over_cell = "-" if key == "httpx" else f"{over:+.2f} ms ({data[tool]['p50'] / raw[tool]['p50']:.2f}x)"
                cells.append(f"{data[tool]['p50']:.2f} ms | {data[tool]['p99']:.2f} ms | {over_cell}")
            elif tool in broken.get(key, {}) or tool not in READ_CALLS:
                cells.append(f"fails: {broken.get(key, {}).get(tool, 'not measured')[:60]} | - | -")
            else:
                cells.append("- | - | -")
        lines.append(f"| {labels[key]} | {' | '.join(cells)} |")
    if "body" in per_call and RETAB_MCP.key in per_call:
        parts = []
        for tool in tools:
            if tool not in per_call["body"] or tool not in per_call[RETAB_MCP.key]:
                continue
            total = per_call[RETAB_MCP.key][tool]["p50"] - raw[tool]["p50"]
            own = per_call["body"][tool]["p50"] - raw[tool]["p50"]
            parts.append(
                f"{tool} {total:+.2f} ms = {own:+.2f} ms of its own work and {total - own:+.2f} ms of MCP over stdio"
            )
        lines += [
            "",
            "Where retab-mcp's p50 over raw httpx goes (differences of the p50s above): " + "; ".join(parts) + ".",
        ]
    cpu = {key: data["cpu_per_call_ms"] for key, data in per_call.items() if "cpu_per_call_ms" in data}
    if cpu:
        lines += [
            "",
            "Server CPU time per call over the timed rounds (user + system, from /proc): "
            + ", ".join(f"{labels[key]} {value:.3f} ms" for key, value in cpu.items())
            + ".",
        ]
    if FLOOR.key in per_call:
        noop = per_call[FLOOR.key]["noop"]
        lines += [
            "",
            f"SDK floor, interleaved with the above: a no-op `tools/call` to the bare MCPServer over stdio (no "
            f"upstream) answers in p50 {noop['p50']:.2f} ms, p99 {noop['p99']:.2f} ms.",
        ]
    if FLOOR_LOOP_STDIO.key in per_call:
        noop = per_call[FLOOR_LOOP_STDIO.key]["noop"]
        lines += [
            f"The same server with stdin/stdout served by the event loop instead of the SDK's worker threads "
            f"(an experiment, bench/servers/floor_loopio.py): p50 {noop['p50']:.2f} ms, p99 {noop['p99']:.2f} ms.",
        ]
    if ECHO_LOOP_STDIO.key in per_call:
        noop = per_call[ECHO_LOOP_STDIO.key]["noop"]
        lines += [
            f"No SDK at all, a JSON-RPC echo over event-loop stdio (bench/servers/echo_loopio.py): the pipes and "
            f"the two processes' wake-ups alone: p50 {noop['p50']:.2f} ms, p99 {noop['p99']:.2f} ms.",
        ]

    polls = results.get("task_poll")
    if polls:
        read, poll = polls["get_edit"], polls["tasks/get"]
        lines += [
            "",
            f"### A tasks/get poll next to a get_edit call ({poll['n']} of each, interleaved; the SDK's client in "
            "memory, --tasks)",
            "",
            "| request | p50 | p99 | IQR | p50 over get_edit |",
            "|---|---:|---:|---:|---:|",
            f"| get_edit (status read) | {read['p50']:.2f} ms | {read['p99']:.2f} ms | {read['iqr']:.2f} ms | 1.00x |",
            f"| tasks/get (working) | {poll['p50']:.2f} ms | {poll['p99']:.2f} ms | {poll['iqr']:.2f} ms "
            f"| {poll['p50'] / read['p50']:.2f}x |",
        ]

    lines += [
        "",
        "### Memory and cost as work grows (servers interleaved call by call, the two tools alternating)",
        "",
        "| server | calls | RSS | p50 | p99 | p50 over raw httpx (control) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, data in results["soak"].items():
        lines.append(f"| {labels[key]} | after start | {data['rss_after_start_mb']:.1f} MB | - | - | - |")
        for point in data["checkpoints"]:
            lines.append(
                f"| {labels[key]} | {point['calls']:,} | {point['rss_mb']:.1f} MB | {point['p50_ms']:.2f} ms "
                f"| {point['p99_ms']:.2f} ms | {point['p50_over_httpx_ms']:+.2f} ms |"
            )
        lines.append(
            f"| {labels[key]} | growth | {data['growth_mb']:+.2f} MB "
            f"({data['growth_after_first_checkpoint_mb']:+.2f} after the first checkpoint) | | | |"
        )
    latency_note = f"latency over the last {profile['soak_window']:,} calls before each checkpoint"
    control = "a raw httpx POST interleaved with the servers' calls as a control for the machine's drift"
    lines += ["", f"({latency_note}; {control}; MB = 10^6 bytes)"]

    http = results["http"]
    lines += ["", "### HTTP, stateless JSON mode: server, sandbox and load generator as separate processes", ""]
    if "skipped" in http:
        lines.append(f"Skipped: {http['skipped']}.")
    else:
        fastmcp = _levels(http, GENERATED.key)
        lines += [
            "| server | concurrency | calls/s | vs fastmcp | p50 | p99 | server CPU per call | failed calls |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, levels in http.items():
            if key == "labels":
                continue
            label = http["labels"][key]
            if "failed" in levels:
                lines.append(f"| {label} | - | failed: {levels['failed'][:100]} | | | | | |")
                continue
            for level, data in levels.items():
                if "skipped" in data:
                    lines.append(f"| {label} | {level} | skipped: {data['skipped']} | | | | | |")
                    continue
                versus = (
                    f"{data['calls_per_s'] / fastmcp[level]['calls_per_s']:.2f}x"
                    if level in fastmcp and key != GENERATED.key
                    else "-"
                )
                lines.append(
                    f"| {label} | {level} | {data['calls_per_s']:.0f} | {versus} | {data['p50_ms']:.1f} ms "
                    f"| {data['p99_ms']:.1f} ms | {data['cpu_per_call_ms']:.2f} ms | {data['failed_calls']} |"
                )
        lines += [
            "",
            "(server CPU per call: the CPU time of the server's processes over each slice, warm-up included, "
            "divided by the calls answered in it)",
        ]
        if "retab-mcp-http" in results["skipped"]:
            lines += ["", f"retab-mcp not measured: {results['skipped']['retab-mcp-http']}."]

    offered = results.get("offered", {})
    lines += ["", "### Offered load past saturation: one retab-mcp process, calls sent at a fixed rate", ""]
    if "skipped" in offered or "failed" in offered:
        lines.append(f"Not measured: {offered.get('skipped') or offered.get('failed')}.")
    elif offered:
        lines += [
            f"(capacity: {offered['capacity_per_s']:.0f} calls/s, its best in the closed-loop run; call budget "
            f"{offered['call_timeout_s']:g} s, the client waits {offered['timeout_s']:g} s; latency of good answers "
            "counted from when the call was due)",
            "",
            "| offered calls/s | sent calls/s | goodput calls/s | good p50 | good p99 | refused (typed, retryable) "
            "| HTTP 503 | other errors | timeouts | not sent (client at its connection cap) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for point in offered["points"]:
            good = point["goodput"]
            p50 = f"{point['p50_ms']:.0f} ms" if good else "-"
            p99 = f"{point['p99_ms']:.0f} ms" if good else "-"
            lines.append(
                f"| {point['offered_per_s']:.0f} | {point['sent_per_s']:.0f} | {point['goodput_per_s']:.0f} | {p50} "
                f"| {p99} | {point['refused']} | {point['http_503']} | {point['errors']} | {point['timeouts']} "
                f"| {point['unsent']} |"
            )

    cli = results.get("cli", {})
    if cli:
        base = cli["python -c pass"]["p50"]
        lines += [
            "",
            f"### Command line: spawn to exit ({cli['python -c pass']['n']} interleaved runs each)",
            "",
            "| command | p50 | p99 | over `python -c pass` |",
            "|---|---:|---:|---:|",
        ]
        for name, data in cli.items():
            over = "-" if name == "python -c pass" else f"+{data['p50'] - base:.0f} ms"
            lines.append(f"| `{name}` | {data['p50']:.0f} ms | {data['p99']:.0f} ms | {over} |")

    lines += ["", "### Goals", "", "| goal | target | measured | holds |", "|---|---|---|---|"]
    for row in results["goals"]:
        holds = {True: "yes", False: "**no**", None: "not measured"}[row["holds"]]
        lines.append(f"| {row['goal']} | {row['target']} | {row['measured']} | {holds} |")
    if results["skipped"]:
        lines += ["", "Not run: " + "; ".join(f"{key}: {reason}" for key, reason in results["skipped"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
