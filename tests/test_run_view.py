"""The run view (MCP App) in a real headless browser: Debian's chromium driven by npm
`playwright-core`, through a host page of the project's own (tests/data/apps-host/host.html)
that plays the host's side of the Apps protocol and forwards the view's `tools/call` to a real
`retab-mcp --sandbox --transport http`. The driver (drive.mjs) reports what a person and the
host saw; this module asserts on it. Skipped only where no chromium can be had.

Screenshots go to the test's temporary directory; with RETAB_MCP_UPDATE_SCREENSHOTS=1 they
replace docs/images/run-view-*.png (the README shows one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import chromium, node_modules
from tests.support import ROOT, http_server, tool_env

HOST_DIR = ROOT / "tests" / "data" / "apps-host"
IMAGES = ROOT / "docs" / "images"


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[str]:
    """`retab-mcp --sandbox --transport http` on a free loopback port; yields its MCP URL."""
    with http_server("--sandbox") as server:
        yield server.mcp


@pytest.fixture(scope="module")
def seen(sandbox_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the driver saw, once for the module (one browser run covers every scenario)."""
    browser = chromium()
    modules = node_modules()
    shots = tmp_path_factory.mktemp("screenshots")
    done = subprocess.run(
        ["node", str(HOST_DIR / "drive.mjs"), sandbox_server, str(shots)],
        capture_output=True,
        text=True,
        timeout=240,
        env=tool_env(NODE_PATH=str(modules), CHROMIUM=browser),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    report["screenshots"] = sorted(path.name for path in shots.glob("*.png"))
    if os.environ.get("RETAB_MCP_UPDATE_SCREENSHOTS"):
        IMAGES.mkdir(parents=True, exist_ok=True)
        for path in shots.glob("*.png"):
            shutil.copyfile(path, IMAGES / path.name)
    # A figure for docs/benchmarks.md, never asserted (timing is the benchmark's business).
    print("run view first render (ms):", report["first_render_ms"])
    return report


def test_the_list_renders_every_seeded_edit_with_a_labelled_coloured_badge(seen: dict[str, Any]) -> None:
    cards = {card["id"]: card for card in seen["list"]}
    assert {"edt_running01", "edt_completed01", "edt_failed01", "edt_cancelled01", "edt_pending01"} <= set(cards)
    assert cards["edt_running01"]["badge"] == "Status: Running"
    assert cards["edt_failed01"]["badge"] == "Status: Failed"
    assert cards["edt_completed01"]["badge"] == "Status: Completed"
    # Each status its own colour, and the words say it too (not colour alone).
    colours = {cards[i]["badgeColor"] for i in ("edt_running01", "edt_failed01", "edt_completed01", "edt_cancelled01")}
    assert len(colours) == 4
    assert "w9_form.pdf" in cards["edt_running01"]["text"]
    assert "created " in cards["edt_running01"]["text"]
    assert "going for " in cards["edt_running01"]["text"]
    assert cards["edt_running01"]["label"] == "edit edt_running01, Running"


def test_cancel_calls_cancel_edit_through_the_host_and_the_badge_turns_cancelled(seen: dict[str, Any]) -> None:
    assert seen["cancel_calls"] == [{"edit_id": "edt_running01"}]
    assert seen["after_cancel"]["status"] == "cancelled"
    assert seen["after_cancel"]["badge"] == "Status: Cancelled"
    assert "Cancel" not in seen["after_cancel"]["text"].replace("Cancelled", "")


def test_a_stopping_run_is_read_on_the_wait_backoff_until_it_stops_then_no_more(seen: dict[str, Any]) -> None:
    assert seen["stopping_first_status"] == "in_progress"  # the cancel is accepted; the run stops seconds later
    assert seen["single"][0]["status"] == "cancelled"
    assert 1 <= seen["reads_until_stopped"] <= 6
    # 0.5 s, then 1 s, then 2 s...: each gap about twice the one before.
    for before, after in zip(seen["read_gaps_ms"], seen["read_gaps_ms"][1:], strict=False):
        assert after > before * 1.5
    assert seen["reads_after_stop"] == 0
    assert seen["single_note"] == ["The edit was cancelled: the run has stopped."]


def test_a_torn_down_view_reads_nothing_more(seen: dict[str, Any]) -> None:
    assert seen["calls_after_teardown"] == 0


def test_keyboard_reaches_every_button_in_order(seen: dict[str, Any]) -> None:
    buttons = seen["buttons"]
    assert len(buttons) >= 5
    assert all(label.startswith("Cancel edit ") for label in buttons)  # each says which run it stops
    assert seen["reached"][: len(buttons)] == buttons


def test_load_more_follows_next_after(seen: dict[str, Any]) -> None:
    assert seen["more_calls"] == [{"limit": 3, "after": seen["next_after"]}]
    assert len(seen["after_more"]) == 6
    assert len(set(seen["after_more"])) == 6


def test_the_filled_document_opens_through_the_host(seen: dict[str, Any]) -> None:
    assert seen["links"] == ["https://files.example.com/w9_filled.pdf"]


def test_host_theme_fonts_and_a_320px_width_are_followed(seen: dict[str, Any]) -> None:
    assert seen["font"] == "Georgia, serif"  # the host context's --font-sans
    assert seen["dark_background"] == "rgb(13, 17, 23)"
    assert seen["narrow_overflow"] == 0  # nothing wider than 320 px: no horizontal scrolling
    assert seen["screenshots"] == [
        "run-view-dark-320.png",
        "run-view-dark.png",
        "run-view-light-320.png",
        "run-view-light.png",
    ]
