"""The sandbox's state: seeded runs that advance over time, programmed faults, and a request log.

Thread-safe, because the sandbox is served from its own thread while tests program it from
theirs. The clock is injectable (and can be advanced) so lifecycle tests never wait.

Every timestamp a run shows is the moment something happened to it (its creation, a status
change), never "now": reading or re-cancelling a finished run gives the same body each time.
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

# A kind of run: the `key` of its row in the run table ("blueprint", "edit", "schema_generation").
Kind = str

SANDBOX_API_KEY: Final = "rt_test_sandbox"
# A sandbox key the API accepts but that may not act on anything: answers 403.
FORBIDDEN_API_KEY: Final = "rt_test_forbidden"
STATUSES: Final = ("pending", "queued", "in_progress", "completed", "failed", "cancelled")  # lifecycle order
TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})
# How long a stopping run keeps going after its cancel is accepted (seconds of sandbox time).
STOP_DELAY_SECONDS: Final = 3.0
FILLED_PDF_BYTES: Final = 2 * 1024 * 1024


def fingerprint(api_key: str) -> str:
    """What the request log keeps of a key: enough to tell keys apart, useless to an attacker."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Fault:
    """A programmed answer for the next `times` API requests whose path (with its `?query`, if
    any) contains `match`.

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
    query: str = ""  # the raw query string, as sent


@dataclass(slots=True)
class Run:
    kind: Kind
    id: str
    # (seconds after `origin`, status) steps; the last one whose time has come is current.
    schedule: list[tuple[float, str]]
    origin: float
    # created_at, for display and list order: seeded runs were created before the reset that is
    # their schedule's origin, each at its own moment.
    created: float
    filename: str
    template_id: str | None = None
    cancelled_at: float | None = None  # when a cancel was accepted
    # A cancel takes effect this long after it is accepted; until then the run keeps going.
    stop_delay: float = 0.0
    # The cancel page shows a minimal body ({"id", "status", "error"}); some runs answer so.
    minimal: bool = False
    # The schedule starts at the run's first read, not at the reset (FINISHING runs): until it is
    # read, the run stays at its first status.
    starts_on_read: bool = False

    def history(self, now: float) -> list[tuple[float, str]]:
        """The status changes that have happened by `now`, oldest first, as (moment, status).

        A cancel takes effect at `cancelled_at + stop_delay` unless the schedule reached a
        terminal status by then: the cancel raced completion and lost.
        """
        stop = None if self.cancelled_at is None else self.cancelled_at + self.stop_delay
        horizon = now if stop is None else min(now, stop)
        if self.starts_on_read:
            horizon = self.origin  # not read yet: its clock has not started
        happened = [(self.origin + after, status) for after, status in self.schedule if horizon - self.origin >= after]
        if not happened:
            happened = [(self.origin, self.schedule[0][1])]
        if stop is not None and now >= stop and happened[-1][1] not in TERMINAL:
            happened.append((stop, "cancelled"))
        return happened

    def status(self, now: float) -> str:
        return self.history(now)[-1][1]


# Seeded runs in every lifecycle state. The active ones advance on their own, so a newcomer who
# waits sees a run complete; ids follow the formats seen in Retab's docs.
_ACTIVE_SCHEDULES: Final[dict[str, list[tuple[float, str]]]] = {
    "pending": [(0, "pending"), (60, "queued"), (120, "in_progress"), (3600, "completed")],
    "queued": [(0, "queued"), (60, "in_progress"), (3600, "completed")],
    "in_progress": [(0, "in_progress"), (3600, "completed")],
}
SEEDED_RUNS: tuple[tuple[Kind, str, str], ...] = (
    ("blueprint", "fbp_a1b2c3d4e5f6", "in_progress"),
    ("blueprint", "fbp_pending01", "pending"),
    ("blueprint", "fbp_queued01", "queued"),
    ("blueprint", "fbp_running01", "in_progress"),
    ("blueprint", "fbp_completed01", "completed"),
    ("blueprint", "fbp_failed01", "failed"),
    ("blueprint", "fbp_cancelled01", "cancelled"),
    ("blueprint", "fbp_stopping01", "in_progress"),
    ("edit", "edt_01G34H8J2K", "in_progress"),
    ("edit", "edit_01G34H8J2K", "queued"),
    ("edit", "edt_pending01", "pending"),
    ("edit", "edt_queued01", "queued"),
    ("edit", "edt_running01", "in_progress"),
    ("edit", "edt_completed01", "completed"),
    ("edit", "edt_failed01", "failed"),
    ("edit", "edt_cancelled01", "cancelled"),
    ("edit", "edt_minimal01", "in_progress"),
    ("edit", "edt_stopping01", "in_progress"),
)


@dataclass(frozen=True, slots=True)
class KindSeed:
    """How the sandbox seeds and renders a kind of run beyond blueprints and edits: one run in
    each status, ids `<prefix><status>01`, with Retab's fields for that kind."""

    prefix: str
    fields: dict[str, Any]  # what its body carries beside the common fields
    output: Any  # a completed run's result
    output_field: str = "output"
    # The document primitives run on a file with a model; a schema generation does not.
    on_file: bool = True


