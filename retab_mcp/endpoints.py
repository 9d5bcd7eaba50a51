"""The run table: each row is one kind of Retab background run, and its tools derive from it.

Retab runs many kinds of background work (file blueprints, edits, classifications, extractions,
parses, partitions, splits, schema generations) with one lifecycle and one idempotent cancel. A
`RunKind` row says what varies between them: its noun, its id argument, its wire model, its
paths, whether Retab can list it and with which filters, the field its result is in, and the id
formats seen. Adding a kind is adding a row (plus its model and the sandbox's seed data).

Each kind gets `cancel_<kind>` (POST, stops the run), `get_<kind>` (GET, changes nothing) and,
where Retab has a list, `list_<kinds>` (GET, finds runs). The server builds each tool (name,
arguments, schemas, annotations, description) and its result envelope from its `Endpoint`; no
tool has a body of its own, and the status read that `wait_seconds` polls is the kind's read.
The table's invariants (unique names, every cancel with a read, ids the id pattern accepts,
descriptions within budget) are checked when this module is imported, so a bad row fails at once.

Descriptions are what a host's model reads of a tool (hosts forward only the name, the
description and the inputSchema), so each one says what the tool changes, when to use it and
which tool to use instead. Kinds are grouped into toolsets (one per kind, `--toolsets`); the
default serves blueprints and edits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from retab_mcp.config import ConfigError
from retab_mcp.models import (
    BackgroundRun,
    Classification,
    Edit,
    Extraction,
    FileBlueprint,
    Parse,
    Partition,
    SchemaGeneration,
    Split,
)

Action = Literal["cancel", "read", "list"]
ListFilter = Literal["status", "filename"]

# A run id as this server accepts it: one path segment of safe characters. Retab documents no id
# format, so no prefix is required (ids are never rejected for their prefix).
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
RUN_ID: Final = re.compile(RUN_ID_PATTERN)
# A description beyond this leaves no room in a 1.5 KiB card for the inputSchema.
MAX_DESCRIPTION_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class RunKind:
    """One kind of background run: what every tool acting on it shares."""

    toolset: str  # its name in --toolsets
    noun: str  # what one run is called in messages ("schema generation")
    plural: str
    id_arg: str
    run_model: type[BackgroundRun]
    id_example: str
    # Id prefixes seen on this kind's ids (Retab's docs): a 404 on one of them from another kind's
    # tool gets a hint naming this kind's tool. Empty where Retab shows none.
    id_prefixes: tuple[str, ...]
    path: str  # the run itself, with `{id}` where its id goes as one percent-encoded segment
    output: str  # what its output field holds, for the include_output argument's description
    output_field: str = "output"  # the field holding the (large) result, left out by default
    list_path: str | None = None  # where Retab lists this kind's runs, if it can
    list_filters: tuple[ListFilter, ...] = ()
    about: str = ""  # what the run does, for the cancel tool's description
    title: str = ""  # the run's name in titles and descriptions, when not its noun

    @property
    def key(self) -> str:
        """The noun as an identifier: the envelope field that holds the run, the tools' suffix."""
        return self.noun.replace(" ", "_")

    @property
    def page_key(self) -> str:
        """The plural as an identifier: the list envelope's field, the list tool's suffix."""
        return self.plural.replace(" ", "_")

    @property
    def name(self) -> str:
        return self.title or self.noun

    def tool(self, action: Action) -> str:
        if action == "list":
            return "list_" + self.page_key
        return ("cancel_" if action == "cancel" else "get_") + self.key

    @property
    def ids(self) -> str:
        """The id formats seen, for descriptions ("usually edt_... or edit_...")."""
        return "usually " + " or ".join(f"{prefix}..." for prefix in self.id_prefixes) if self.id_prefixes else ""


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


