"""What a tool call answers: one envelope per tool, for success and failure alike.

Why one envelope: the spec leaves open whether an `isError` result may carry `structuredContent`
that does not match `outputSchema`. The Inspector and the TypeScript SDK validate it anyway, and
several agent SDKs drop `structuredContent` on errors. A single schema that both outcomes
satisfy, with the same JSON repeated as text, reads the same in every client.

Runs (cancel, read) and pages of runs (list) each have their envelope shape.

Size: a run's result (`output`, a schema generation's `json_schema`) can be megabytes: an edit's
holds its filled PDF as a data URL. It is left out unless asked for, and any data URL over
64 KiB is replaced by a short descriptor even then. A result still too large is trimmed in steps
that end, by construction, in a record of the declared scalar fields only, with short strings
(`_trim`); a page of runs drops runs from its end. So a default result stays under 64 KiB
whatever the API sends, and `truncated` says when anything was cut.

Every result is redacted (redaction.py) before it leaves, and its JSON is strict: no NaN or
Infinity, which most clients cannot parse.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pydantic_core
from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent
from pydantic import BaseModel, Field, ValidationError, create_model

from retab_mcp._json import Location, map_json, path_text
from retab_mcp.endpoints import EDIT, RUN_ID, Endpoint, RunKind, tool_for
from retab_mcp.errors import CallFailed, ErrorCode, bounded_line
from retab_mcp.hints import hint_for
from retab_mcp.models import STATUS_DESCRIPTION, KnownStatus, is_terminal
from retab_mcp.redaction import Redactor, may_hold_key_shape

# Where an edit's filled document is served on demand when it is too large to return inline.
FILLED_DOCUMENT_URI: Final = "retab://edits/{edit_id}/filled_document"
# A list cursor as this server passes it back: printable ASCII, no spaces (a query value).
CURSOR_PATTERN: Final = r"^[!-~]{1,512}$"
CURSOR: Final = re.compile(CURSOR_PATTERN)
MAX_LIST_ITEMS: Final = 100
DATA_URL_LIMIT: Final = 64 * 1024
# The envelope is sent twice (structured and as text), so half the result limit each.
DEFAULT_JSON_BUDGET: Final = 30 * 1024
FULL_OUTPUT_JSON_BUDGET: Final = 1024 * 1024
# The string lengths the trimming steps cut to: first generous, then short.
TRIMMED_STRING_CHARS: Final = 1024
SHORT_STRING_CHARS: Final = 120
MAX_OMITTED_DATA: Final = 10


class ErrorInfo(BaseModel):
    """Why the call did not return the run, and what to do next."""

    code: ErrorCode = Field(description="What went wrong, as a stable machine-readable code.")
    message: str = Field(description="What went wrong, written by this server.")
    retryable: bool = Field(description="True when calling again unchanged may succeed.")
    retry_after_seconds: float | None = Field(description="Seconds to wait before calling again, when known.")
    http_status: int | None = Field(description="HTTP status of Retab's answer, when there was one.")
    request_id: str | None = Field(description="Retab's x-request-id, for support requests.")
    hint: str | None = Field(description="The next step for the agent.")


class OmittedData(BaseModel):
    """A data URL too large to return, replaced in the run by a short descriptor string."""

    path: str = Field(description="Where the data URL was, as a dotted path inside the run.")
    filename: str | None = Field(description="The file's name, when the run gives one.")
    mime_type: str | None = Field(description="MIME type from the data URL.")
    size_bytes: int = Field(description="Size of the decoded content in bytes.")
    resource_uri: str | None = Field(
        description="An MCP resource that serves the file on demand (resources/read), when there is one."
    )


class RunResult(BaseModel):
    """The fields every run tool's envelope has; each tool adds its run under its own name."""

    ok: bool = Field(description="True when Retab answered with the run; false on any error (see `error`).")
    status: KnownStatus | str | None = Field(
        description="The run's status when the call answered; null when the call failed. " + STATUS_DESCRIPTION
    )
    terminal: bool | None = Field(
        description="True when the run has stopped (completed, failed or cancelled), false while it "
        "is still going, null when unknown (the call failed, or the status is new to this server)."
    )
    note: str | None = Field(description="What the result means and what to do next; null on errors.")
    waited_seconds: float = Field(
        description="How long the call waited for the run to stop (wait_seconds); 0 when it did not wait."
    )
    output_omitted: bool = Field(
        description="True when the run has an `output` that this result leaves out; read it with "
        "include_output=true to get it."
    )
    omitted_data: list[OmittedData] = Field(description="Data URLs over 64 KiB replaced by descriptors.")
    truncated: bool = Field(
        description="True when the run record was too large and was trimmed (unknown fields, error "
        "details and long strings shortened)."
    )
    error: ErrorInfo | None = Field(description="Why the call failed; null when ok.")


