# The retab-mcp server: tools that stop, read, find and wait for background Retab runs (every
# kind of the run table, endpoints.py), and tell the agent what state each run is in.
#
# Design decisions, and why:
# - Tools are rows of the endpoint table (endpoints.py); what a call does is actions.py, the
#   same code for every row. Each row becomes a plain async function whose signature (the id
#   argument under the row's name, `include_output`, `wait_seconds`; the list's filters) is
#   generated, so the SDK derives the inputSchema from type hints and `Field`s as for a
#   hand-written tool, without two copies of the same body.
# - Every outcome is one envelope (results.py), errors included, as `structuredContent` that
#   validates against the tool's `outputSchema` and as the same JSON in text. Bad arguments are
#   answered with that envelope too: the SDK's own argument validation answers with bare text,
#   so `RetabMCPServer.call_tool` validates first, with the same model the SDK would use, and
#   refuses arguments the inputSchema does not declare (`additionalProperties: false`). It then
#   calls the tool itself: the SDK's path would validate the arguments a second time, and the
#   envelope built for the outputSchema once more.
# - An unknown tool name, or a tool this process does not serve (--read-only, --tools), is a
#   malformed request, answered with JSON-RPC -32602 as the spec says (MCPServer itself answers
#   it with an isError result).
# - Honest annotations: cancels are destructive (hosts ask the user first); reads and lists
#   are read-only (hosts may run them without asking), which is why every hint about a run's
#   state points at a read tool.
# - A file too large for a result (an edit's filled PDF) is a resource, read on demand: admitted
#   like a call (by its own small gate, which drains with the calls'), served with the MIME type
#   its data URL declares, and a base64 payload passed on as it came rather than decoded. A
#   document Retab gives as an https link is never fetched: the answer says where it is.
# - One `RetabClient` (one httpx connection pool) per process, opened in the lifespan, which
#   runs once per process on every transport. `--sandbox` starts the embedded Retab sandbox
#   there too; its code is imported only then.
# - Whose key: the server's RETAB_API_KEY, or, over HTTP without one, the key the caller sent
#   with that very request (`ctx.headers`), so concurrent callers' keys never meet (http.py).
# - Every tool carries the run view (ui.py), an MCP App that hosts which render Apps show a
#   person; results stay the same for every other host.
# - With --tasks, the MCP tasks extension (tasks.py) wraps tools/call and serves tasks/*; its
#   module is imported only then.
# - Nothing here writes to stdout: it is the protocol channel. Logs go to stderr (logs.py).

from __future__ import annotations

import binascii
import codecs
import gc
import inspect
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    BlobResourceContents,
    CallToolResult,
    InputRequiredResult,
    ReadResourceRequestParams,
    ReadResourceResult,
    ToolAnnotations,
)
from pydantic import Field, ValidationError

from retab_mcp import _sdk, ui
from retab_mcp._version import __version__
from retab_mcp.actions import Progress, Upstream, max_wait_seconds, perform
from retab_mcp.admission import Gate, cut_short, handed_slot
from retab_mcp.client import RetabClient, run_path
from retab_mcp.config import KEY_FIX, Settings
from retab_mcp.endpoints import BY_TOOL, EDIT, ENDPOINTS, RUN_ID_PATTERN, Endpoint, select
from retab_mcp.errors import CallFailed, ErrorCode, bounded_line, quotable_id, run_subject
from retab_mcp.hints import hint_for
from retab_mcp.keys import call_key, caller_key
from retab_mcp.models import KnownStatus
from retab_mcp.redaction import Redactor
from retab_mcp.results import (
    CURSOR_PATTERN,
    FILLED_DOCUMENT_URI,
    Waited,
    failed,
    invalid_arguments,
    parse_data_url,
    redacted,
    result_model,
    succeeded,
)

logger = logging.getLogger(__name__)
# One JSON line per tool call at INFO (tool, id, outcome, upstream status, requests, latency): the
# operational record of an HTTP deployment. Never the key.
call_log = logging.getLogger("retab_mcp.calls")

# Cancel changes the run (not read-only), cannot be undone (destructive), is safe to repeat
# (idempotent) and talks to an outside service (open world). Reads and lists change nothing.
CANCEL_ANNOTATIONS: Final = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True
)
READ_ANNOTATIONS: Final = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
# A filled PDF is typically a few MB; far beyond that is not a document to hand to a client.
MAX_RESOURCE_BYTES: Final = 20 * 1024 * 1024
FILLED_DOCUMENT: Final = re.compile(re.escape(FILLED_DOCUMENT_URI).replace(r"\{edit_id\}", "(?P<edit_id>[^/]+)"))