KINDS: Final[tuple[RunKind, ...]] = (
    RunKind(
        toolset="blueprints",
        noun="blueprint",
        plural="blueprints",
        id_arg="blueprint_id",
        run_model=FileBlueprint,
        id_example="fbp_a1b2c3d4e5f6",
        id_prefixes=("fbp_",),
        path="/v1/files/blueprints/{id}",
        output="the generated Document Blueprint",
        about="the analysis that builds a Document Blueprint from an uploaded file",
        title="file blueprint",
    ),
    RunKind(
        toolset="edits",
        noun="edit",
        plural="edits",
        id_arg="edit_id",
        run_model=Edit,
        id_example="edt_01G34H8J2K",
        id_prefixes=("edt_", "edit_"),
        path="/v1/edits/{id}",
        output="the filled form fields and the filled PDF",
        list_path="/v1/edits",
        list_filters=("status", "filename"),
        about="form fields filled onto a document or template PDF",
    ),
    RunKind(
        toolset="classifications",
        noun="classification",
        plural="classifications",
        id_arg="classification_id",
        run_model=Classification,
        id_example="cls_running01",
        id_prefixes=(),
        path="/v1/classifications/{id}",
        output="the chosen category and why",
        list_path="/v1/classifications",
        list_filters=("status", "filename"),
        about="a document sorted into one of given categories",
    ),
    RunKind(
        toolset="extractions",
        noun="extraction",
        plural="extractions",
        id_arg="extraction_id",
        run_model=Extraction,
        id_example="ext_running01",
        id_prefixes=(),
        path="/v1/extractions/{id}",
        output="the extracted data",
        list_path="/v1/extractions",
        list_filters=("status", "filename"),
        about="data pulled from a document along a JSON schema",
    ),
    RunKind(
        toolset="parses",
        noun="parse",
        plural="parses",
        id_arg="parse_id",
        run_model=Parse,
        id_example="prs_running01",
        id_prefixes=(),
        path="/v1/parses/{id}",
        output="the text of each page",
        list_path="/v1/parses",
        list_filters=("filename",),  # Retab cannot filter parses by status
        about="a document turned into text",
    ),
    RunKind(
        toolset="partitions",
        noun="partition",
        plural="partitions",
        id_arg="partition_id",
        run_model=Partition,
        id_example="prt_running01",
        id_prefixes=(),
        path="/v1/partitions/{id}",
        output="the chunks and their pages",
        list_path="/v1/partitions",
        list_filters=("status", "filename"),
        about="a document cut into chunks by a key",
    ),
    RunKind(
        toolset="splits",
        noun="split",
        plural="splits",
        id_arg="split_id",
        run_model=Split,
        id_example="spl_running01",
        id_prefixes=(),
        path="/v1/splits/{id}",
        output="the subdocuments and their pages",
        list_path="/v1/splits",
        list_filters=("status", "filename"),
        about="a document split into subdocuments",
    ),
    RunKind(
        toolset="schemas",
        noun="schema generation",
        plural="schema generations",
        id_arg="schema_generation_id",
        run_model=SchemaGeneration,
        id_example="sgen_running01",
        id_prefixes=(),
        path="/v1/schemas/generate/{id}",
        output="the generated JSON schema",
        output_field="json_schema",
        about="a JSON schema generated from example documents",
    ),
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
    " Returns `ok`, `status`, `terminal` (true once stopped), a `note` on what next, the {noun}; on "
    "failure `error` (`code`, `hint`)."
)
_CANCEL = (
    "given its id{ids}. Changes the run for good: a cancelled run cannot be resumed. Only to stop a "
    "run; to check on one, use {read} (read-only){find}. Safe to repeat: a finished run comes back "
    "unchanged; a cancel can race completion, so trust the returned `status`. wait_seconds waits "
    "until it has stopped."
)
_READ = (
    "given its id{ids}. Read-only: changes nothing, safe at any time. Use it to see whether a run "
    "is still going or to confirm a cancel took effect; wait_seconds waits until it stops. {find}"
    "To stop it, use {cancel}."
)