class RunSummary(BaseModel):
    """One run of a list, in a few fields: enough to pick it and act on it by id."""

    id: str = Field(description="The run's id, for the get_ and cancel_ tools.")
    status: KnownStatus | str | None = Field(description="Its status when listed. " + STATUS_DESCRIPTION)
    terminal: bool | None = Field(description="True when it has stopped, false while it is still going.")
    created_at: str | None = Field(description="When it was created (ISO 8601), as Retab sent it.")
    filename: str | None = Field(description="Name of its source file.")


class ListResult(BaseModel):
    """The envelope of a list tool; it adds the page under the plural of its noun."""

    ok: bool = Field(description="True when Retab answered with a page; false on any error (see `error`).")
    next_after: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page or on errors."
    )
    note: str | None = Field(description="What the page holds and how to go on; null on errors.")
    truncated: bool = Field(
        description="True when the page was too large to return whole and runs were left out of its end."
    )
    error: ErrorInfo | None = Field(description="Why the call failed; null when ok.")


@dataclass(slots=True)
class Waited:
    """How a wait for a run to stop went: what the note and `waited_seconds` report."""

    seconds: float
    # A status read after the first answer failed: the result shows the last state seen.
    interrupted_by: CallFailed | None = None


@functools.cache
def result_model(endpoint: Endpoint) -> type[RunResult] | type[ListResult]:
    """The envelope of one tool: the common fields plus the run (or the page) under its noun."""
    name = "".join(part.title() for part in endpoint.tool.split("_")) + "Result"
    kind = endpoint.kind
    if endpoint.action == "list":
        page: Any = (list[RunSummary], Field(description=f"The {kind.plural} of this page; empty on errors."))
        return create_model(name, __base__=ListResult, **{kind.page_key: page})
    run_field: Any = (
        kind.run_model | None,
        Field(description=f"The {kind.noun} as Retab returned it; null when the call failed."),
    )
    return create_model(name, __base__=RunResult, **{kind.key: run_field})


def succeeded(
    endpoint: Endpoint, body: object, *, include_output: bool, waited: Waited | None = None
) -> CallToolResult:
    """The envelope for a run Retab answered with; raises `CallFailed(invalid_response)` if it is not one."""
    kind = endpoint.kind
    if not isinstance(body, dict):
        raise CallFailed(ErrorCode.INVALID_RESPONSE, f"Retab answered with JSON that is not a {kind.noun}.")
    run_body: dict[str, Any] = dict(body)
    output_omitted = False
    if not include_output:
        # A completed run has an output even when the status-only read sent `{}` in its place.
        field = kind.output_field
        output_omitted = run_body.get(field) not in (None, {}, []) or run_body.get("status") == "completed"
        if field in run_body:
            run_body[field] = None
    omitted: list[OmittedData] = []
    run_body = _replace_large_data_urls(run_body, omitted)
    try:
        run = kind.run_model.model_validate(run_body)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
        raise CallFailed(
            ErrorCode.INVALID_RESPONSE,
            f"Retab answered with a {kind.noun} this server cannot read (bad fields: "
            f"{bounded_line(', '.join(fields), 200)}).",
        ) from None
    if kind is EDIT and RUN_ID.fullmatch(run.id):
        for item in omitted:
            if item.path == "output.filled_document.url":
                item.resource_uri = FILLED_DOCUMENT_URI.format(edit_id=run.id)
    # A status this server does not know is passed on, but not at any length.
    status = run.status if run.status is None or is_terminal(run.status) is not None else bounded_line(run.status, 64)
    terminal = is_terminal(status)
    envelope = result_model(endpoint)(
        ok=True,
        status=status,
        terminal=terminal,
        note=_note(endpoint, status, terminal, output_omitted, waited),
        waited_seconds=round(waited.seconds, 1) if waited else 0.0,
        output_omitted=output_omitted,
        omitted_data=omitted[:MAX_OMITTED_DATA],
        truncated=len(omitted) > MAX_OMITTED_DATA,
        error=None,
        **{kind.key: run},
    ).model_dump(mode="json")
    text = _to_json(envelope)
    budget = FULL_OUTPUT_JSON_BUDGET if include_output else DEFAULT_JSON_BUDGET
    if len(text) > budget or envelope["truncated"]:
        envelope, text = _trim(endpoint, envelope, budget)
    summary = f"{endpoint.tool}: {kind.noun} {bounded_line(run.id, 128)}: {status}. {envelope['note']}"
    links = [item for item in omitted[:MAX_OMITTED_DATA] if item.resource_uri]
    return _render(envelope, text, summary, links=links)