def instructions(endpoints: tuple[Endpoint, ...]) -> str:
    """What hosts put in the system prompt: the kinds of run and the tools served, and when to use each."""
    kinds = []
    for kind in dict.fromkeys(endpoint.kind for endpoint in endpoints):
        ids = " or ".join(f"{prefix}..." for prefix in kind.id_prefixes)
        kinds.append((f"{kind.title}s" if kind.title else kind.plural) + (f" (ids like {ids})" if ids else ""))
    served = kinds[0] if len(kinds) < 2 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
    tools = "; ".join(f"{endpoint.tool} {endpoint.brief}" for endpoint in endpoints)
    return (
        f"Tools for background Retab runs: {served}. {tools}. Every answer has `ok`, the run's `status`, whether it "
        "is `terminal`, a `note` on what it means, and on failure an `error` whose `hint` says what to do next."
    )


@dataclass(slots=True)
class AppState:
    """What the lifespan opens once per process and every tool call uses."""

    settings: Settings
    client: RetabClient
    gate: Gate = field(init=False)

    reads: Gate = field(init=False)

    def __post_init__(self) -> None:
        self.gate = Gate(self.settings.max_in_flight, self.settings.call_timeout)
        self.reads = self.gate.companion(self.settings.max_resource_reads, "resource reads in flight")

    async def accepts(self, key: str) -> bool | None:
        """Whether Retab accepts `key`, by the cheapest authenticated read there is (one edit,
        status only), admitted like a tool call; None when that could not be told (no slot,
        Retab unreachable or failing)."""
        try:
            slot = await self.gate.admit(anyio.current_time())
        except CallFailed:  # overloaded or shutting down
            return None
        try:
            with self.gate.holding(slot):
                await self.client.request(
                    "GET", "/v1/edits", params={"limit": "1"}, api_key=key, verb="list", subject="edits",
                    deadline=self.client.clock() + min(5.0, self.settings.call_timeout),
                )  # fmt: skip
        except CallFailed as failure:
            return False if failure.code in (ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN) else None
        return True


@asynccontextmanager
async def lifespan(server: MCPServer[AppState]) -> AsyncIterator[AppState]:
    assert isinstance(server, RetabMCPServer)
    settings = server.config
    async with AsyncExitStack() as stack:
        if settings.sandbox:
            from retab_mcp.sandbox import SANDBOX_API_KEY, serve_in_thread

            # Never the user's real key: the sandbox records what it is sent.
            sandbox = stack.enter_context(serve_in_thread())
            settings = replace(settings, base_url=sandbox.base_url, api_key=SANDBOX_API_KEY)
        elif settings.key_problem and settings.transport == "stdio":
            logger.warning("%s. Until then every call answers configuration_error.", settings.key_problem)
        elif not settings.api_key and settings.transport == "stdio":
            logger.warning(
                "RETAB_API_KEY is not set: the tools are listed, but every call will answer "
                "configuration_error until it is set."
            )
        client = await stack.enter_async_context(RetabClient(settings))
        server.state = AppState(settings, client)
        _settle_garbage_collector()
        try:
            yield server.state
        finally:
            server.state = None


# Young-generation collections every this many allocations (Python's default: 700). A call
# allocates thousands of short-lived objects; at the default, collections ran several times per
# call, and their older generations kept re-scanning the SDK's start-up objects.
GC_YOUNG_THRESHOLD: Final = 20_000


