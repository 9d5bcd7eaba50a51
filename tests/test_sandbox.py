"""The sandbox itself, over HTTP on loopback as the server's client meets it: the edit list and its
cursors, reads, query validation, the request log, and cancels that take effect late or not at all.

The server's read and list tools are only as good as the stand-in they are tested against, so
its reading of the API is pinned down here."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from retab_mcp.sandbox import (
    SANDBOX_API_KEY,
    SEEDED_RUNS,
    STOP_DELAY_SECONDS,
    Fault,
    RunningSandbox,
    Sandbox,
    seeded_ids_by_status,
    serve_in_thread,
)
from retab_mcp.sandbox.state import FINISHING, finishing_lines
from tests.support import SERVER_COMMAND, clean_env

# Seeded oldest first, so this is the list in ascending order.
EDIT_IDS = [run_id for kind, run_id, _ in SEEDED_RUNS if kind == "edit"]
STOPPING = [("/v1/files/blueprints", "fbp_stopping01"), ("/v1/edits", "edt_stopping01")]


@pytest.fixture
def api(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def frozen() -> Iterator[tuple[Sandbox, httpx.Client]]:
    """A sandbox of its own whose clock moves only when told, for exact timestamps."""
    sandbox = Sandbox(clock=lambda: 1000.0)
    with (
        serve_in_thread(sandbox) as running,
        httpx.Client(base_url=running.base_url, headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"}) as client,
    ):
        yield sandbox, client


def get(api: httpx.Client, path: str, **params: str | int) -> dict[str, Any]:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def cancel(api: httpx.Client, path: str) -> dict[str, Any]:
    response = api.post(path + "/cancel")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["data"]]


def moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


# -- the list -----------------------------------------------------------------------------------


def test_the_list_is_newest_first_ten_by_default(api: httpx.Client) -> None:
    page = get(api, "/v1/edits")
    assert ids(page) == EDIT_IDS[::-1][:10]
    assert len(EDIT_IDS) == 12  # the two oldest (the finishing runs) follow
    assert page["list_metadata"] == {"before": None, "after": EDIT_IDS[::-1][9]}
    created = [moment(item["created_at"]) for item in page["data"]]
    assert created == sorted(created, reverse=True)
    assert len(set(created)) == len(created)


def test_limit_cuts_the_page_and_points_past_it(api: httpx.Client) -> None:
    page = get(api, "/v1/edits", limit=4)
    assert ids(page) == EDIT_IDS[::-1][:4]
    assert page["list_metadata"] == {"before": None, "after": EDIT_IDS[::-1][3]}


def test_order_asc_is_oldest_first(api: httpx.Client) -> None:
    page = get(api, "/v1/edits", order="asc", limit=100)
    assert ids(page) == EDIT_IDS
    assert ids(get(api, "/v1/edits", order="desc", limit=100)) == EDIT_IDS[::-1]


def test_the_status_filter_uses_the_current_status(api: httpx.Client, sandbox: RunningSandbox) -> None:
    running = get(api, "/v1/edits", status="in_progress")
    assert ids(running) == [
        "edt_stopping01", "edt_minimal01", "edt_running01", "edt_01G34H8J2K", "edt_fails01", "edt_completes01"
    ]  # fmt: skip
    assert {item["status"] for item in running["data"]} == {"in_progress"}
    assert ids(get(api, "/v1/edits", status="pending")) == ["edt_pending01"]
    sandbox.sandbox.advance(90)  # pending ones are queued by now, queued ones in progress
    assert ids(get(api, "/v1/edits", status="pending")) == []
    assert ids(get(api, "/v1/edits", status="queued")) == ["edt_pending01"]


def test_the_filename_filter_is_an_exact_match(api: httpx.Client) -> None:
    invoices = get(api, "/v1/edits", filename="invoice_form.pdf")
    assert ids(invoices) == ["edt_failed01", "edt_queued01", "edit_01G34H8J2K"]
    assert {item["file"]["filename"] for item in invoices["data"]} == {"invoice_form.pdf"}
    forms = get(api, "/v1/edits", filename="w9_form.pdf")
    assert sorted(ids(forms) + ids(invoices)) == sorted(EDIT_IDS)
    assert ids(get(api, "/v1/edits", filename="invoice_form")) == []


def test_the_template_filter_and_filters_together(api: httpx.Client) -> None:
    templated = get(api, "/v1/edits", template_id="tpl_w9_2026")
    assert ids(templated) == ["edt_completed01", "edt_running01"]
    assert {item["template_id"] for item in templated["data"]} == {"tpl_w9_2026"}
    assert ids(get(api, "/v1/edits", template_id="tpl_w9_2026", status="completed")) == ["edt_completed01"]
    assert ids(get(api, "/v1/edits", template_id="tpl_w9", limit=100)) == []


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_after_walks_every_edit_once_and_before_walks_back(api: httpx.Client, order: str) -> None:
    pages: list[dict[str, Any]] = [get(api, "/v1/edits", limit=3, order=order)]
    while pages[-1]["list_metadata"]["after"] is not None:
        assert len(pages) < 10, "the walk does not end"
        pages.append(get(api, "/v1/edits", limit=3, order=order, after=pages[-1]["list_metadata"]["after"]))
    walked = [run_id for page in pages for run_id in ids(page)]
    assert walked == (EDIT_IDS if order == "asc" else EDIT_IDS[::-1])
    assert [len(page["data"]) for page in pages] == [3, 3, 3, 3]
    assert pages[0]["list_metadata"]["before"] is None
    assert all(page["list_metadata"]["before"] == ids(page)[0] for page in pages[1:])

    back = get(api, "/v1/edits", limit=3, order=order, before=ids(pages[-1])[0])
    assert back == pages[-2]
    # Back at the start, nothing comes before the page.
    first = get(api, "/v1/edits", limit=3, order=order, before=ids(pages[1])[0])
    assert ids(first) == ids(pages[0])
    assert first["list_metadata"] == {"before": None, "after": ids(pages[0])[-1]}


def test_cursors_with_a_filter_and_an_unknown_cursor(api: httpx.Client) -> None:
    page = get(api, "/v1/edits", limit=2, filename="invoice_form.pdf")
    assert ids(page) == ["edt_failed01", "edt_queued01"]
    rest = get(api, "/v1/edits", limit=2, filename="invoice_form.pdf", after="edt_queued01")
    assert rest == {"data": rest["data"], "list_metadata": {"before": "edit_01G34H8J2K", "after": None}}
    assert ids(rest) == ["edit_01G34H8J2K"]
    # A cursor the filter leaves out still marks a place in the list.
    assert ids(get(api, "/v1/edits", filename="invoice_form.pdf", after="edt_completed01")) == [
        "edt_queued01",
        "edit_01G34H8J2K",
    ]
    for cursor in ("after", "before"):
        unknown = get(api, "/v1/edits", **{cursor: "edt_nosuchedit"})
        assert unknown == {"data": [], "list_metadata": {"before": None, "after": None}}


def test_list_items_never_carry_output(api: httpx.Client) -> None:
    response = api.get("/v1/edits", params={"status": "completed"})
    (item,) = response.json()["data"]
    assert item["id"] == "edt_completed01"
    assert item["output"] == {}
    assert item["filled_document_ref"]["filename"] == "w9_form_filled.pdf"
    assert len(response.content) < 8 * 1024  # the full read is over 2 MB


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("limit", "0", "greater_than_equal"),
        ("limit", "101", "less_than_equal"),
        ("limit", "ten", "int_parsing"),
        ("limit", "2.5", "int_parsing"),
        ("order", "newest", "literal_error"),
        ("status", "running", "literal_error"),
    ],
)
def test_a_bad_list_parameter_is_a_fastapi_422(api: httpx.Client, name: str, value: str, kind: str) -> None:
    response = api.get("/v1/edits", params={name: value})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", name]
    assert error["type"] == kind
    assert error["input"] == value
    assert error["msg"].startswith("Input should be")


def test_every_bad_parameter_is_reported_at_once(api: httpx.Client) -> None:
    response = api.get("/v1/edits", params={"limit": "500", "order": "up", "status": "done"})
    assert response.status_code == 422
    assert [error["loc"][1] for error in response.json()["detail"]] == ["limit", "order", "status"]
    assert response.json()["detail"][2]["msg"] == (
        "Input should be 'pending', 'queued', 'in_progress', 'completed', 'failed' or 'cancelled'"
    )


def test_limits_at_the_bounds_are_fine(api: httpx.Client) -> None:
    assert len(get(api, "/v1/edits", limit=1)["data"]) == 1
    assert len(get(api, "/v1/edits", limit=100)["data"]) == len(EDIT_IDS)


def test_the_request_log_keeps_the_query_string(api: httpx.Client, sandbox: RunningSandbox) -> None:
    api.get("/v1/edits?limit=3&order=asc&filename=w9_form.pdf")
    api.post("/v1/edits/edt_running01/cancel")
    listed, cancelled = sandbox.sandbox.recorded()
    assert (listed.method, listed.path, listed.query) == ("GET", "/v1/edits", "limit=3&order=asc&filename=w9_form.pdf")
    assert (cancelled.method, cancelled.path, cancelled.query) == ("POST", "/v1/edits/edt_running01/cancel", "")
    logged = httpx.get(sandbox.base_url + "/_sandbox/requests").json()
    assert logged[0]["query"] == "limit=3&order=asc&filename=w9_form.pdf"


# -- reads --------------------------------------------------------------------------------------


def test_include_output_false_is_the_status_only_projection(api: httpx.Client) -> None:
    full = get(api, "/v1/edits/edt_completed01")
    assert full["output"]["filled_document"]["url"].startswith("data:application/pdf;base64,")
    assert full["output"]["filled_document"]["filename"] == "w9_form_filled.pdf"
    for no in ("false", "False", "0", "no"):
        light = get(api, "/v1/edits/edt_completed01", include_output=no)
        assert light["output"] == {}
        assert light == {**full, "output": {}}
    assert get(api, "/v1/edits/edt_completed01", include_output="true") == full
    blueprint = get(api, "/v1/files/blueprints/fbp_completed01", include_output="false")
    assert (blueprint["status"], blueprint["output"]) == ("completed", {})
    assert get(api, "/v1/files/blueprints/fbp_completed01")["output"]["fields"]


def test_a_bad_include_output_is_a_422(api: httpx.Client) -> None:
    response = api.get("/v1/edits/edt_completed01", params={"include_output": "maybe"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "include_output"]
    assert response.json()["detail"][0]["type"] == "bool_parsing"


# -- cancels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "run_id"), STOPPING)
def test_a_stopping_run_is_cancelled_seconds_after_its_cancel(
    frozen: tuple[Sandbox, httpx.Client], base: str, run_id: str
) -> None:
    sandbox, api = frozen
    path = f"{base}/{run_id}"
    before = get(api, path)
    sandbox.advance(10)
    accepted = cancel(api, path)
    assert accepted["status"] == "in_progress"
    assert accepted == before  # accepted, but nothing has changed yet
    sandbox.advance(2)
    assert get(api, path)["status"] == "in_progress"
    assert cancel(api, path)["status"] == "in_progress"  # a second cancel does not restart the clock
    sandbox.advance(2)
    done = get(api, path)
    assert done["status"] == "cancelled"
    stopped_at = moment(before["updated_at"]) + timedelta(seconds=10 + STOP_DELAY_SECONDS)
    assert moment(done["updated_at"]) == stopped_at
    if base == "/v1/files/blueprints":
        assert moment(done["completed_at"]) == stopped_at
    sandbox.advance(7200)
    assert get(api, path) == done


def test_a_run_that_completes_while_stopping_stays_completed(api: httpx.Client, sandbox: RunningSandbox) -> None:
    path = "/v1/files/blueprints/fbp_stopping01"
    sandbox.sandbox.advance(3599)  # it completes at 3600 s
    assert cancel(api, path)["status"] == "in_progress"
    sandbox.sandbox.advance(2)
    completed = get(api, path)
    assert completed["status"] == "completed"
    sandbox.sandbox.advance(2)  # past the cancel's stop: the cancel lost the race
    assert get(api, path) == completed
    assert cancel(api, path) == completed


def test_an_ordinary_cancel_takes_effect_at_once(api: httpx.Client) -> None:
    assert cancel(api, "/v1/edits/edt_running01")["status"] == "cancelled"
    assert cancel(api, "/v1/files/blueprints/fbp_pending01")["started_at"] is None  # it never ran


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/blueprints/fbp_completed01",
        "/v1/files/blueprints/fbp_failed01",
        "/v1/files/blueprints/fbp_cancelled01",
        "/v1/edits/edt_completed01",
        "/v1/edits/edt_cancelled01",
    ],
)
def test_a_finished_run_reads_and_recancels_identically(api: httpx.Client, sandbox: RunningSandbox, path: str) -> None:
    first = get(api, path)
    sandbox.sandbox.advance(60)
    assert cancel(api, path) == first
    sandbox.sandbox.advance(60)
    assert cancel(api, path) == first
    assert get(api, path) == first


def test_a_run_cancelled_here_then_reads_identically(api: httpx.Client, sandbox: RunningSandbox) -> None:
    path = "/v1/files/blueprints/fbp_running01"
    cancelled = cancel(api, path)
    assert cancelled["status"] == "cancelled"
    assert cancelled["completed_at"] == cancelled["updated_at"]
    sandbox.sandbox.advance(7200)
    assert cancel(api, path) == cancelled
    assert get(api, path) == cancelled


def test_a_run_that_advanced_shows_when_it_did(api: httpx.Client, sandbox: RunningSandbox) -> None:
    path = "/v1/files/blueprints/fbp_queued01"
    queued = get(api, path)
    sandbox.sandbox.advance(3700)  # in progress at 60 s, completed at 3600 s
    completed = get(api, path)
    start = moment(queued["updated_at"])
    assert moment(completed["started_at"]) == start + timedelta(seconds=60)
    assert moment(completed["completed_at"]) == moment(completed["updated_at"]) == start + timedelta(seconds=3600)
    assert completed["created_at"] == queued["created_at"]


def test_a_request_delayed_across_a_reset_changes_nothing(api: httpx.Client, sandbox: RunningSandbox) -> None:
    """A stalled request whose client gave up must not cancel a run of a later test."""
    sandbox.sandbox.add_fault(Fault(status=None, delay=0.5))
    with pytest.raises(httpx.ReadTimeout):
        api.post("/v1/edits/edt_running01/cancel", timeout=0.1)
    sandbox.sandbox.reset()
    time.sleep(0.6)  # the delayed request has run its course by now
    assert get(api, "/v1/edits/edt_running01")["status"] == "in_progress"


# -- the seeded runs ----------------------------------------------------------------------------


def test_seeded_ids_by_status_covers_every_seeded_run_once() -> None:
    by_status = seeded_ids_by_status()
    assert list(by_status) == ["pending", "queued", "in_progress", "completed", "failed", "cancelled"]
    assert sorted(run_id for run_ids in by_status.values() for run_id in run_ids) == sorted(
        run_id for _, run_id, _ in SEEDED_RUNS if run_id not in FINISHING
    )
    # The finishing runs apart, each named once, on the lines --help and the banner print.
    named = " ".join(finishing_lines())
    assert sorted(run_id for run_id in FINISHING if f" {run_id}" in named) == sorted(FINISHING)
    assert {"fbp_stopping01", "edt_stopping01"} <= set(by_status["in_progress"])


def test_the_sandbox_command_prints_its_url_then_the_seeded_ids() -> None:
    process = subprocess.Popen(
        [*SERVER_COMMAND, "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline()
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=10)
    assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+\n", url)
    assert stdout == ""  # the URL alone, for scripts
    for status, run_ids in seeded_ids_by_status().items():
        assert f"  {status}: {', '.join(run_ids)}\n" in stderr
    for line in finishing_lines():
        assert f"{line}\n" in stderr