def listed(endpoint: Endpoint, body: object, *, status_filter: str | None) -> CallToolResult:
    """The envelope for a page of runs (`{"data": [...], "list_metadata": {...}}`), in summaries."""
    kind = endpoint.kind
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(
        isinstance(item, dict) and isinstance(item.get("id"), str) for item in data
    ):
        raise CallFailed(ErrorCode.INVALID_RESPONSE, f"Retab answered with JSON that is not a list of {kind.plural}.")
    assert isinstance(body, dict)
    summaries = [_summary(item) for item in data[:MAX_LIST_ITEMS]]
    metadata = body.get("list_metadata")
    after = metadata.get("after") if isinstance(metadata, dict) else None
    next_after = after if isinstance(after, str) and CURSOR.fullmatch(after) else None

    def page(kept: list[RunSummary]) -> tuple[dict[str, Any], str]:
        left_out = len(summaries) - len(kept)
        if kept:
            active = sum(1 for summary in kept if summary.terminal is False)
            note = f"{_count(len(kept), kind)}, newest first; {active} still going."
        else:
            note = f"No {kind.plural}" + (f" with status {status_filter}." if status_filter else ".")
        if left_out:
            note += (
                f" {left_out} more of this page were left out: the page was too large to return "
                f"(see `truncated`); call {endpoint.tool} with a smaller limit to see them."
            )
        elif next_after:
            note += f" More follow: call {endpoint.tool} with after={next_after!r}."
        elif kept:
            note += " This is the last page."
        envelope = result_model(endpoint)(
            ok=True,
            next_after=None if left_out else next_after,
            note=note,
            truncated=bool(left_out),
            error=None,
            **{kind.page_key: kept},
        ).model_dump(mode="json")
        return envelope, _to_json(envelope)

    kept = summaries
    envelope, text = page(kept)
    # Summaries are bounded field by field; a page of hostile ones is still bounded as a whole.
    while len(text) > DEFAULT_JSON_BUDGET and kept:
        kept = kept[: len(kept) * 3 // 4]
        envelope, text = page(kept)
    return _render(envelope, text, f"{endpoint.tool}: {envelope['note']}")


def _count(number: int, kind: RunKind) -> str:
    return f"{number} {kind.noun if number == 1 else kind.plural}"


def failed(endpoint: Endpoint, run_id: str, failure: CallFailed) -> CallToolResult:
    error = ErrorInfo(
        code=failure.code,
        message=failure.message,
        retryable=failure.retryable,
        retry_after_seconds=failure.retry_after_seconds,
        http_status=failure.http_status,
        request_id=failure.request_id,
        hint=hint_for(failure, endpoint, run_id),
    )
    kind = endpoint.kind
    if endpoint.action == "list":
        fields: dict[str, Any] = {"next_after": None, "truncated": False, kind.page_key: []}
    else:
        fields = {
            "status": None,
            "terminal": None,
            "waited_seconds": 0.0,
            "output_omitted": False,
            "omitted_data": [],
            "truncated": False,
            kind.key: None,
        }
    envelope = result_model(endpoint)(ok=False, note=None, error=error, **fields).model_dump(mode="json")
    # Retab's own detail may end the message without a full stop; the hint is a sentence of its own.
    message = failure.message if failure.message.endswith((".", "!", "?")) else failure.message + "."
    summary = f"{endpoint.tool} failed: {failure.code}. {message} Next: {error.hint}"
    return _render(envelope, _to_json(envelope), summary)


def invalid_arguments(endpoint: Endpoint, exc: ValidationError | None, unknown: list[str]) -> CallFailed:
    """An `invalid_argument` failure in the server's words, naming each bad argument."""
    kind = endpoint.kind
    problems = [f"{_argument_name(name)} is not an argument of {endpoint.tool}." for name in unknown]
    for error in exc.errors() if exc else []:
        name = str(error["loc"][0]) if error["loc"] else "arguments"
        limit = (error.get("ctx") or {}).get("le")
        if error["type"] == "missing":
            problems.append(f"`{name}` is required.")
        elif name == kind.id_arg and endpoint.action != "list":
            # Not quoted back: a malformed id may be of any length, or a key.
            got = error.get("input")
            sent = f"{len(got)} characters" if isinstance(got, str) else f"a JSON {_json_type(got)}"
            problems.append(
                f"`{name}` must be a Retab {kind.noun} id: 1 to 128 characters from A-Z, a-z, 0-9, "
                f"`_` and `-` (for example {kind.id_example}); the id you sent is {sent}."
            )
        elif name == "include_output":
            problems.append("`include_output` must be true or false.")
        elif name == "wait_seconds" and limit is not None:
            problems.append(f"`wait_seconds` must be from 0 to {limit:g} (this server's time limit per call).")
        else:
            problems.append(f"`{name}`: {bounded_line(error['msg'], 120)}")
    return CallFailed(ErrorCode.INVALID_ARGUMENT, " ".join(dict.fromkeys(problems)))


_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_]{1,40}")


