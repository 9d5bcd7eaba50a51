"""The Retab wire models of the runs the tools act on, with the API's own field descriptions.

They are lenient exactly where the real API varies, because a cancel that worked must never be
reported as a failure over a detail of the body:
- unknown fields are kept, never an error (`extra="allow"`), so new API fields reach the agent;
- `status` accepts a future value (the schema still lists the six known ones), and a missing one
  is null (unknown), never a default `pending`;
- `object` accepts any string ("file_blueprint" has been seen);
- `Edit.output` accepts the empty sentinel `{}` the API sends until the run completes;
- `Edit.file`, `.model` and `.config` may be missing: the cancel page's own example body is just
  `{"id", "status", "error"}`, and the status is what the agent needs.
Free-form fields are typed as JSON objects (not `Any`): strict function-calling clients reject
untyped schemas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

KnownStatus = Literal["pending", "queued", "in_progress", "completed", "failed", "cancelled"]
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
ACTIVE_STATUSES: Final = frozenset({"pending", "queued", "in_progress"})

STATUS_DESCRIPTION: Final = (
    "Lifecycle status. Background runs progress pending -> queued -> in_progress -> "
    "completed | failed | cancelled; the last three are terminal. A value not listed here is a "
    "newer status passed through unchanged."
)

JsonObject = dict[str, Any]


def empty_sentinel_is_none(value: object) -> object:
    """An output is `{}` until the run completes (the API's empty sentinel): no output, so null."""
    return None if value == {} else value


def is_terminal(status: object) -> bool | None:
    """True once a run has stopped, False while it goes on, None for a status new to this server."""
    return True if status in TERMINAL_STATUSES else False if status in ACTIVE_STATUSES else None


class RetabModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class BackgroundRun(RetabModel):
    """What every kind of background run has: an id and a lifecycle status."""

    id: str = Field(description="Unique identifier of the run.")
    # Not `pending` when absent: a status Retab did not send is unknown (its SDKs' own example
    # payloads have runs without one).
    status: KnownStatus | str | None = Field(
        default=None, description=STATUS_DESCRIPTION + " Null when Retab's answer had none: unknown."
    )


class FileRef(RetabModel):
    """Reference to a file stored by Retab."""

    id: str = Field(description="Unique identifier of the file.")
    filename: str = Field(description="Name of the file.")
    mime_type: str = Field(description="MIME type of the file.")


class PrimitiveError(RetabModel):
    """Error details of a failed background run."""

    code: str = Field(description="Machine-readable error code.")
    message: str = Field(description="Human-readable error message.")
    details: JsonObject | None = Field(default=None, description="Additional error details.")


class BBox(RetabModel):
    """Position of a form field on its page, relative to the page size (0 to 1)."""

    left: float = Field(description="Left edge, relative to the page width.")
    top: float = Field(description="Top edge, relative to the page height.")
    width: float = Field(description="Width, relative to the page width.")
    height: float = Field(description="Height, relative to the page height.")
    page: int = Field(description="Page number, 1-based.")


class FormField(RetabModel):
    """One form field and the value written into it."""

    bbox: BBox = Field(description="Where the field is on the page.")
    description: str = Field(description="What the field is for.")
    type: Literal["text", "checkbox"] | str = Field(description="Field type: text or checkbox.")
    key: str = Field(description="Key of the field.")
    value: str | None = Field(default=None, description="Value written into the field.")


class MIMEData(RetabModel):
    """A file's content, usually as a data URL."""

    filename: str = Field(description="Name of the file.")
    url: str = Field(description="Content URL, often a `data:<mime>;base64,...` URL.")


class EditConfig(RetabModel):
    """Configuration used for the edit operation."""

    color: str | None = Field(default="#000080", description="Hex colour of the filled text.")


class EditResult(RetabModel):
    """The edit result: filled form fields and the rendered PDF."""

    form_data: list[FormField] = Field(description="The form fields with their filled values.")
    filled_document: MIMEData = Field(description="The filled document.")


class RetabUsage(RetabModel):
    """Usage information for the edit operation."""

    credits: float = Field(description="Credits consumed.")
    page_count: int | None = Field(default=None, description="Pages processed, when reported.")


class FileBlueprint(BackgroundRun):
    """A document blueprint generated from an uploaded file."""

    id: str = Field(description="Unique identifier of the file blueprint.")
    file: FileRef = Field(description="Information about the analyzed file.")
    object: str = Field(default="file.blueprint", description='Object type, "file.blueprint".')
    mode: Literal["instant", "reasoning"] | None = Field(
        default=None, description="Analysis depth used or requested (legacy)."
    )
    intent: str | None = Field(default=None, description="User intent supplied with the blueprint request.")
    output: JsonObject | None = Field(
        default_factory=dict, description="The generated Document Blueprint payload (can be large)."
    )
    error: PrimitiveError | None = Field(
        default=None, description="Error details when a background run fails; null otherwise."
    )
    created_at: datetime | None = Field(default=None, description="When the blueprint was created.")
    started_at: datetime | None = Field(default=None, description="When the run started.")
    completed_at: datetime | None = Field(default=None, description="When the run reached a terminal state.")


class Edit(BackgroundRun):
    """An edit result: form-field values written onto a document or template PDF."""

    id: str = Field(description="Unique identifier of the edit.")
    file: FileRef | None = Field(
        default=None,
        description="Information about the source file (input document or template PDF). "
        "Documented as required; absent from minimal cancel responses.",
    )
    model: str | None = Field(
        default=None,
        description="Model used for the edit operation. Documented as required; absent from minimal cancel responses.",
    )
    config: EditConfig | None = Field(
        default=None,
        description="Configuration used for the edit operation. Documented as required; absent from "
        "minimal cancel responses.",
    )
    instructions: str | None = Field(default=None, description="Free-form instructions supplied with the edit request.")
    template_id: str | None = Field(
        default=None,
        description="Template id used when the edit was created from a template; null for direct-document edits.",
    )
    output: EditResult | None = Field(
        default=None,
        description="The filled form fields and the rendered PDF; null (the API's empty sentinel) "
        "until status is completed.",
    )
    error: PrimitiveError | None = Field(
        default=None, description="Error details when a background run fails; null otherwise."
    )
    filled_document_ref: FileRef | None = Field(
        default=None, description="Durable file reference for the filled document, when materialized."
    )
    usage: RetabUsage | None = Field(default=None, description="Usage information for the edit operation.")
    created_at: datetime | None = Field(default=None, description="When the edit was created.")

    _output_sentinel = field_validator("output", mode="before")(empty_sentinel_is_none)


class DocumentRun(BackgroundRun):
    """What Retab's document primitives (classifications, extractions, parses, partitions, splits)
    share: a file, a model, instructions and an output, as lenient as `Edit`'s."""

    file: FileRef | None = Field(default=None, description="The document the run works on.")
    model: str | None = Field(default=None, description="Model used for the run.")
    instructions: str | None = Field(default=None, description="Free-form instructions supplied with the request.")
    output: JsonObject | list[JsonObject] | None = Field(
        default=None, description="The run's result; null (the API's empty sentinel) until status is completed."
    )
    error: PrimitiveError | None = Field(
        default=None, description="Error details when a background run fails; null otherwise."
    )
    usage: RetabUsage | None = Field(default=None, description="Usage information for the run.")
    created_at: datetime | None = Field(default=None, description="When the run was created.")

    _output_sentinel = field_validator("output", mode="before")(empty_sentinel_is_none)


class Consensus(RetabModel):
    """Fields of the runs that can ask several models and reconcile their answers."""

    n_consensus: int | None = Field(default=None, description="How many model answers were reconciled.")
    consensus: JsonObject | None = Field(default=None, description="How the answers agreed, when reported.")


class Classification(DocumentRun, Consensus):
    """A document sorted into one of the categories given."""

    id: str = Field(description="Unique identifier of the classification.")
    categories: list[JsonObject] | None = Field(default=None, description="The categories to choose from.")


class Extraction(DocumentRun, Consensus):
    """Structured data extracted from a document along a JSON schema."""

    id: str = Field(description="Unique identifier of the extraction.")
    json_schema: JsonObject | None = Field(default=None, description="The JSON schema of the data to extract.")
    metadata: JsonObject | None = Field(default=None, description="Metadata supplied with the request.")


class Parse(DocumentRun):
    """A document turned into text, page by page."""

    id: str = Field(description="Unique identifier of the parse.")
    table_parsing_format: str | None = Field(default=None, description="How tables are written out.")


class Partition(DocumentRun, Consensus):
    """A document cut into chunks, one per value of a key."""

    id: str = Field(description="Unique identifier of the partition.")
    key: str | None = Field(default=None, description="What the document is partitioned by.")
    allow_overlap: bool | None = Field(default=None, description="Whether chunks may share pages.")


class Split(DocumentRun, Consensus):
    """A document split into the subdocuments it holds."""

    id: str = Field(description="Unique identifier of the split.")
    subdocuments: list[JsonObject] | None = Field(default=None, description="The kinds of subdocument to find.")


class SchemaGeneration(BackgroundRun):
    """A JSON schema generated from example documents; its result is `json_schema`, not `output`."""

    id: str = Field(description="Unique identifier of the schema generation.")
    object: str = Field(default="schema", description='Object type, "schema".')
    json_schema: JsonObject | None = Field(
        default=None,
        description="The generated JSON schema; null (the API's empty sentinel) until status is completed.",
    )
    strict: bool | None = Field(default=None, description="Whether the schema is strict.")
    error: PrimitiveError | None = Field(
        default=None, description="Error details when a background run fails; null otherwise."
    )
    created_at: datetime | None = Field(default=None, description="When the run was created.")

    _output_sentinel = field_validator("json_schema", mode="before")(empty_sentinel_is_none)