def _endpoint(kind: RunKind, action: Action) -> Endpoint:
    """The tool that does `action` on `kind`'s runs, with its words."""
    name, ids = kind.name, f" ({kind.ids})" if kind.ids else ""
    listing = kind.tool("list") if kind.list_path else None
    if action == "cancel":
        about = f" ({kind.about})" if kind.about else ""
        find = f"; to find ids, {listing}" if listing else ""
        return Endpoint(
            tool=kind.tool("cancel"),
            title=f"Cancel a Retab {name} run",
            brief=f"stops {_a(name)} run for good; only when the user wants it stopped",
            description=f"Stop a background Retab {name} run{about}, "
            + _CANCEL.format(ids=ids, read=kind.tool("read"), find=find)
            + _RETURNS.format(noun=kind.noun),
            action=action,
            kind=kind,
            path=kind.path + "/cancel",
        )
    if action == "read":
        find = f"To find ids, use {listing}. " if listing else f"Retab cannot list {kind.noun} runs: you need the id. "
        return Endpoint(
            tool=kind.tool("read"),
            title=f"Read a Retab {name} run",
            brief=f"reads {_a(name)} run's status and changes nothing (wait_seconds waits until it stops)",
            description=f"Read a Retab {name} run's current status, "
            + _READ.format(ids=ids, find=find, cancel=kind.tool("cancel"))
            + _RETURNS.format(noun=kind.noun),
            action=action,
            kind=kind,
            path=kind.path,
        )
    assert kind.list_path is not None
    example = (
        ", e.g. status=in_progress for those still running (pending and queued ones have not started)"
        if "status" in kind.list_filters
        else ""
    )
    nouns = [other.noun for other in KINDS if other.list_path is None]
    unlisted = "".join(f", nor {noun} runs" for noun in nouns[1:])
    unlisted = f"{nouns[0].capitalize()} runs cannot be listed{unlisted}. " if nouns else ""
    return Endpoint(
        tool=kind.tool("list"),
        title=f"List Retab {name} runs",
        brief=f"finds {name} runs and their ids, newest first, and changes nothing",
        description=f"List recent Retab {name} runs, newest first, as summaries (id, status, terminal, created_at, "
        f"filename). Read-only: changes nothing. Use it to find {_a(kind.noun)}'s id{example}. For the next page "
        f"pass `after` = the answer's `next_after`. Then use {kind.tool('read')} for one {kind.noun}, or "
        f"{kind.tool('cancel')} to stop one. " + unlisted + "On failure `error` (`code`, `hint`).",
        action=action,
        kind=kind,
        path=kind.list_path,
    )


def _build() -> tuple[Endpoint, ...]:
    """Every kind's tools, cancels first, then reads, then lists; raises on a broken invariant."""
    endpoints = tuple(
        _endpoint(kind, action)
        for action in ("cancel", "read", "list")
        for kind in KINDS
        if action != "list" or kind.list_path
    )
    tools = [endpoint.tool for endpoint in endpoints]
    problems = [f"{name} is not unique" for name in tools if tools.count(name) > 1]
    problems += [f"toolset {k.toolset} is not unique" for k in KINDS if [o.toolset for o in KINDS].count(k.toolset) > 1]
    for endpoint in endpoints:
        kind = endpoint.kind
        if endpoint.action == "cancel" and kind.tool("read") not in tools:
            problems.append(f"{endpoint.tool} has no read tool")
        if len(endpoint.description) > MAX_DESCRIPTION_CHARS:
            problems.append(f"{endpoint.tool}'s description is over {MAX_DESCRIPTION_CHARS} characters")
    for kind in KINDS:
        if not RUN_ID.fullmatch(kind.id_example) or not kind.id_example.startswith(kind.id_prefixes or ("",)):
            problems.append(f"{kind.noun}'s id example {kind.id_example!r} does not fit its id formats")
        if kind.output_field not in kind.run_model.model_fields or "status" not in kind.run_model.model_fields:
            problems.append(f"{kind.run_model.__name__} has no {kind.output_field!r} or no 'status'")
        if kind.list_filters and kind.list_path is None:
            problems.append(f"{kind.noun} has list filters but no list")
    if problems:
        raise AssertionError("the run table is broken: " + "; ".join(problems))
    return endpoints


