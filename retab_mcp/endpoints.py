"""The endpoint table: each row is one tool. Adding a Retab endpoint is adding a row.

A row says which kind of run it acts on (a file blueprint or an edit) and what it does to it:
`cancel` (POST, stops the run), `read` (GET, changes nothing) or `list` (GET, finds runs). The
server builds each tool (name, arguments, schemas, annotations, description) and its result
envelope from the row; no tool has a body of its own, and the status read that `wait_seconds`
polls is the `read` path of the row's kind.

Descriptions are what a host's model reads of a tool (hosts forward only the name, the
description and the inputSchema), so each one says what the tool changes, when to use it and
which tool to use instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from retab_mcp.config import ConfigError
from retab_mcp.models import Edit, FileBlueprint

Action = Literal["cancel", "read", "list"]


@dataclass(frozen=True, slots=True)
class RunKind:
    """One kind of background run, and what every tool acting on it shares."""

    noun: str  # what the run is called in messages, and the envelope field that holds it
    id_arg: str
    run_model: type[FileBlueprint] | type[Edit]
    id_example: str
    # Id prefixes seen on this kind's ids: a 404 on one of them from the other kind's tool gets a hint.
    id_prefixes: tuple[str, ...]
    path: str  # the run itself, with `{id}` where its id goes as one percent-encoded segment
    output: str  # what its `output` holds, for the include_output argument's description


BLUEPRINT: Final = RunKind(
    noun="blueprint",
    id_arg="blueprint_id",
    run_model=FileBlueprint,
    id_example="fbp_a1b2c3d4e5f6",
    id_prefixes=("fbp_",),
    path="/v1/files/blueprints/{id}",
    output="the generated Document Blueprint",
)
EDIT: Final = RunKind(
    noun="edit",
    id_arg="edit_id",
    run_model=Edit,
    id_example="edt_01G34H8J2K",
    id_prefixes=("edt_", "edit_"),
    path="/v1/edits/{id}",
    output="the filled form fields and the filled PDF",
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    tool: str
    title: str
    brief: str  # one clause for the server's instructions, which hosts put in the system prompt
    description: str
    action: Action
    kind: RunKind
    path: str  # with `{id}` for the actions on one run

    @property
    def method(self) -> Literal["GET", "POST"]:
        return "POST" if self.action == "cancel" else "GET"

    @property
    def read_only(self) -> bool:
        return self.action != "cancel"


_RETURNS = (
    " Returns `ok`, `status`, `terminal` (true once the run has stopped), a `note` saying what next, "
    "the {noun}, and on failure `error` with a `code` and a `hint`."
)
_CANCEL = (
    "given its id ({ids}). Changes the run for good: a cancelled run cannot be resumed. Only to stop a "
    "run: to check on one, use {read} (read-only){find}. Safe to repeat: a finished run comes back "
    "unchanged, and a cancel can race completion, so the returned `status` is the truth. wait_seconds "
    "waits until the run has actually stopped."
)
_READ = (
    "given its id ({ids}). Read-only: changes nothing, safe at any time. Use it to see whether a run "
    "is still going or to confirm a cancel took effect; wait_seconds waits until the run stops. {find}"
    "To stop the run, use {cancel}."
)

ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        tool="cancel_blueprint",
        title="Cancel a Retab file blueprint run",
        brief="stops a file blueprint run for good; only when the user wants it stopped",
        description=(
            "Stop a background Retab file blueprint run (the analysis that builds a Document Blueprint "
            "from an uploaded file), "
            + _CANCEL.format(ids="usually fbp_...", read="get_blueprint", find="")
            + _RETURNS.format(noun="blueprint")
        ),
        action="cancel",
        kind=BLUEPRINT,
        path=BLUEPRINT.path + "/cancel",
    ),
    Endpoint(
        tool="cancel_edit",
        title="Cancel a Retab edit run",
        brief="stops an edit run for good; only when the user wants it stopped",
        description=(
            "Stop a background Retab edit run (form fields filled onto a document or template PDF), "
            + _CANCEL.format(ids="edt_... or edit_...", read="get_edit", find="; to find ids, list_edits")
            + _RETURNS.format(noun="edit")
        ),
        action="cancel",
        kind=EDIT,
        path=EDIT.path + "/cancel",
    ),
    Endpoint(
        tool="get_blueprint",
        title="Read a Retab file blueprint run",
        brief="reads a file blueprint run's status and changes nothing (wait_seconds waits until it stops)",
        description=(
            "Read a Retab file blueprint run's current status, "
            + _READ.format(
                ids="usually fbp_...",
                find="Retab cannot list blueprint runs: you need the id. ",
                cancel="cancel_blueprint",
            )
            + _RETURNS.format(noun="blueprint")
        ),
        action="read",
        kind=BLUEPRINT,
        path=BLUEPRINT.path,
    ),
    Endpoint(
        tool="get_edit",
        title="Read a Retab edit run",
        brief="reads an edit run's status and changes nothing (wait_seconds waits until it stops)",
        description=(
            "Read a Retab edit run's current status, "
            + _READ.format(ids="edt_... or edit_...", find="To find ids, use list_edits. ", cancel="cancel_edit")
            + _RETURNS.format(noun="edit")
        ),
        action="read",
        kind=EDIT,
        path=EDIT.path,
    ),
    Endpoint(
        tool="list_edits",
        title="List Retab edit runs",
        brief="finds edit runs and their ids, newest first, and changes nothing",
        description=(
            "List recent Retab edit runs, newest first, as summaries (id, status, terminal, created_at, "
            "filename). Read-only: changes nothing. Use it to find an edit's id, for example "
            "status=in_progress for the edits still running (pending and queued ones have not started). "
            "For the next page pass `after` = the answer's `next_after`. Then use get_edit for one edit, "
            "or cancel_edit to stop one. Blueprint runs cannot be listed. On failure, `error` has a `code` "
            "and a `hint`."
        ),
        action="list",
        kind=EDIT,
        path="/v1/edits",
    ),
)

BY_TOOL: Final[dict[str, Endpoint]] = {endpoint.tool: endpoint for endpoint in ENDPOINTS}
READ_ONLY_TOOLS: Final = tuple(endpoint.tool for endpoint in ENDPOINTS if endpoint.read_only)


def tool_for(action: Action, kind: RunKind) -> str:
    """The tool that does `action` on `kind`'s runs (the hints name it)."""
    for endpoint in ENDPOINTS:
        if endpoint.action == action and endpoint.kind is kind:
            return endpoint.tool
    raise LookupError(f"no {action} tool for {kind.noun} runs")