def _argument_name(name: str) -> str:
    """An argument name the caller sent, quoted back only when it is a plain, short name."""
    return f"`{name}`" if _PLAIN_NAME.fullmatch(name) and not may_hold_key_shape(name) else "An argument you sent"


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object", type(None): "null"}
    return names.get(type(value), "value")


# What a stopped run's status means, after a cancel and after a read.
_STOPPED_NOTES: Final = {
    "cancel": {
        "cancelled": "The {noun} is cancelled: the run has stopped.",
        "completed": "The {noun} had already completed, so there was nothing to cancel; its result stands.",
        "failed": "The {noun} had already failed, so there was nothing to cancel (see its `error`).",
    },
    "read": {
        "cancelled": "The {noun} was cancelled: the run has stopped.",
        "completed": "The {noun} has completed.",
        "failed": "The {noun} failed (see its `error`).",
    },
}


def _note(
    endpoint: Endpoint, status: str | None, terminal: bool | None, output_omitted: bool, waited: Waited | None
) -> str:
    noun = endpoint.kind.noun
    read = tool_for("read", endpoint.kind)
    waiting = f"after waiting {waited.seconds:.0f} s, " if waited and waited.seconds else ""
    stopped = _STOPPED_NOTES[endpoint.action]
    if status is None:
        note = f"Retab's answer did not say the {noun}'s status, so it is unknown; call {read} to read it."
    elif status in stopped:
        note = stopped[status].format(noun=noun)
    elif terminal is not False:
        note = f"Retab reports a status this server does not know ({status!r}); treat it as the run's current state."
    elif endpoint.action == "cancel":
        note = (
            f"Cancellation was requested, but {waiting}the {noun} is still {status}. To wait until it "
            f"stops, call {read} with wait_seconds (read-only); there is no need to cancel again."
        )
    else:
        note = (
            f"{waiting}the {noun} is still {status}. Call {read} with wait_seconds to wait until it stops, "
            f"or {tool_for('cancel', endpoint.kind)} to stop it."
        )
        note = note[0].upper() + note[1:]
    if waited and waited.interrupted_by:
        why = {
            ErrorCode.SHUTTING_DOWN: "this retab-mcp process is shutting down",
            ErrorCode.TIMEOUT: "the call ran out of time",
        }.get(waited.interrupted_by.code, f"a later read failed ({waited.interrupted_by.code})")
        note += f" Waiting ended early: {why}, so this is the last state seen; call {read} to read it again."
    if output_omitted:
        field = endpoint.kind.output_field
        what = "output" if field == "output" else f"`{field}`"
        note += f" Its {what} was left out; call {read} with include_output=true to get it."
    return note


