"""The wire models against the bodies Retab documents, and the leniency the real API needs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from retab_mcp.models import Edit, FileBlueprint

# The cancel blueprint page's response example (shared/seeds).
BLUEPRINT_EXAMPLE: dict[str, Any] = {
    "id": "<string>",
    "file": {"id": "<string>", "filename": "<string>", "mime_type": "<string>"},
    "object": "file.blueprint",
    "intent": "<string>",
    "output": {},
    "status": "pending",
    "error": {"code": "<string>", "message": "<string>", "details": {}},
    "created_at": "2023-11-07T05:31:56Z",
    "started_at": "2023-11-07T05:31:56Z",
    "completed_at": "2023-11-07T05:31:56Z",
}

# The cancel edit page's response example: only three fields.
EDIT_CANCEL_EXAMPLE: dict[str, Any] = {"id": "edt_01G34H8J2K", "status": "cancelled", "error": None}

# A completed edit with every documented field, as the get page describes it.
EDIT_FULL: dict[str, Any] = {
    "id": "edit_01G34H8J2K",
    "file": {"id": "file_0123456789abcdef", "filename": "w9.pdf", "mime_type": "application/pdf"},
    "model": "retab-small",
    "config": {"color": "#000080"},
    "instructions": "Fill it in",
    "template_id": None,
    "output": {
        "form_data": [
            {
                "bbox": {"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.04, "page": 1},
                "description": "Name",
                "type": "text",
                "key": "name",
                "value": "Acme",
            }
        ],
        "filled_document": {"filename": "w9_filled.pdf", "url": "data:application/pdf;base64,JVBERi0="},
    },
    "status": "completed",
    "error": None,
    "filled_document_ref": {"id": "file_fedcba9876543210", "filename": "w9_filled.pdf", "mime_type": "application/pdf"},
    "usage": {"credits": 1.5, "page_count": 2},
    "created_at": "2023-11-07T05:31:56Z",
}


def test_blueprint_example_parses_with_every_field() -> None:
    blueprint = FileBlueprint.model_validate(BLUEPRINT_EXAMPLE)
    assert blueprint.status == "pending"
    assert blueprint.file.mime_type == "<string>"
    assert blueprint.error is not None
    assert blueprint.error.details == {}
    assert blueprint.completed_at is not None
    assert blueprint.completed_at.year == 2023
    assert blueprint.mode is None
    assert blueprint.model_dump(mode="json")["created_at"] == "2023-11-07T05:31:56Z"


def test_blueprint_defaults_match_the_docs() -> None:
    blueprint = FileBlueprint.model_validate({"id": "fbp_1", "file": BLUEPRINT_EXAMPLE["file"]})
    # The docs' default status is "pending", but a status Retab did not send is unknown: null.
    assert (blueprint.object, blueprint.status, blueprint.output, blueprint.error) == (
        "file.blueprint",
        None,
        {},
        None,
    )


def test_edit_cancel_pages_minimal_body_still_gives_the_status() -> None:
    edit = Edit.model_validate(EDIT_CANCEL_EXAMPLE)
    assert (edit.id, edit.status, edit.file, edit.model) == ("edt_01G34H8J2K", "cancelled", None, None)


def test_full_edit_parses_every_nested_model() -> None:
    edit = Edit.model_validate(EDIT_FULL)
    assert edit.output is not None
    [field] = edit.output.form_data
    assert (field.bbox.page, field.type, field.value) == (1, "text", "Acme")
    assert edit.output.filled_document.url.startswith("data:application/pdf")
    assert edit.usage is not None
    assert (edit.usage.credits, edit.usage.page_count) == (1.5, 2)
    assert edit.config is not None
    assert edit.config.color == "#000080"
    assert edit.filled_document_ref is not None


@pytest.mark.parametrize("sentinel", [{}, None])
def test_edit_output_accepts_the_empty_sentinel(sentinel: object) -> None:
    assert Edit.model_validate({**EDIT_FULL, "status": "in_progress", "output": sentinel}).output is None


def test_unknown_fields_are_kept_not_rejected() -> None:
    blueprint = FileBlueprint.model_validate({**BLUEPRINT_EXAMPLE, "updated_at": "2023-11-07T05:31:56Z"})
    assert blueprint.model_dump()["updated_at"] == "2023-11-07T05:31:56Z"


def test_a_future_status_and_another_object_spelling_pass_through() -> None:
    blueprint = FileBlueprint.model_validate({**BLUEPRINT_EXAMPLE, "status": "archived", "object": "file_blueprint"})
    assert (blueprint.status, blueprint.object) == ("archived", "file_blueprint")


def test_missing_id_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Edit.model_validate({"status": "cancelled"})


def test_every_documented_field_has_a_description() -> None:
    for model in (FileBlueprint, Edit):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"
