"""Every kind of run in the table, through the SDK's in-memory Client against the sandbox: the
properties hold for each row, so a new kind is tested by adding its row, with no new tool list.

Each kind's cancel sends exactly `POST <path>/cancel`, its read `GET <path>?include_output=false`,
its list the filters Retab has for it; every answer is the tool's envelope (validated against the
published outputSchema by the `Agent`), with the same notes, hints, waits and bounds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from retab_mcp.config import ConfigError, Settings
from retab_mcp.endpoints import DEFAULT_TOOLSETS, ENDPOINTS, KINDS, RunKind, select
from retab_mcp.sandbox import SEEDED_RUNS, Fault, RunningSandbox
from retab_mcp.sandbox.state import KIND_SEEDS, STATUSES
from retab_mcp.server import RetabMCPServer, instructions
from tests.support import Agent, connect

pytestmark = pytest.mark.anyio

LISTED = [kind for kind in KINDS if kind.list_path]
# What a host's model reads of a tool (name, description, inputSchema), per tool and for all of them.
CARD_LIMIT = 1536
ALL_CARDS_LIMIT = 28 * 1024


def seeded(kind: RunKind, status: str) -> str:
    """The first seeded run of `kind` that starts in `status`."""
    return next(run_id for key, run_id, start in SEEDED_RUNS if key == kind.key and start == status)


def sent(sandbox: RunningSandbox) -> list[tuple[str, str, str]]:
    return [(r.method, r.path, r.query) for r in sandbox.sandbox.recorded()]


def at(kind: RunKind, run_id: str) -> str:
    return kind.path.replace("{id}", run_id)


@pytest.fixture
async def every(settings: Settings) -> AsyncIterator[Agent]:
    """An agent connected to a server of every toolset."""
    async for agent in connect(RetabMCPServer(replace(settings, toolsets=("all",))), "auto"):
        yield agent


def test_every_kind_has_its_tools_and_the_sandbox_seeds_it_in_every_status() -> None:
    tools = [endpoint.tool for endpoint in ENDPOINTS]
    for kind in KINDS:
        assert {f"cancel_{kind.key}", f"get_{kind.key}"} <= set(tools)
        assert (kind.tool("list") in tools) is bool(kind.list_path)
        assert {start for key, _, start in SEEDED_RUNS if key == kind.key} == set(STATUSES), kind.noun
    # The sandbox seeds exactly the kinds of the table (blueprints and edits by hand).
    assert set(KIND_SEEDS) | {"blueprint", "edit"} == {kind.key for kind in KINDS}


async def test_all_toolsets_serve_the_whole_table_and_the_default_only_blueprints_and_edits(
    settings: Settings, every: Agent
) -> None:
    assert list(every.schemas) == [endpoint.tool for endpoint in ENDPOINTS]
    async for default in connect(RetabMCPServer(settings), "auto"):
        names = list(default.schemas)
    assert names == [endpoint.tool for endpoint in ENDPOINTS if endpoint.kind.toolset in DEFAULT_TOOLSETS]
    assert names == ["cancel_blueprint", "cancel_edit", "get_blueprint", "get_edit", "list_edits"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.toolset)
async def test_toolsets_compose_with_read_only_and_tools_and_the_instructions_name_only_what_is_served(
    kind: RunKind,
) -> None:
    served = select(True, (), (kind.toolset,))
    assert [endpoint.tool for endpoint in served] == [
        kind.tool("read"),
        *([kind.tool("list")] if kind.list_path else []),
    ]
    text = instructions(served)
    assert all(endpoint.tool in text for endpoint in served)
    assert not [endpoint.tool for endpoint in ENDPOINTS if endpoint not in served and endpoint.tool in text]
    assert select(False, (kind.tool("cancel"),), (kind.toolset,))[0].tool == kind.tool("cancel")
    with pytest.raises(ConfigError, match=kind.toolset):
        select(False, (kind.tool("cancel"),), tuple(other.toolset for other in KINDS if other is not kind))


async def test_every_card_fits_and_all_of_them_together_too(every: Agent) -> None:
    tools = (await every.client.list_tools()).tools
    cards = [{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in tools]
    sizes = {card["name"]: len(json.dumps(card, separators=(",", ":")).encode()) for card in cards}
    assert max(sizes.values()) < CARD_LIMIT, sizes
    assert sum(sizes.values()) < ALL_CARDS_LIMIT, sum(sizes.values())
    for tool in tools:
        assert tool.input_schema["additionalProperties"] is False
        assert "Retab" in (tool.description or "")
        changes = "Changes the run for good" if tool.name.startswith("cancel_") else "Read-only: changes nothing"
        assert changes in (tool.description or ""), tool.name


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.toolset)
async def test_cancel_sends_one_post_and_answers_the_run(every: Agent, sandbox: RunningSandbox, kind: RunKind) -> None:
    run_id = seeded(kind, "in_progress")
    _, envelope = await every.call(kind.tool("cancel"), {kind.id_arg: run_id})
    assert sent(sandbox) == [("POST", at(kind, run_id) + "/cancel", "")]
    assert (envelope["ok"], envelope["status"], envelope["terminal"]) == (True, "cancelled", True)
    assert envelope[kind.key]["id"] == run_id
    assert f"The {kind.noun} is cancelled" in envelope["note"]
    # Idempotent: a finished run comes back unchanged.
    _, again = await every.call(kind.tool("cancel"), {kind.id_arg: seeded(kind, "completed")})
    assert (again["status"], again["output_omitted"], again[kind.key][kind.output_field]) == ("completed", True, None)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.toolset)
async def test_read_sends_the_status_only_get_and_waits_by_polling_it(
    every: Agent, sandbox: RunningSandbox, kind: RunKind
) -> None:
    run_id = seeded(kind, "in_progress")
    _, envelope = await every.call(kind.tool("read"), {kind.id_arg: run_id, "wait_seconds": 0.7})
    status_only = ("GET", at(kind, run_id), "include_output=false")
    assert sent(sandbox)[0] == status_only
    polls = sent(sandbox)[1:]
    assert polls
    assert set(polls) == {status_only}  # the wait polled the same read
    assert (envelope["status"], envelope["terminal"]) == ("in_progress", False)
    assert envelope["waited_seconds"] > 0
    assert kind.tool("cancel") in envelope["note"]
    _, whole = await every.call(kind.tool("read"), {kind.id_arg: seeded(kind, "completed"), "include_output": True})
    assert whole[kind.key][kind.output_field]
    assert whole["output_omitted"] is False


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.toolset)
async def test_a_missing_run_gets_the_hint_of_its_own_kind(every: Agent, kind: RunKind) -> None:
    _, envelope = await every.call(kind.tool("cancel"), {kind.id_arg: "nope_01"})
    assert envelope["error"]["code"] == "not_found"
    assert envelope[kind.key] is None
    for other in KINDS:
        if other is not kind and other.id_prefixes:
            _, hinted = await every.call(kind.tool("read"), {kind.id_arg: other.id_example})
            assert other.tool("read") in hinted["error"]["hint"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.toolset)
async def test_a_huge_result_is_bounded_like_an_output(every: Agent, sandbox: RunningSandbox, kind: RunKind) -> None:
    run_id = seeded(kind, "completed")
    body = sandbox.sandbox.read(kind.key, run_id) or {}
    output, blob = body[kind.output_field], {"blob": "x" * 3_000_000}
    huge = json.dumps({**body, kind.output_field: {**output, **blob} if isinstance(output, dict) else [*output, blob]})
    sandbox.sandbox.add_fault(Fault(status=200, match=at(kind, run_id), body=huge, times=2))
    result, envelope = await every.call(kind.tool("read"), {kind.id_arg: run_id})
    assert (envelope[kind.key][kind.output_field], envelope["output_omitted"]) == (None, True)
    assert len(json.dumps(result.model_dump(mode="json"))) < 64 * 1024
    result, whole = await every.call(kind.tool("read"), {kind.id_arg: run_id, "include_output": True})
    assert whole["truncated"] is True
    assert len(json.dumps(result.model_dump(mode="json"))) < 2 * 1024 * 1024 + 64 * 1024


@pytest.mark.parametrize("kind", LISTED, ids=lambda kind: kind.toolset)
async def test_lists_send_the_filters_retab_has_and_walk_with_the_cursor(
    every: Agent, sandbox: RunningSandbox, kind: RunKind
) -> None:
    schema = every.schemas  # outputSchemas; the inputSchema is read from tools/list
    tool = {t.name: t for t in (await every.client.list_tools()).tools}[kind.tool("list")]
    assert set(tool.input_schema["properties"]) == {"limit", "after", *kind.list_filters}
    assert kind.page_key in schema[kind.tool("list")]["properties"]
    total = sum(1 for key, _, _ in SEEDED_RUNS if key == kind.key)
    seen: list[str] = []
    arguments: dict[str, Any] = {"limit": 4}
    for _ in range(10):
        _, page = await every.call(kind.tool("list"), arguments)
        seen += [item["id"] for item in page[kind.page_key]]
        if page["next_after"] is None:
            break
        arguments = {"limit": 4, "after": page["next_after"]}
    assert len(seen) == len(set(seen)) == total
    assert sent(sandbox)[1] == ("GET", kind.list_path, f"limit=4&order=desc&after={seen[3]}")
    if "status" in kind.list_filters:
        sandbox.sandbox.reset()
        _, page = await every.call(kind.tool("list"), {"status": "completed"})
        assert sent(sandbox) == [("GET", kind.list_path, "limit=10&order=desc&status=completed")]
        # (Retab's SDK example payload has no status at all: unknown, not another status.)
        assert {item["status"] for item in page[kind.page_key]} - {None} == {"completed"}
    else:
        _, refused = await every.call(kind.tool("list"), {"status": "completed"})
        assert refused["error"]["code"] == "invalid_argument"