def _summary(item: dict[str, Any]) -> RunSummary:
    status = item.get("status")
    file = item.get("file")
    filename = file.get("filename") if isinstance(file, dict) else None
    created_at = item.get("created_at")
    return RunSummary(
        id=bounded_line(item["id"], 128),
        status=bounded_line(status, 40) if isinstance(status, str) else None,
        terminal=is_terminal(status),
        created_at=bounded_line(created_at, 40) if isinstance(created_at, str) else None,
        filename=bounded_line(filename, 200) if isinstance(filename, str) else None,
    )


def _replace_large_data_urls(value: Any, omitted: list[OmittedData]) -> Any:
    """`value` with every data URL over `DATA_URL_LIMIT` replaced by a descriptor string, which
    names the `filename` of the object holding the URL, if it has one."""

    def replaced(leaf: Any, key: str | int | None, parent: Location | None) -> Any:
        if not (isinstance(leaf, str) and len(leaf) > DATA_URL_LIMIT and leaf.startswith("data:")):
            return leaf
        holder = parent[2] if parent is not None else None
        filename = holder.get("filename") if isinstance(holder, dict) else None
        path = path_text(parent, key)
        return _describe_data_url(leaf, path, filename if isinstance(filename, str) else None, omitted)

    return map_json(value, replaced)


def _describe_data_url(url: str, path: str, filename: str | None, omitted: list[OmittedData]) -> str:
    parsed = parse_data_url(url)
    mime_type, size = (parsed.mime_type, parsed.size) if parsed else (None, len(url))
    omitted.append(OmittedData(path=path, filename=filename, mime_type=mime_type, size_bytes=size, resource_uri=None))
    name = f" {filename!r}" if filename else ""
    return f"[omitted by retab-mcp: {mime_type or 'data'} file{name}, {size} bytes; too large to return]"


# `type/subtype`, as RFC 2045 spells a media type; anything else is no type at all.
_MEDIA_TYPE: Final = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
# A data URL's header (`data:<media type>[;params][;base64],`) is short; a comma further in is data.
_MAX_DATA_URL_HEADER: Final = 256


@dataclass(frozen=True, slots=True)
class DataUrl:
    """A `data:` URL (RFC 2397) read without copying its payload: the results' descriptors and
    the filled_document resource both read data URLs through `parse_data_url`."""

    url: str
    start: int  # where the payload starts, after the comma
    mime_type: str | None  # the declared media type, lowercased, without parameters
    base64: bool  # base64, or percent-encoded

    @property
    def size(self) -> int:
        """The payload's size once decoded, in bytes (for percent-encoding: each escape counted
        as one byte, every other character as one)."""
        length = len(self.url) - self.start
        if self.base64:
            return length * 3 // 4 - self.url[-2:].count("=")
        return length - 2 * self.url.count("%", self.start)

    def payload(self) -> str:
        return self.url[self.start :]


