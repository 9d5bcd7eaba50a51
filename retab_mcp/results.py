"""What a tool call answers: one envelope per tool, for success and failure alike.

Why one envelope: the spec leaves open whether an `isError` result may carry `structuredContent`
that does not match `outputSchema`. The Inspector and the TypeScript SDK validate it anyway, and
several agent SDKs drop `structuredContent` on errors. A single schema that both outcomes
satisfy, with the same JSON repeated as text, reads the same in every client.

Size: a run's `output` can hold a multi-megabyte PDF as a data URL. It is left out unless asked
for, any data URL over 64 KiB is replaced by a short descriptor even then, and a result that is
still too large is trimmed, so a default result stays under 64 KiB whatever the API sends.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import pydantic_core
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field, ValidationError, create_model

from retab_mcp.endpoints import Endpoint
from retab_mcp.errors import CallFailed, ErrorCode, bounded_line, hint_for
from retab_mcp.models import ACTIVE_STATUSES, STATUS_DESCRIPTION, TERMINAL_STATUSES, KnownStatus

DATA_URL_LIMIT: Final = 64 * 1024
# The envelope is sent twice (structured and as text), so half the result limit each.
DEFAULT_JSON_BUDGET: Final = 30 * 1024
FULL_OUTPUT_JSON_BUDGET: Final = 1024 * 1024
TRIMMED_STRING_CHARS: Final = 1024


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


class CancelResult(BaseModel):
    """The fields every tool's envelope has; each tool adds its run under its own name."""

    ok: bool = Field(description="True when Retab answered with the run; false on any error (see `error`).")
    status: KnownStatus | str | None = Field(
        description="The run's status after the cancel; null when the call failed. " + STATUS_DESCRIPTION
    )
    terminal: bool | None = Field(
        description="True when the run has stopped (completed, failed or cancelled), false while it "
        "is still going, null when unknown (the call failed, or the status is new to this server)."
    )
    note: str | None = Field(description="What the result means, in one or two sentences; null on errors.")
    output_omitted: bool = Field(
        description="True when the run has an `output` that this result leaves out; call again with "
        "include_output=true to get it."
    )
    omitted_data: list[OmittedData] = Field(description="Data URLs over 64 KiB replaced by descriptors.")
    truncated: bool = Field(
        description="True when the run record was too large and was trimmed (unknown fields, error "
        "details and long strings shortened)."
    )
    error: ErrorInfo | None = Field(description="Why the call failed; null when ok.")


@functools.cache
def result_model(endpoint: Endpoint) -> type[CancelResult]:
    """The envelope of one tool: the common fields plus the run under its noun."""
    run_field: Any = (
        endpoint.run_model | None,
        Field(description=f"The {endpoint.noun} as Retab returned it; null when the call failed."),
    )
    name = "".join(part.title() for part in endpoint.tool.split("_")) + "Result"
    return create_model(name, __base__=CancelResult, **{endpoint.noun: run_field})


def succeeded(endpoint: Endpoint, body: object, *, include_output: bool) -> CallToolResult:
    """The envelope for a 2xx body; raises `CallFailed(invalid_response)` if it is not a run."""
    if not isinstance(body, dict):
        raise CallFailed(ErrorCode.INVALID_RESPONSE, f"Retab answered with JSON that is not a {endpoint.noun}.")
    run_body: dict[str, Any] = dict(body)
    output_omitted = False
    if not include_output and "output" in run_body:
        output_omitted = run_body["output"] not in (None, {}, [])
        run_body["output"] = None
    omitted: list[OmittedData] = []
    run_body = _replace_large_data_urls(run_body, "", omitted)
    try:
        run = endpoint.run_model.model_validate(run_body)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
        raise CallFailed(
            ErrorCode.INVALID_RESPONSE,
            f"Retab answered with a {endpoint.noun} this server cannot read (bad fields: "
            f"{bounded_line(', '.join(fields), 200)}).",
        ) from None
    status = run.status
    terminal = True if status in TERMINAL_STATUSES else False if status in ACTIVE_STATUSES else None
    envelope = result_model(endpoint)(
        ok=True,
        status=status,
        terminal=terminal,
        note=_note(endpoint, status, terminal, output_omitted),
        output_omitted=output_omitted,
        omitted_data=omitted,
        truncated=False,
        error=None,
        **{endpoint.noun: run},
    ).model_dump(mode="json")
    text = _to_json(envelope)
    budget = FULL_OUTPUT_JSON_BUDGET if include_output else DEFAULT_JSON_BUDGET
    if len(text) > budget:
        envelope, text = _trim(endpoint, envelope, budget)
    summary = f"{endpoint.tool}: {endpoint.noun} {run.id} is {status}. {envelope['note']}"
    return _render(envelope, text, summary)


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
    envelope = result_model(endpoint)(
        ok=False,
        status=None,
        terminal=None,
        note=None,
        output_omitted=False,
        omitted_data=[],
        truncated=False,
        error=error,
        **{endpoint.noun: None},
    ).model_dump(mode="json")
    summary = f"{endpoint.tool} failed: {failure.code}. {failure.message} Next: {error.hint}"
    return _render(envelope, _to_json(envelope), summary)


