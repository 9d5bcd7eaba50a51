"""retab-mcp benchmarks against the alternatives (issue 5). Run from the repository root:

    uv run --group bench --compile-bytecode python -m bench            # the full run, ~6 minutes
    uv run --group bench --compile-bytecode python -m bench --quick    # a smoke run, seconds

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
    FETCH,
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
    http_warmup_s=0.05,
    http_duration_s=0.25,
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
        noops = [FLOOR] + ([FLOOR_LOOP_STDIO] if os.name == "posix" else [])
        log(f"per call: {profile.calls} rounds over {len(callers) + len(in_process) + len(noops)} contenders")
        results["per_call"] = suites.per_call(
            callers, in_process, envs, sandbox.base_url, profile.calls, profile.call_warmup, log, noops=noops
        )
        results["in_process"] = {c.key: {"label": c.label, "about": c.about, "broken": c.broken} for c in in_process}
        sandbox.reset()
        log(f"soak: {profile.soak_total} calls per server")
        results["soak"] = suites.soak(
            callers, envs, sandbox.base_url, profile.soak_total, profile.soak_checkpoints, profile.soak_window, log
        )
        sandbox.reset()
        if args.no_http:
            results["http"] = {"skipped": "--no-http"}
        else:
            results["http"] = http_figures(envs, sandbox.base_url, profile, skipped, mode)
    finally:
        sandbox.close()

    meta["duration_s"] = time.time() - began
    meta["loadavg_end"] = os.getloadavg()
    results["contenders"] = {c.key: {"label": c.label, "about": c.about} for c in candidates}
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


def http_figures(envs: dict[str, Any], base_url: str, profile: Profile, skipped: dict[str, str], mode: str) -> Any:
    core = envs["core"]
    contenders = [httpload.floor_http(core.python, str(BENCH_DIR / "servers" / "floor.py"))]
    help_text = subprocess.run(
        [str(core.bin / "retab-mcp"), "--help"], capture_output=True, text=True, env=child_env(), check=False
    ).stdout
    if "--transport" in help_text:
        contenders.append(httpload.retab_mcp_http(str(core.bin), base_url))
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
    out: list[dict[str, Any]] = []

    def goal(name: str, target: str, measured: str, holds: bool | None) -> None:
        out.append({"goal": name, "target": target, "measured": measured, "holds": holds})

    cold = results["cold_start"]

    def start_ms(key: str) -> float | None:
        return cold[key]["tools_list_ms"]["p50"] if key in cold else None

    ours, floor = start_ms(RETAB_MCP.key), start_ms(FLOOR.key)
    assert ours is not None
    assert floor is not None
    ratio = ours / floor
    paired = paired_ratio(cold, RETAB_MCP.key, FLOOR.key)
    measured = f"{ratio:.3f}x ({ours:.0f} vs {floor:.0f} ms; paired {paired:.3f}x)"
    goal("cold start vs floor (issue 5)", "<= 1.10x", measured, ratio <= 1.10)
    goal("cold start vs floor (core issue)", "<= 1.15x", measured, ratio <= 1.15)
    for other in (FETCH, GENERATED):
        theirs = start_ms(other.key)
        goal(
            f"cold start ahead of {other.label}",
            "faster",
            "not measured" if theirs is None else f"{ours:.0f} vs {theirs:.0f} ms",
            None if theirs is None else ours < theirs,
        )

    per_call = results["per_call"]
    raw, mine, gen = per_call.get("httpx", {}), per_call.get(RETAB_MCP.key, {}), per_call.get(GENERATED.key)
    overheads = {tool: mine[tool]["p50"] - raw[tool]["p50"] for tool in mine if tool in raw}
    goal(
        "per-call p50 over raw httpx",
        "<= 1 ms (each tool)",
        ", ".join(f"{tool} +{value:.2f} ms" for tool, value in overheads.items()),
        bool(overheads) and max(overheads.values()) <= 1.0,
    )
    if gen:
        shared = [tool for tool in mine if tool in gen]
        goal(
            "per-call p50 ahead of the generated server",
            "faster (each tool it serves)",
            ", ".join(f"{tool} {mine[tool]['p50']:.2f} vs {gen[tool]['p50']:.2f} ms" for tool in shared),
            bool(shared) and all(mine[tool]["p50"] < gen[tool]["p50"] for tool in shared),
        )
    else:
        goal("per-call p50 ahead of the generated server", "faster (each tool it serves)", "not measured", None)

    http = results["http"].get(RETAB_MCP.key) if isinstance(results["http"], dict) else None
    if http and "failed" in http:
        goal("HTTP at concurrency 16", ">= 300 calls/s, p99 < 250 ms", f"failed: {http['failed'][:100]}", False)
    elif http and "16" in http:
        at16 = http["16"]
        goal(
            "HTTP at concurrency 16",
            ">= 300 calls/s, p99 < 250 ms",
            f"{at16['calls_per_s']:.0f} calls/s, p99 {at16['p99_ms']:.0f} ms, {at16['failed_calls']} failed calls",
            at16["calls_per_s"] >= 300 and at16["p99_ms"] < 250 and at16["failed_calls"] == 0,
        )
    else:
        reason = results["skipped"].get("retab-mcp-http", "this run has no concurrency 16")
        goal("HTTP at concurrency 16", ">= 300 calls/s, p99 < 250 ms", f"not measured: {reason}", None)

    soak = results["soak"].get(RETAB_MCP.key)
    calls = soak["checkpoints"][-1]["calls"]
    goal(
        f"RSS growth over {calls:,} calls",
        "< 5 MB",
        f"{soak['growth_mb']:+.2f} MB ({soak['rss_after_start_mb']:.1f} -> {soak['checkpoints'][-1]['rss_mb']:.1f})",
        soak["growth_mb"] < 5.0,
    )
    return out


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
        lines += ["| server | concurrency | calls/s | p50 | p99 | failed calls |", "|---|---:|---:|---:|---:|---:|"]
        for key, levels in http.items():
            if key == "labels":
                continue
            if "failed" in levels:
                lines.append(f"| {http['labels'][key]} | - | failed: {levels['failed'][:100]} | | | |")
                continue
            for level, data in levels.items():
                lines.append(
                    f"| {http['labels'][key]} | {level} | {data['calls_per_s']:.0f} | {data['p50_ms']:.1f} ms "
                    f"| {data['p99_ms']:.1f} ms | {data['failed_calls']} |"
                )
        if "retab-mcp-http" in results["skipped"]:
            lines += ["", f"retab-mcp not measured: {results['skipped']['retab-mcp-http']}."]

    lines += ["", "### Goals", "", "| goal | target | measured | holds |", "|---|---|---|---|"]
    for row in results["goals"]:
        holds = {True: "yes", False: "**no**", None: "not measured"}[row["holds"]]
        lines.append(f"| {row['goal']} | {row['target']} | {row['measured']} | {holds} |")
    if results["skipped"]:
        lines += ["", "Not run: " + "; ".join(f"{key}: {reason}" for key, reason in results["skipped"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