def parse_data_url(url: str) -> DataUrl | None:
    """The parts of `url` if it is a data URL, else None."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",", 0, _MAX_DATA_URL_HEADER)
    if comma < 0:
        return None
    media = url[len("data:") : comma].lower()
    base64 = media.endswith(";base64")
    declared = media.split(";", 1)[0].strip()
    return DataUrl(url, comma + 1, declared if _MEDIA_TYPE.fullmatch(declared) else None, base64)


def _trim(endpoint: Endpoint, envelope: dict[str, Any], budget: int) -> tuple[dict[str, Any], str]:
    """Shrink the run in steps until the envelope fits `budget`, least lost first: fields the
    models do not declare (at any depth) and error details, then long strings, then the output,
    then every string to a short one. What the last step leaves is the declared scalar fields with
    short strings: a few KB whatever the API sent, so the loop always ends within budget."""
    noun, field = endpoint.kind.key, endpoint.kind.output_field
    envelope["truncated"] = True
    run = _declared(envelope[noun], endpoint.kind.run_model)
    if isinstance(run.get("error"), dict):
        run["error"]["details"] = None

    def long_strings_cut() -> None:
        envelope[noun] = _shorten_strings(envelope[noun], TRIMMED_STRING_CHARS)

    def every_string_short() -> None:
        envelope[noun] = _shorten_strings(envelope[noun], SHORT_STRING_CHARS)
        envelope["omitted_data"] = _shorten_strings(envelope["omitted_data"], SHORT_STRING_CHARS)

    def without_output() -> None:
        if envelope[noun].get(field) is not None:
            envelope[noun][field] = None
            envelope["output_omitted"] = True

    envelope[noun] = run
    text = _to_json(envelope)
    for step in (long_strings_cut, without_output, every_string_short):
        if len(text) <= budget:
            break
        step()
        text = _to_json(envelope)
    envelope["note"] = (envelope["note"] or "") + " The record was too large and was trimmed (see `truncated`)."
    return envelope, _to_json(envelope)


def _declared(value: Any, model: type[BaseModel]) -> Any:
    """`value` with only the fields `model` declares, at every depth of its nested models."""
    if not isinstance(value, dict):
        return value
    kept: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in value:
            annotation: Any = info.annotation
            nested = _model_in(annotation)
            item = value[name]
            if nested is None:
                kept[name] = item
            elif nested[1] and isinstance(item, list):
                kept[name] = [_declared(element, nested[0]) for element in item]
            else:
                kept[name] = _declared(item, nested[0])
    return kept


@functools.cache
def _model_in(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The model an annotation holds (`M`, `M | None`, `list[M]`), and whether in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        inner = _model_in(typing.get_args(annotation)[0])
        return (inner[0], True) if inner else None
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found:
            return found
    return None


def _shorten_strings(value: Any, limit: int) -> Any:
    def shortened(leaf: Any, _key: object, _parent: object) -> Any:
        if isinstance(leaf, str) and len(leaf) > limit:
            return leaf[:limit] + f"…[{len(leaf) - limit} more characters]"
        return leaf

    return map_json(value, shortened)


def _to_json(value: Any) -> str:
    # Strict JSON: NaN and Infinity are not JSON (the wire models never hold one: client.parse_json).
    return pydantic_core.to_json(value, inf_nan_mode="null").decode()


def redacted(result: CallToolResult, redactor: Redactor) -> CallToolResult:
    """`result` with every secret and key-shaped string masked, in every block and in its
    structured content alike (a cheap scan of the text finds the rare result that needs it)."""
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if not any(redactor.needed(text) for text in texts):
        return result
    envelope = redactor.tree(result.structured_content)
    summary = redactor.text(texts[0]) if texts else ""
    links = [block for block in result.content if isinstance(block, ResourceLink)]
    return CallToolResult(
        content=[TextContent(type="text", text=summary), TextContent(type="text", text=_to_json(envelope)), *links],
        structured_content=envelope,
        is_error=result.is_error,
    )


def _render(envelope: dict[str, Any], text: str, summary: str, links: Sequence[OmittedData] = ()) -> CallToolResult:
    # The summary first for people and text-only clients; then the envelope itself as JSON, for
    # clients that drop `structuredContent` (several do on errors); then a link to each file left
    # out, for clients that offer to open resources.
    content: list[ContentBlock] = [TextContent(type="text", text=summary), TextContent(type="text", text=text)]
    content += [
        ResourceLink(
            type="resource_link",
            uri=str(link.resource_uri),
            name=link.filename or link.path,
            mime_type=link.mime_type,
            size=link.size_bytes,
        )
        for link in links
    ]
    return CallToolResult(
        content=content,
        structured_content=envelope,
        is_error=not envelope["ok"],
    )