def invalid_arguments(endpoint: Endpoint, exc: ValidationError) -> CallFailed:
    """An `invalid_argument` failure in the server's words, naming each bad argument."""
    problems: list[str] = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "arguments"
        if error["type"] == "missing":
            problems.append(f"`{name}` is required.")
        elif name == endpoint.id_arg:
            got = bounded_line(repr(error.get("input")), 60)
            problems.append(
                f"`{name}` must be a Retab {endpoint.noun} id: 1 to 128 characters from A-Z, a-z, 0-9, "
                f"`_` and `-` (for example {endpoint.id_example}); got {got}."
            )
        elif name == "include_output":
            problems.append("`include_output` must be true or false.")
        else:
            problems.append(f"`{name}`: {bounded_line(error['msg'], 120)}")
    return CallFailed(ErrorCode.INVALID_ARGUMENT, " ".join(dict.fromkeys(problems)))


def _note(endpoint: Endpoint, status: str, terminal: bool | None, output_omitted: bool) -> str:
    noun = endpoint.noun
    if status == "cancelled":
        note = f"The {noun} is cancelled: the run has stopped."
    elif status == "completed":
        note = f"The {noun} had already completed, so there was nothing to cancel; its result stands."
    elif status == "failed":
        note = f"The {noun} had already failed, so there was nothing to cancel (see its `error`)."
    elif terminal is False:
        note = (
            f"Cancellation was requested but the {noun} is still {status}; call {endpoint.tool} "
            "again in a few seconds to confirm it stopped."
        )
    else:
        note = f"Retab reports a status this server does not know ({status!r}); treat it as the run's current state."
    if output_omitted:
        note += " Its output was left out; call again with include_output=true to get it."
    return note


def _replace_large_data_urls(value: Any, path: str, omitted: list[OmittedData]) -> Any:
    """`value` with every data URL over `DATA_URL_LIMIT` replaced by a descriptor string."""
    if isinstance(value, str):
        if len(value) > DATA_URL_LIMIT and value.startswith("data:"):
            return _describe_data_url(value, path, None, omitted)
        return value
    if isinstance(value, dict):
        filename = value.get("filename")
        out: dict[str, Any] = {}
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else str(key)
            if isinstance(item, str) and len(item) > DATA_URL_LIMIT and item.startswith("data:"):
                name = filename if isinstance(filename, str) else None
                out[key] = _describe_data_url(item, item_path, name, omitted)
            else:
                out[key] = _replace_large_data_urls(item, item_path, omitted)
        return out
    if isinstance(value, list):
        return [_replace_large_data_urls(item, f"{path}[{i}]", omitted) for i, item in enumerate(value)]
    return value


def _describe_data_url(url: str, path: str, filename: str | None, omitted: list[OmittedData]) -> str:
    header, _, payload = url.partition(",")
    media = header[len("data:") :]
    mime_type = media.split(";", 1)[0] or None
    size = len(payload) * 3 // 4 - payload[-2:].count("=") if media.endswith(";base64") else len(payload)
    omitted.append(OmittedData(path=path, filename=filename, mime_type=mime_type, size_bytes=size))
    name = f" {filename!r}" if filename else ""
    return f"[omitted by retab-mcp: {mime_type or 'data'} file{name}, {size} bytes; too large to return]"


def _trim(endpoint: Endpoint, envelope: dict[str, Any], budget: int) -> tuple[dict[str, Any], str]:
    """Shrink the run in steps until the envelope fits `budget`: the fields a schema change could
    not make required go first (unknown fields, error details), then long strings, then output."""
    run = envelope[endpoint.noun]
    envelope["truncated"] = True
    known = endpoint.run_model.model_fields
    for key in [key for key in run if key not in known]:
        del run[key]
    if isinstance(run.get("error"), dict):
        run["error"]["details"] = None
    text = _to_json(envelope)
    if len(text) > budget:
        envelope[endpoint.noun] = run = _shorten_strings(run)
        text = _to_json(envelope)
    if len(text) > budget and run.get("output") is not None:
        run["output"] = None
        envelope["output_omitted"] = True
        text = _to_json(envelope)
    envelope["note"] = (envelope["note"] or "") + " The record was too large and was trimmed (see `truncated`)."
    return envelope, _to_json(envelope)


def _shorten_strings(value: Any) -> Any:
    if isinstance(value, str) and len(value) > TRIMMED_STRING_CHARS:
        return value[:TRIMMED_STRING_CHARS] + f"…[{len(value) - TRIMMED_STRING_CHARS} more characters]"
    if isinstance(value, dict):
        return {key: _shorten_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shorten_strings(item) for item in value]
    return value


def _to_json(envelope: dict[str, Any]) -> str:
    return pydantic_core.to_json(envelope).decode()


def _render(envelope: dict[str, Any], text: str, summary: str) -> CallToolResult:
    # The summary first for people and text-only clients; then the envelope itself as JSON, for
    # clients that drop `structuredContent` (several do on errors).
    return CallToolResult(
        content=[TextContent(type="text", text=summary), TextContent(type="text", text=text)],
        structured_content=envelope,
        is_error=not envelope["ok"],
    )