def _settle_garbage_collector() -> None:
    """Once start-up is done: what exists now lives as long as the process, so the collector is
    told to stop scanning it (gc.freeze), and young collections run less often. No collection
    first: it took 50 ms here, before the first answer, to free little."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class RetabMCPServer(MCPServer[AppState]):
    """MCPServer whose tool calls always answer with the tool's envelope (see the top comment).

    Serves the rows `settings.read_only` and `settings.tools` select; raises ConfigError when
    they name no such tool.
    """

    def __init__(self, settings: Settings) -> None:
        self.config = settings
        # Set while the lifespan runs: the upstream client is open. What /readyz reports.
        self.state: AppState | None = None
        endpoints = select(settings.read_only, settings.tools, settings.toolsets)
        max_wait = max_wait_seconds(settings)
        envelopes = json.loads(OUTPUT_SCHEMAS_FILE.read_text())
        self._tools = {
            endpoint.tool: (_build_tool(endpoint, max_wait, envelopes[endpoint.tool]), endpoint)
            for endpoint in endpoints
        }
        extensions = []
        if settings.tasks:
            from retab_mcp.tasks import Tasks  # only then: it loads the cryptography it seals with

            extensions.append(Tasks(settings, self.served))
        super().__init__(
            "retab-mcp",
            title="Retab",
            version=__version__,
            instructions=instructions(endpoints),
            website_url="https://docs.retab.com",
            tools=[tool for tool, _ in self._tools.values()],
            lifespan=lifespan,
            log_level=settings.log_level,
            extensions=[ui.apps(endpoints), *extensions],
        )
        _sdk.lowlevel(self).middleware.append(ui.advertise_apps)
        if any(endpoint.kind is EDIT for endpoint in endpoints):
            self.resource(
                FILLED_DOCUMENT_URI,
                name="filled_document",
                title="Filled PDF of a Retab edit",
                description="The filled PDF of a completed edit run, fetched from Retab when read (up to "
                f"{MAX_RESOURCE_BYTES // (1024 * 1024)} MiB). Edit results link here when the PDF is too "
                "large to return inline.",
                mime_type="application/pdf",
            )(filled_document)
            # Read here rather than through the template: the SDK's path would decode the document
            # and encode it again (copies of tens of MB), and serve every one as application/pdf.
            _sdk.lowlevel(self).add_request_handler("resources/read", ReadResourceRequestParams, self._read)

    async def _read(
        self, ctx: ServerRequestContext[AppState], params: ReadResourceRequestParams
    ) -> ReadResourceResult | InputRequiredResult:
        match = FILLED_DOCUMENT.fullmatch(str(params.uri))
        if match is None:  # not ours: the SDK's answer (unknown resource)
            return await _sdk.sdk_read_resource(self, ctx, params)
        context: Context[AppState, Any] = Context(request_context=ctx, mcp_server=self)
        try:
            blob, mime_type = await filled_document(match["edit_id"], context)
        except ResourceError as err:
            logger.info("Resource %r failed: %r", str(params.uri), str(err))
            raise MCPError(code=INTERNAL_ERROR, message=str(err), data={"uri": str(params.uri)}) from None
        return ReadResourceResult(contents=[BlobResourceContents(uri=params.uri, blob=blob, mime_type=mime_type)])

    def served(self, name: object) -> Endpoint | None:
        """The row of the tool `name` if this process serves it."""
        entry = self._tools.get(name) if isinstance(name, str) else None
        return entry[1] if entry else None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        entry = self._tools.get(name)
        if entry is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}")
        tool, endpoint = entry
        unknown = sorted(set(arguments) - set(tool.parameters["properties"]))
        try:
            validated = tool.fn_metadata.validate_arguments(arguments)
            invalid = None
        except ValidationError as exc:
            invalid = exc
        if invalid or unknown:
            run_id = arguments.get(endpoint.kind.id_arg) if endpoint.action != "list" else None
            failure = invalid_arguments(endpoint, invalid, unknown)
            return failed(endpoint, run_id if isinstance(run_id, str) else "", failure)
        if context is None:  # a direct call, outside any request: the SDK builds the context
            return await super().call_tool(name, arguments, context)
        result: CallToolResult = await tool.fn(context, **validated)
        return result


async def call(
    endpoint: Endpoint, arguments: Mapping[str, Any], state: AppState, ctx: Context[AppState, Any] | None
) -> CallToolResult:
    """The body of every tool: admission, the action inside its hard stop, the envelope for
    whatever came back (redacted), one log line."""
    started = time.perf_counter()
    # The budget counts from here: waiting for admission is part of the call.
    began, deadline = anyio.current_time(), state.client.deadline()
    run_id = arguments.get(endpoint.kind.id_arg) if endpoint.action != "list" else None
    secrets = [state.settings.api_key, state.settings.auth_token]
    redactor: Redactor | None = None
    upstream = None
    try:
        api_key = api_key_for(state.settings, ctx.headers if ctx else None)
        redactor = Redactor([*secrets, api_key])
        # Over stateless HTTP the front already admitted the call and hands its slot over.
        async with state.gate.admitted(began, handed_slot()) as slot:
            upstream = Upstream(state.client, api_key, deadline, idle=slot.idle)
            progress = _redacting(ctx.report_progress, redactor) if ctx else _no_progress
            with slot.scope:
                result = await perform(endpoint, arguments, upstream, progress)
            if slot.scope.cancelled_caught:
                result = _cut_short(endpoint, arguments, upstream, cut_short(slot), time.perf_counter() - started)
    except CallFailed as failure:
        result = failed(endpoint, run_id or "", failure)
    except Exception:
        # A bug here must still answer the call with an envelope; the traceback stays on stderr.
        logger.exception("%s(%r) failed unexpectedly", endpoint.tool, run_id if quotable_id(run_id) else "?")
        bug = CallFailed(ErrorCode.INTERNAL_ERROR, "retab-mcp failed while handling the call.")
        result = failed(endpoint, run_id or "", bug)
    # The key the call used (once it had one) is among the redactor's secrets.
    result = redacted(result, redactor or Redactor(secrets))
    log_call(endpoint, run_id, result, upstream, started)
    return result


def log_call(
    endpoint: Endpoint, run_id: object, result: CallToolResult, upstream: Upstream | None, started: float
) -> None:
    """The call's one JSON line at INFO (`call_log`), wherever it was answered."""
    if not call_log.isEnabledFor(logging.INFO):
        return
    envelope = result.structured_content or {}
    error = envelope.get("error") or {}
    call_log.info(
        json.dumps(
            {
                "event": "tool_call",
                "tool": endpoint.tool,
                # A caller's id is written as sent only when it may be (a valid id, nothing
                # shaped like a key): the log is no place for whatever 64 KiB a caller sends.
                "id": run_id if run_id is None or quotable_id(run_id) else "(malformed)",
                "outcome": error.get("code", "ok"),
                "status": envelope.get("status"),
                "upstream_status": upstream.http_status if upstream else None,
                "attempts": upstream.requests if upstream else 0,
                "waited_s": envelope.get("waited_seconds"),
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        )
    )


def _cut_short(
    endpoint: Endpoint, arguments: Mapping[str, Any], upstream: Upstream, why: CallFailed, seconds: float
) -> CallToolResult:
    """The answer of a call its hard stop ended: the run as last seen, if Retab had answered with
    one (a wait cut short), else the failure."""
    if endpoint.action == "list" or upstream.last_run is None:
        return failed(endpoint, arguments.get(endpoint.kind.id_arg) or "", why)
    waited = Waited(seconds, interrupted_by=why)
    try:
        return succeeded(endpoint, upstream.last_run, include_output=arguments["include_output"], waited=waited)
    except CallFailed as failure:
        return failed(endpoint, arguments[endpoint.kind.id_arg], failure)


# A filled document given as a link: http(s), bounded, no blanks (it is quoted to the agent).
LINK: Final = re.compile(r"https?://[!-~]{1,2000}")


async def filled_document(edit_id: str, ctx: Context[AppState, Any]) -> tuple[str, str]:
    """`retab://edits/{edit_id}/filled_document`: the edit read whole; its filled document as
    base64 (a resource's blob) and its declared MIME type.

    Admitted like a call, by the reads' own gate, and inside its hard stop (the drain reaches it).
    A base64 data URL is checked and passed on as it came, never decoded into a copy."""
    state: AppState = ctx.request_context.lifespan_context
    read = BY_TOOL["get_edit"]  # whose hints fit a failed read of an edit
    # Every message below goes back to the caller: the id as run_subject allows, all of it redacted.
    redactor = Redactor([state.settings.api_key, state.settings.auth_token, caller_key(ctx.headers)])
    edit = run_subject("edit", edit_id)
    began, deadline = anyio.current_time(), state.client.deadline()
    try:
        api_key = api_key_for(state.settings, ctx.headers)
        async with state.reads.admitted(began) as slot:
            upstream = Upstream(state.client, api_key, deadline)
            with slot.scope:
                body = await upstream.send(
                    "GET", run_path(EDIT.path, edit_id), {"include_output": "true"}, verb="read", subject=edit
                )
            if slot.scope.cancelled_caught:
                raise cut_short(slot)
            return _document(edit, body, redactor)
    except CallFailed as failure:
        raise ResourceError(redactor.text(f"{failure.message} {hint_for(failure, read, edit_id)}")) from None


def _document(edit: str, body: Any, redactor: Redactor) -> tuple[str, str]:
    """The filled document of a read edit (`edit`: how messages name it): (base64, MIME type), or
    ResourceError with a redacted message."""
    output = body.get("output") if isinstance(body, dict) else None
    document = output.get("filled_document") if isinstance(output, dict) else None
    url = document.get("url") if isinstance(document, dict) else None
    if isinstance(url, str) and LINK.fullmatch(url):
        # Retab's own SDK examples carry the document as a link: passed on as it is, never fetched.
        raise ResourceError(
            redactor.text(
                f"Retab gives the filled document of {edit} as a link, not inline: {url} . This server "
                "does not fetch links; the edit read with include_output=true carries it too."
            )
        )
    data = parse_data_url(url) if isinstance(url, str) else None
    if data is None:
        status = bounded_line(repr(body.get("status") if isinstance(body, dict) else None), 66)
        raise ResourceError(redactor.text(f"The {edit} has no filled document to read (its status is {status})."))
    del body, output, document, url  # the payload is all that is kept from here on
    too_large = redactor.text(f"The filled document of {edit} is over {MAX_RESOURCE_BYTES} bytes.")
    # Percent-encoding only shrinks: its undecoded size is a bound checked before decoding too.
    if data.size > MAX_RESOURCE_BYTES:
        raise ResourceError(too_large)
    mime_type = data.mime_type or "application/pdf"
    try:
        if data.base64:
            blob = data.payload()
            binascii.a2b_base64(blob, strict_mode=True)  # checked; what is sent is the text itself
            return blob, mime_type
        decoded = percent_decoded(data.payload())
    except (binascii.Error, ValueError, UnicodeError):
        raise ResourceError(
            redactor.text(f"Retab sent the filled document of {edit} in a form that cannot be read.")
        ) from None
    if len(decoded) > MAX_RESOURCE_BYTES:
        raise ResourceError(too_large)
    return binascii.b2a_base64(decoded, newline=False).decode("ascii"), mime_type


def percent_decoded(text: str) -> bytes:
    """`text` with its `%XX` escapes decoded (other characters as UTF-8), in C: each `%` becomes
    `\\x` for the unicode-escape codec's byte-level sibling. ValueError for a malformed escape."""
    raw = text.encode("utf-8").replace(b"\\", b"\\\\").replace(b"%", b"\\x")
    decoded: bytes = codecs.escape_decode(raw)[0]
    return decoded


def _redacting(report: Progress, redactor: Redactor) -> Progress:
    """`report` with each message bounded and redacted, as results are: it quotes Retab's status."""

    async def redacted_report(progress: float, total: float | None, message: str | None) -> None:
        await report(progress, total, redactor.text(bounded_line(message, 200)) if message else message)

    return redacted_report


async def _no_progress(progress: float, total: float | None, message: str | None) -> None:
    """Where there is no request context (a direct call), there is no one to report to."""


NO_CALLER_KEY_HINT: Final = (
    "Ask the user to add their Retab API key to this server's entry in the MCP client's configuration, as "
    "the HTTP header `Authorization: Bearer <key>` (or `Api-Key: <key>`), then reconnect; docs/clients.md "
    "of retab-mcp shows where each client takes it. Retrying will not help."
)


def api_key_for(settings: Settings, headers: Mapping[str, str] | None) -> str:
    """The key a call sends to Retab (keys.call_key), or `CallFailed` saying how to give one."""
    key = call_key(settings.api_key, headers)
    if not key and settings.transport == "http":
        raise CallFailed(
            ErrorCode.CONFIGURATION_ERROR,
            "No Retab API key came with this request: this server uses each caller's own key. Nothing was sent.",
            hint=NO_CALLER_KEY_HINT,
        )
    if not key and settings.key_problem:
        raise CallFailed(
            ErrorCode.CONFIGURATION_ERROR,
            f"{settings.key_problem}. Nothing was sent.",
            hint="Ask the user to " + KEY_FIX + "; retrying will not help.",
        )
    if not key:
        raise CallFailed(
            ErrorCode.CONFIGURATION_ERROR,
            "No Retab API key: RETAB_API_KEY is not set in this server's environment. Nothing was sent.",
        )
    return key


def _build_tool(endpoint: Endpoint, max_wait: int, output_schema: dict[str, Any]) -> Tool:
    """The MCP tool for one table row: a function with the row's arguments, and its schemas."""

    async def tool(ctx: Context[AppState, Any], **arguments: Any) -> CallToolResult:
        return await call(endpoint, arguments, ctx.request_context.lifespan_context, ctx)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(name, keyword, annotation=annotation, default=default)
        for name, (annotation, default) in _arguments(endpoint, max_wait).items()
    ]
    tool.__name__ = endpoint.tool
    tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*parameters, inspect.Parameter("ctx", keyword, annotation=Context)], return_annotation=CallToolResult
    )
    built = Tool.from_function(
        tool,
        name=endpoint.tool,
        title=endpoint.title,
        description=endpoint.description,
        context_kwarg="ctx",
        annotations=READ_ANNOTATIONS if endpoint.read_only else CANCEL_ANNOTATIONS,
        structured_output=False,
        meta=ui.TOOL_META,  # the run view (ui.py), for hosts that render MCP Apps
    )
    # Read live by tools/list; call_tool returns the envelope as built, without validating it again.
    built.fn_metadata.output_schema = output_schema
    # What a host's model reads of a tool is its name, description and inputSchema: no property
    # titles (they repeat the names), and no arguments beyond those listed.
    schema = built.parameters
    schema.pop("title", None)
    for prop in schema["properties"].values():
        prop.pop("title", None)
    schema["additionalProperties"] = False
    # Stated even when empty (the lists): some clients and linters read a missing list as unknown.
    schema.setdefault("required", [])
    return built


