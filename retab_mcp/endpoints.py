"""The endpoint table: each row is one tool. Adding a Retab cancel endpoint is adding a row.

The server builds the tool (name, argument, schemas, description) and the result envelope from
the row; no tool has code of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from retab_mcp.models import Edit, FileBlueprint

_COMMON = (
    " Cancelling is idempotent and harmless: a run that already finished (completed, failed or "
    "cancelled) comes back unchanged, and a cancel can race with completion, so the returned "
    "`status` is the truth. Returns an envelope: `ok`, the run's `status`, `terminal` (true when "
    "the run has stopped), the {noun} itself (its `output` only with include_output=true), and "
    "on failure `error` with a `code`, whether it is `retryable`, `retry_after_seconds` and a "
    "`hint` saying what to do next."
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    tool: str
    title: str
    description: str
    path: str  # with `{id}` where the run id goes, as one percent-encoded segment
    id_arg: str
    noun: str  # what the run is called in messages, and the envelope field that holds it
    run_model: type[FileBlueprint] | type[Edit]
    id_example: str
    # Id prefixes that belong to the sibling tool, for the hint on a 404.
    sibling_prefixes: tuple[str, ...]
    sibling_tool: str


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        tool="cancel_blueprint",
        title="Cancel a Retab file blueprint run",
        description=(
            "Stop a background Retab file blueprint run (the analysis that generates a Document "
            "Blueprint from an uploaded file), given its id (usually `fbp_...`). Use it when a "
            "blueprint run is no longer needed, is taking too long, or was started by mistake."
            + _COMMON.format(noun="blueprint")
        ),
        path="/v1/files/blueprints/{id}/cancel",
        id_arg="blueprint_id",
        noun="blueprint",
        run_model=FileBlueprint,
        id_example="fbp_a1b2c3d4e5f6",
        sibling_prefixes=("edt_", "edit_"),
        sibling_tool="cancel_edit",
    ),
    Endpoint(
        tool="cancel_edit",
        title="Cancel a Retab edit run",
        description=(
            "Stop a background Retab edit run (filling form fields onto a document or template "
            "PDF, started with background: true), given its id (usually `edt_...` or `edit_...`). "
            "Use it when an edit is no longer needed, is taking too long, or was started by mistake."
            + _COMMON.format(noun="edit")
        ),
        path="/v1/edits/{id}/cancel",
        id_arg="edit_id",
        noun="edit",
        run_model=Edit,
        id_example="edt_01G34H8J2K",
        sibling_prefixes=("fbp_",),
        sibling_tool="cancel_blueprint",
    ),
)

BY_TOOL: dict[str, Endpoint] = {endpoint.tool: endpoint for endpoint in ENDPOINTS}