# Every kind of the run table beyond blueprints and edits (tests check the two agree).
KIND_SEEDS: Final[dict[Kind, KindSeed]] = {
    "classification": KindSeed(
        prefix="cls_",
        fields={
            "categories": [
                {"name": "invoice", "description": "An invoice."},
                {"name": "receipt", "description": "A receipt."},
            ],
            "n_consensus": 1,
            "consensus": None,
        },
        output={"category": "invoice", "reasoning": "It lists amounts due and a due date."},
    ),
    "extraction": KindSeed(
        prefix="ext_",
        fields={
            "json_schema": {"type": "object", "properties": {"total": {"type": "number"}}},
            "n_consensus": 1,
            "consensus": None,
            "metadata": {},
        },
        output={"total": 1280.5},
    ),
    "parse": KindSeed(
        prefix="prs_",
        fields={"table_parsing_format": "markdown"},
        output={"pages": [{"page": 1, "text": "Invoice 2026-041. Total due: 1280.50"}]},
    ),
    "partition": KindSeed(
        prefix="prt_",
        fields={"key": "invoice_number", "n_consensus": 1, "allow_overlap": False, "consensus": None},
        output={"partitions": [{"key": "2026-041", "pages": [1, 2]}]},
    ),
    "split": KindSeed(
        prefix="spl_",
        fields={
            "subdocuments": [{"name": "invoice", "description": "An invoice."}],
            "n_consensus": 1,
            "consensus": None,
        },
        output={"splits": [{"name": "invoice", "pages": [1, 2]}]},
    ),
    "schema_generation": KindSeed(
        prefix="sgen_",
        fields={"object": "schema", "strict": True},
        output={"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]},
        output_field="json_schema",
        on_file=False,
    ),
}
_SEED_STATUS_NAMES: Final = {"in_progress": "running"}
SEEDED_RUNS += tuple(
    (kind, f"{seed.prefix}{_SEED_STATUS_NAMES.get(status, status)}01", status)
    for kind, seed in KIND_SEEDS.items()
    for status in STATUSES
)
# Runs that finish on their own FINISH_SECONDS after their first read, one that completes and one
# that fails of each kind: a newcomer's wait (`wait_seconds`) ends in a terminal status. Seeded
# first, so the oldest: lists, newest first, show the other seeded runs as they were.
FINISH_SECONDS: Final = 3.0
FINISHING: Final[dict[str, str]] = {
    f"{prefix}{verb}01": status
    for prefix in ("fbp_", "edt_", *(seed.prefix for seed in KIND_SEEDS.values()))
    for verb, status in (("completes", "completed"), ("fails", "failed"))
}
_KIND_BY_PREFIX: Final = {"fbp_": "blueprint", "edt_": "edit"} | {seed.prefix: key for key, seed in KIND_SEEDS.items()}
SEEDED_RUNS = (
    tuple((_KIND_BY_PREFIX[run_id[: run_id.index("_") + 1]], run_id, "in_progress") for run_id in FINISHING)
    + SEEDED_RUNS
)
# Runs whose cancel is accepted (it answers in_progress) but takes effect only later.
STOP_DELAYS: Final[dict[str, float]] = {"fbp_stopping01": STOP_DELAY_SECONDS, "edt_stopping01": STOP_DELAY_SECONDS}
# Some variety for the list filters; every other edit is of w9_form.pdf, every blueprint of invoice.pdf.
_EDIT_FILENAMES: Final[dict[str, str]] = {
    "edit_01G34H8J2K": "invoice_form.pdf",
    "edt_queued01": "invoice_form.pdf",
    "edt_failed01": "invoice_form.pdf",
}
_EDIT_TEMPLATES: Final[dict[str, str]] = {"edt_running01": "tpl_w9_2026", "edt_completed01": "tpl_w9_2026"}


def seeded_ids_by_status() -> dict[str, list[str]]:
    """The seeded ids under the status each has at a reset, in lifecycle order (for docs and
    banners); the FINISHING runs apart, under `finishing_ids_by_status`."""
    by_status: dict[str, list[str]] = {status: [] for status in STATUSES}
    for _, run_id, status in SEEDED_RUNS:
        if run_id not in FINISHING:
            by_status.setdefault(status, []).append(run_id)
    return {status: ids for status, ids in by_status.items() if ids}


def finishing_lines() -> list[str]:
    """The FINISHING runs, one line per status they end in (for `--help` and the banner)."""
    return [
        f"  in_progress, {status} {FINISH_SECONDS:g} s after their first read: "
        + ", ".join(run_id for run_id, ends in FINISHING.items() if ends == status)
        for status in ("completed", "failed")
    ]


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
        # Bumped by every reset: a request that was still being delayed by a fault when the state was
        # reset belongs to the old state and must not act on the new one (a test's stalled request
        # would otherwise cancel a run in whichever test runs when its delay ends).
        self.generation = 0
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
            for index, (kind, run_id, status) in enumerate(SEEDED_RUNS):
                finishes = FINISHING.get(run_id)
                self.runs[(kind, run_id)] = Run(
                    kind,
                    run_id,
                    schedule=[(0, status), (FINISH_SECONDS, finishes)]
                    if finishes
                    else _ACTIVE_SCHEDULES.get(status, [(0, status)]),
                    origin=now,  # the schedules count from the reset...
                    # ...but each was created a minute before the next, the first seeded the oldest.
                    created=now - 60 * (len(SEEDED_RUNS) - index),
                    filename="invoice.pdf" if kind == "blueprint" else _EDIT_FILENAMES.get(run_id, "w9_form.pdf"),
                    template_id=_EDIT_TEMPLATES.get(run_id),
                    stop_delay=STOP_DELAYS.get(run_id, 0.0),
                    minimal=run_id == "edt_minimal01",
                    starts_on_read=finishes is not None,
                )
            self.faults = []
            self.requests = []
            self.generation += 1

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
            if run is None:
                return None
            if run.starts_on_read:  # its first read: its clock starts now
                run.starts_on_read = False
                run.origin = self.now()
            return self._render(run, include_output)

    def cancel(self, kind: Kind, run_id: str) -> dict[str, Any] | None:
        """Idempotent, as the API documents: a terminal run comes back unchanged."""
        with self._lock:
            run = self.runs.get((kind, run_id))
            if run is None:
                return None
            now = self.now()
            # A run already stopping keeps its first cancel's clock; a finished one is left as it is.
            if run.cancelled_at is None and run.status(now) not in TERMINAL:
                run.cancelled_at = now
            if run.minimal:
                return {"id": run.id, "status": run.status(now), "error": None}
            return self._render(run, include_output=True)

    def list_runs(
        self,
        kind: Kind,
        *,
        limit: int = 10,
        order: Literal["asc", "desc"] = "desc",
        status: str | None = None,
        filename: str | None = None,
        template_id: str | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        """A page of `kind`'s runs in the list wire format, `{"data": [...], "list_metadata": {...}}`.

        The sandbox's reading of the API's cursors (ids of runs, ordered by created_at in `order`):
        - `after=<id>` gives the runs that come after that run in `order`, the first `limit` of them;
          `before=<id>` the runs just before it: the page ending right before it, still in `order`.
          Both at once give the runs between them, the first `limit` of them.
        - `list_metadata.after` is the page's last id when more matching runs follow it, else null;
          `list_metadata.before` is the page's first id when matching runs come before it, else null
          (so a first page, or a `before` walk that reached the start, has none).
        - A cursor locates a position, not a member: a run the filters leave out still works as one.
          An id that is no run of `kind` gives an empty page with both cursors null.
        Filters (exact matches; `status` is the run's current one) apply before paging. Items never
        carry their output (`{}`): a list of completed edits would otherwise weigh megabytes.
        """
        with self._lock:
            now = self.now()
            runs = sorted((run for run in self.runs.values() if run.kind == kind), key=lambda r: (r.created, r.id))
            if order == "desc":
                runs.reverse()
            rank = {run.id: position for position, run in enumerate(runs)}
            empty: dict[str, Any] = {"data": [], "list_metadata": {"before": None, "after": None}}
            if (after is not None and after not in rank) or (before is not None and before not in rank):
                return empty
            matching = [
                run
                for run in runs
                if (status is None or run.status(now) == status)
                and (filename is None or run.filename == filename)
                and (template_id is None or run.template_id == template_id)
            ]
            low = -1 if after is None else rank[after]
            high = len(runs) if before is None else rank[before]
            window = [run for run in matching if low < rank[run.id] < high]
            page = window[-limit:] if before is not None and after is None else window[:limit]
            if not page:
                return empty
            first, last = rank[page[0].id], rank[page[-1].id]
            return {
                "data": [self._render(run, include_output=False) for run in page],
                "list_metadata": {
                    "before": page[0].id if any(rank[run.id] < first for run in matching) else None,
                    "after": page[-1].id if any(rank[run.id] > last for run in matching) else None,
                },
            }

    # -- the wire format ----------------------------------------------------------------------

    def _render(self, run: Run, include_output: bool) -> dict[str, Any]:
        history = run.history(self.now())
        changed_at, status = history[-1]
        created = self._wall(run.created)
        # Started when it went in_progress; a run seeded past that started a second after creation,
        # and one cancelled before it ever ran has not started at all.
        started_at = next((moment for moment, step in history if step == "in_progress"), None)
        if started_at is None and status in ("completed", "failed"):
            started_at = run.created + 1
        started = None if started_at is None else self._wall(started_at)
        completed = self._wall(changed_at) if status in TERMINAL else None
        updated = self._wall(changed_at)  # the last status change
        error = (
            {"code": "PROCESSING_ERROR", "message": "The document could not be processed.", "details": {}}
            if status == "failed"
            else None
        )
        file_ref = {"id": "file_" + fingerprint(run.id), "filename": run.filename, "mime_type": "application/pdf"}
        if run.kind == "blueprint":
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
                "updated_at": updated,  # not in the docs, but on the wire
            }
        elif run.kind in KIND_SEEDS:
            body = self._primitive(run, status, error, file_ref, created, updated)
        else:
            done = status == "completed"
            filled_name = run.filename.removesuffix(".pdf") + "_filled.pdf"
            body = {
                "id": run.id,
                "file": file_ref,
                "model": "retab-small",
                "config": {"color": "#000080"},
                "instructions": "Fill the form with the vendor's details.",
                "template_id": run.template_id,
                "output": self._edit_output(filled_name) if done else {},
                "status": status,
                "error": error,
                "filled_document_ref": {
                    "id": "file_" + fingerprint(run.id + "filled"),
                    "filename": filled_name,
                    "mime_type": "application/pdf",
                }
                if done
                else None,
                "usage": {"credits": 1.0, "page_count": 1} if done else None,
                "created_at": created,
                "updated_at": updated,
            }
        output_field = KIND_SEEDS[run.kind].output_field if run.kind in KIND_SEEDS else "output"
        if not include_output:
            body[output_field] = {}
        return body

    def _primitive(
        self, run: Run, status: str, error: dict[str, Any] | None, file_ref: dict[str, str], created: str, updated: str
    ) -> dict[str, Any]:
        seed = KIND_SEEDS[run.kind]
        done = status == "completed"
        body: dict[str, Any] = {"id": run.id}
        if seed.on_file:
            body |= {"file": file_ref, "model": "retab-small", "instructions": "Follow the document's own layout."}
        body |= seed.fields
        body[seed.output_field] = seed.output if done else {}
        body |= {"status": status, "error": error, "created_at": created, "updated_at": updated}
        if seed.on_file:
            body["usage"] = {"credits": 1.0, "page_count": 1} if done else None
        return body

    def _edit_output(self, filled_name: str) -> dict[str, Any]:
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
            "filled_document": {"filename": filled_name, "url": self._filled_pdf},
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