def sibling_tool(endpoint: Endpoint) -> str | None:
    """The same action on the other kind of run, for the hint on a 404 whose id looks like its."""
    for other in ENDPOINTS:
        if other.action == endpoint.action and other.kind is not endpoint.kind:
            return other.tool
    return None


def select(read_only: bool, tools: tuple[str, ...]) -> tuple[Endpoint, ...]:
    """The rows to serve: all of them, only the read-only ones, or the ones named.

    Raises ConfigError naming the setting: an unknown tool, or a cancel tool in read-only mode.
    """
    unknown = [name for name in tools if name not in BY_TOOL]
    if unknown:
        raise ConfigError(
            f"RETAB_MCP_TOOLS (--tools) names {', '.join(unknown)}, which is not a tool; "
            f"the tools are {', '.join(BY_TOOL)}"
        )
    if read_only and (writes := [name for name in tools if not BY_TOOL[name].read_only]):
        raise ConfigError(
            f"RETAB_MCP_TOOLS (--tools) names {', '.join(writes)}, which changes runs, but RETAB_MCP_READ_ONLY "
            "(--read-only) is on; the read-only tools are " + ", ".join(READ_ONLY_TOOLS)
        )
    chosen = [BY_TOOL[name] for name in tools] if tools else list(ENDPOINTS)
    return tuple(endpoint for endpoint in ENDPOINTS if endpoint in chosen and (endpoint.read_only or not read_only))