# Every tool's outputSchema, as the SDK derives it from the tool's envelope model
# (derived_output_schemas), kept in a file: deriving them was over half the time of building the
# tools, between the client's spawn and its first answer. scripts/sync_manifests rewrites the file
# from the models, and tests/test_manifests fails when it is out of date.
OUTPUT_SCHEMAS_FILE: Final = Path(__file__).with_name("output_schemas.json")


def derived_output_schemas() -> dict[str, dict[str, Any]]:
    """Each tool's outputSchema derived from its envelope model (pydantic's JSON schema)."""
    schemas = {}
    for endpoint in ENDPOINTS:

        async def envelope() -> CallToolResult:
            raise NotImplementedError

        envelope.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            return_annotation=Annotated[CallToolResult, result_model(endpoint)]
        )
        schema = Tool.from_function(envelope, name=endpoint.tool).output_schema
        assert schema is not None
        schemas[endpoint.tool] = schema
    return schemas


_REQUIRED: Final = inspect.Parameter.empty


def _arguments(endpoint: Endpoint, max_wait: int) -> dict[str, tuple[Any, Any]]:
    """Each argument of the row's tool: (annotation with its schema, default)."""
    kind = endpoint.kind
    if endpoint.action == "list":
        the_file = "the file with this exact name"
        filters: dict[str, tuple[Any, Any]] = {
            "status": (
                Annotated[KnownStatus | None, Field(description=f"Only {kind.plural} with this status.")],
                None,
            ),
            "limit": (Annotated[int, Field(description=f"How many {kind.plural} to return.", ge=1, le=100)], 10),
            "after": (
                Annotated[
                    str | None,
                    Field(
                        description="The `next_after` of the previous page, to get the next one.",
                        pattern=CURSOR_PATTERN,
                    ),
                ],
                None,
            ),
            "filename": (
                Annotated[
                    str | None,
                    Field(description=f"Only {kind.plural} of {the_file}.", min_length=1, max_length=255),
                ],
                None,
            ),
        }
        # Paging always; the filters Retab has for this kind.
        return {name: value for name, value in filters.items() if name in ("limit", "after", *kind.list_filters)}
    verb = "cancel" if endpoint.action == "cancel" else "read"
    return {
        kind.id_arg: (
            Annotated[
                str,
                Field(
                    description=f"Id of the {kind.noun} run to {verb}, exactly as Retab returned it "
                    f"(for example {kind.id_example}).",
                    pattern=RUN_ID_PATTERN,
                    min_length=1,
                    max_length=128,
                ),
            ],
            _REQUIRED,
        ),
        "include_output": (
            Annotated[
                bool,
                Field(
                    strict=True,  # true or false only: not "yes", 1 or "false" read as true
                    description=f"Also return the run's `{kind.output_field}` ({kind.output}). Off by default: it "
                    "can be megabytes; files over 64 KiB become a descriptor even then.",
                ),
            ],
            False,
        ),
        "wait_seconds": (
            Annotated[
                float,
                Field(
                    description="Wait up to this many seconds for the run to stop, answering as soon as "
                    "it does (0: at once; over the maximum: refused).",
                    ge=0,
                    le=max_wait,
                ),
            ],
            0,
        ),
    }
