"""The sandbox's state: seeded runs that advance over time, programmed faults, and a request log.

Thread-safe, because the sandbox is served from its own thread while tests program it from
theirs. The clock is injectable (and can be advanced) so lifecycle tests never wait.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

Kind = Literal["blueprint", "edit"]

SANDBOX_API_KEY: Final = "rt_test_sandbox"
# A sandbox key the API accepts but that may not act on anything: answers 403.
FORBIDDEN_API_KEY: Final = "rt_test_forbidden"
TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})
FILLED_PDF_BYTES: Final = 2 * 1024 * 1024


def fingerprint(api_key: str) -> str:
    """What the request log keeps of a key: enough to tell keys apart, useless to an attacker."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Fault:
    """A programmed answer for the next `times` API requests whose path contains `match`.

    `status=None` answers normally after `delay` (a slow API); a `delay` longer than the
    client's timeout is a stall. `body=None` sends the API's JSON error shape for the status.
    """

    status: int | None = 500
    match: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    times: int = 1


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    auth_scheme: str | None  # "bearer", "api-key" or None
    key_fingerprint: str | None
    user_agent: str | None


@dataclass(slots=True)
class Run:
    kind: Kind
    id: str
    # (seconds after creation, status) steps; the last one whose time has come is current.
    schedule: list[tuple[float, str]]
    created: float
    cancelled_at: float | None = None
    # The cancel page shows a minimal body ({"id", "status", "error"}); some runs answer so.
    minimal: bool = False

    def status(self, now: float) -> str:
        if self.cancelled_at is not None:
            return "cancelled"
        current = self.schedule[0][1]
        for after, status in self.schedule:
            if now - self.created >= after:
                current = status
        return current


# Seeded runs in every lifecycle state. The active ones advance on their own, so a newcomer who
# waits sees a run complete; ids follow the formats seen in Retab's docs.
_ACTIVE_SCHEDULES: Final[dict[str, list[tuple[float, str]]]] = {
    "pending": [(0, "pending"), (60, "queued"), (120, "in_progress"), (3600, "completed")],
    "queued": [(0, "queued"), (60, "in_progress"), (3600, "completed")],
    "in_progress": [(0, "in_progress"), (3600, "completed")],
}
SEEDED_RUNS: Final[tuple[tuple[Kind, str, str], ...]] = (
    ("blueprint", "fbp_a1b2c3d4e5f6", "in_progress"),
    ("blueprint", "fbp_pending01", "pending"),
    ("blueprint", "fbp_queued01", "queued"),
    ("blueprint", "fbp_running01", "in_progress"),
    ("blueprint", "fbp_completed01", "completed"),
    ("blueprint", "fbp_failed01", "failed"),
    ("blueprint", "fbp_cancelled01", "cancelled"),
    ("edit", "edt_01G34H8J2K", "in_progress"),
    ("edit", "edit_01G34H8J2K", "queued"),
    ("edit", "edt_pending01", "pending"),
    ("edit", "edt_queued01", "queued"),
    ("edit", "edt_running01", "in_progress"),
    ("edit", "edt_completed01", "completed"),
    ("edit", "edt_failed01", "failed"),
    ("edit", "edt_cancelled01", "cancelled"),
    ("edit", "edt_minimal01", "in_progress"),
)


