"""The benchmark's machinery, run for real with tiny counts (`python -m bench --quick`).

This checks that every suite runs against real processes and that the table and the JSON have
their shape; it asserts nothing about speed (benchmarks are never timed unit tests). Contenders
whose packages are not installed (the `bench` dependency group) are skipped by the bench itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run

pytestmark = pytest.mark.slow


def test_quick_run_prints_the_tables_and_writes_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--quick", "--out", str(tmp_path)]) == 0

    table = capsys.readouterr().out
    headings = [
        "### Cold start over stdio",
        "### Per call",
        "### Memory and cost",
        "### HTTP",
        "### Offered load past saturation",
        "### Command line",
        "### Goals",
    ]
    for heading in headings:
        assert heading in table
    assert "SDK floor, interleaved with the above: a no-op `tools/call`" in table
    assert "| retab-mcp |" in table
    assert "| floor: raw httpx POST |" in table

    [written] = [p for p in tmp_path.glob("bench-quick-*.json")]
    results = json.loads(written.read_text())
    assert json.loads((tmp_path / "latest-quick.json").read_text()) == results
    assert results["meta"]["quick"] is True
    assert results["meta"]["nproc"] >= 1
    assert results["table"] == table.rstrip("\n")

    cold = results["cold_start"]
    for key in ["floor", "retab-mcp"]:
        assert cold[key]["tools_list_ms"]["p50"] >= cold[key]["initialize_ms"]["p50"] > 0
        assert cold[key]["rss_mb"]["p50"] > 0
    assert cold["retab-mcp"]["first_call_ms"]["n"] == 1

    per_call = results["per_call"]
    assert per_call["floor"]["noop"]["n"] == 20
    for key in ["httpx", "body", "retab-mcp"]:
        for tool in ["cancel_blueprint", "cancel_edit", "get_edit"]:
            stats = per_call[key][tool]
            assert stats["n"] == len(stats["samples_ms"]) == 20
            assert 0 < stats["p50"] <= stats["p99"]

    soak = results["soak"]["retab-mcp"]
    assert [point["calls"] for point in soak["checkpoints"]] == [10, 30, 60]
    assert soak["growth_mb"] == pytest.approx(soak["checkpoints"][-1]["rss_mb"] - soak["rss_after_start_mb"])

    assert per_call["retab-mcp"]["cpu_per_call_ms"] > 0

    http = results["http"]
    assert set(http["floor"]) == {"1", "4"}
    for key in ["floor", "retab-mcp", "retab-mcp-workers"]:
        for level in http[key].values():
            # A figure, or a reason: never an empty row passed off as a result.
            assert level.get("completed", 0) > 0 or level["skipped"], (key, level)

    offered = results["offered"]
    if "points" in offered:
        for point in offered["points"]:
            answered = point["goodput"] + point["refused"] + point["http_503"] + point["errors"] + point["timeouts"]
            assert answered + point["unsent"] == point["calls"]

    assert results["cli"]["retab-mcp --version"]["n"] == 2

    goals = {row["goal"]: row for row in results["goals"]}
    assert "stdio per-call p50 vs raw httpx" in goals
    assert "cold start to tools/list vs the bare SDK server" in goals
    assert "`retab-mcp --version` over `python -c pass`" in goals
    assert all(row["holds"] in (True, False, None) for row in goals.values())