ENDPOINTS: Final[tuple[Endpoint, ...]] = _build()
BY_TOOL: Final[dict[str, Endpoint]] = {endpoint.tool: endpoint for endpoint in ENDPOINTS}
BY_TOOLSET: Final[dict[str, RunKind]] = {kind.toolset: kind for kind in KINDS}
DEFAULT_TOOLSETS: Final = ("blueprints", "edits")
# The kind whose filled document the server serves as a resource.
EDIT: Final = BY_TOOLSET["edits"]


def tool_for(action: Action, kind: RunKind) -> str:
    """The tool that does `action` on `kind`'s runs (the hints and notes name it)."""
    return kind.tool(action)


def owner_tool(endpoint: Endpoint, run_id: str) -> str | None:
    """The same action on another kind whose ids look like `run_id`, for the hint on a 404."""
    for kind in KINDS:
        if kind is not endpoint.kind and kind.id_prefixes and run_id.startswith(kind.id_prefixes):
            tool = kind.tool(endpoint.action)
            return tool if tool in BY_TOOL else None
    return None


def toolsets(names: tuple[str, ...]) -> tuple[RunKind, ...]:
    """The kinds `names` select (`all` for every one); raises ConfigError naming an unknown one."""
    unknown = [name for name in names if name not in BY_TOOLSET and name != "all"]
    if unknown or not names:
        raise ConfigError(
            f"RETAB_MCP_TOOLSETS (--toolsets) names {', '.join(unknown) or 'no toolset'}"
            + (", which is not a toolset" if unknown else "")
            + f"; the toolsets are {', '.join(BY_TOOLSET)} and all"
        )
    if "all" in names:
        return KINDS
    return tuple(kind for kind in KINDS if kind.toolset in names)


def select(read_only: bool, tools: tuple[str, ...], sets: tuple[str, ...] = DEFAULT_TOOLSETS) -> tuple[Endpoint, ...]:
    """The rows to serve: those of the toolsets `sets`, then only the read-only ones, or the ones named.

    Raises ConfigError naming the setting: an unknown toolset or tool, a tool outside the
    toolsets, or a cancel tool in read-only mode.
    """
    kinds = toolsets(sets)
    unknown = [name for name in tools if name not in BY_TOOL]
    if unknown:
        raise ConfigError(
            f"RETAB_MCP_TOOLS (--tools) names {', '.join(unknown)}, which is not a tool; "
            f"the tools are {', '.join(BY_TOOL)}"
        )
    if outside := [name for name in tools if BY_TOOL[name].kind not in kinds]:
        needed = dict.fromkeys(BY_TOOL[name].kind.toolset for name in outside)
        raise ConfigError(
            f"RETAB_MCP_TOOLS (--tools) names {', '.join(outside)}, which is not in the toolsets served; "
            f"add {', '.join(needed)} to RETAB_MCP_TOOLSETS (--toolsets)"
        )
    served = tuple(endpoint for endpoint in ENDPOINTS if endpoint.kind in kinds)
    if read_only and (writes := [name for name in tools if not BY_TOOL[name].read_only]):
        raise ConfigError(
            f"RETAB_MCP_TOOLS (--tools) names {', '.join(writes)}, which changes runs, but RETAB_MCP_READ_ONLY "
            "(--read-only) is on; the read-only tools are "
            + ", ".join(endpoint.tool for endpoint in served if endpoint.read_only)
        )
    chosen = [BY_TOOL[name] for name in tools] if tools else list(served)
    return tuple(endpoint for endpoint in served if endpoint in chosen and (endpoint.read_only or not read_only))