class Sandbox:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._offset = 0.0
        self._lock = threading.Lock()
        # The same moment on both clocks, to turn monotonic run times into API timestamps.
        self._wall_start = datetime.now(UTC).replace(microsecond=0)
        self._origin = clock()
        self._filled_pdf: str | None = None
        self.runs: dict[tuple[Kind, str], Run] = {}
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.reset()

    # -- time ---------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    # -- programming, for tests ---------------------------------------------------------------

    def reset(self) -> None:
        """Back to the seeded runs, no faults, an empty request log."""
        with self._lock:
            now = self.now()
            self.runs = {}
            for kind, run_id, status in SEEDED_RUNS:
                schedule = _ACTIVE_SCHEDULES.get(status, [(0, status)])
                self.runs[(kind, run_id)] = Run(kind, run_id, schedule, now, minimal=run_id == "edt_minimal01")
            self.faults = []
            self.requests = []

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def recorded(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    # -- what the app calls -------------------------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def read(self, kind: Kind, run_id: str, *, include_output: bool = True) -> dict[str, Any] | None:
        with self._lock:
            run = self.runs.get((kind, run_id))
            return None if run is None else self._render(run, include_output)

    def cancel(self, kind: Kind, run_id: str) -> dict[str, Any] | None:
        """Idempotent, as the API documents: a terminal run comes back unchanged."""
        with self._lock:
            run = self.runs.get((kind, run_id))
            if run is None:
                return None
            now = self.now()
            if run.status(now) not in TERMINAL:
                run.cancelled_at = now
            if run.minimal:
                return {"id": run.id, "status": run.status(now), "error": None}
            return self._render(run, include_output=True)

    def list_runs(self, kind: Kind, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            runs = [run for run in self.runs.values() if run.kind == kind][:limit]
            return [self._render(run, include_output=False) for run in runs]

    # -- the wire format ----------------------------------------------------------------------

    def _render(self, run: Run, include_output: bool) -> dict[str, Any]:
        now = self.now()
        status = run.status(now)
        created = self._wall(run.created)
        started = self._wall(run.created + 1) if status != "pending" and status != "queued" else None
        ended_at = run.cancelled_at if run.cancelled_at is not None else now
        completed = self._wall(ended_at) if status in TERMINAL else None
        error = (
            {"code": "PROCESSING_ERROR", "message": "The document could not be processed.", "details": {}}
            if status == "failed"
            else None
        )
        file_ref = {"id": "file_" + fingerprint(run.id), "filename": "", "mime_type": ""}
        if run.kind == "blueprint":
            file_ref |= {"filename": "invoice.pdf", "mime_type": "application/pdf"}
            body: dict[str, Any] = {
                "id": run.id,
                "file": file_ref,
                "object": "file.blueprint",
                "mode": None,
                "intent": "Extract the invoice number, dates and totals.",
                "output": _BLUEPRINT_OUTPUT if status == "completed" else {},
                "status": status,
                "error": error,
                "created_at": created,
                "started_at": started,
                "completed_at": completed,
                "updated_at": self._wall(now),  # not in the docs, but on the wire
            }
        else:
            file_ref |= {"filename": "w9_form.pdf", "mime_type": "application/pdf"}
            done = status == "completed"
            body = {
                "id": run.id,
                "file": file_ref,
                "model": "retab-small",
                "config": {"color": "#000080"},
                "instructions": "Fill the form with the vendor's details.",
                "template_id": None,
                "output": self._edit_output() if done else {},
                "status": status,
                "error": error,
                "filled_document_ref": {
                    "id": "file_" + fingerprint(run.id + "filled"),
                    "filename": "w9_form_filled.pdf",
                    "mime_type": "application/pdf",
                }
                if done
                else None,
                "usage": {"credits": 1.0, "page_count": 1} if done else None,
                "created_at": created,
                "updated_at": self._wall(now),
            }
        if not include_output:
            body["output"] = {}
        return body

    def _edit_output(self) -> dict[str, Any]:
        if self._filled_pdf is None:
            # A 2 MB PDF, as a completed edit's filled document typically is: data URLs this size
            # are what the server must keep out of a tool result.
            pdf = b"%PDF-1.7\n" + b"0" * (FILLED_PDF_BYTES - 16) + b"\n%%EOF\n"
            self._filled_pdf = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
        return {
            "form_data": [
                {
                    "bbox": {"left": 0.12, "top": 0.2, "width": 0.4, "height": 0.03, "page": 1},
                    "description": "Legal name of the vendor",
                    "type": "text",
                    "key": "name",
                    "value": "Acme Corp",
                },
                {
                    "bbox": {"left": 0.1, "top": 0.31, "width": 0.02, "height": 0.02, "page": 1},
                    "description": "C corporation",
                    "type": "checkbox",
                    "key": "c_corp",
                    "value": "true",
                },
            ],
            "filled_document": {"filename": "w9_form_filled.pdf", "url": self._filled_pdf},
        }

    def _wall(self, moment: float) -> str:
        # Monotonic seconds to the wall-clock timestamps the API sends.
        when = self._wall_start + timedelta(seconds=moment - self._origin)
        return when.isoformat().replace("+00:00", "Z")


_BLUEPRINT_OUTPUT: Final = {
    "title": "Invoice",
    "fields": [
        {"name": "invoice_number", "type": "string", "description": "The invoice's number."},
        {"name": "issue_date", "type": "date", "description": "When the invoice was issued."},
        {"name": "total", "type": "number", "description": "Total amount due, taxes included."},
    ],
}
