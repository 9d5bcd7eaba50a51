"""How many tool calls run at once, and how each one ends: within its budget, or at shutdown.

Why: a process that admits every call slows every call down together once its CPU is the
bottleneck, until all of them miss their deadline at once (measured: 0 of 1,250 calls answered
in time at 250-500 in flight). So a bounded number of calls run (`RETAB_MCP_MAX_IN_FLIGHT`);
one more waits a short, bounded time for a slot, then answers at once with `overloaded` and
`retry_after_seconds`, instead of joining a queue it cannot leave in time.

A call that waits for its run to stop gives its slot back while it sleeps between polls: a
sleeping call costs nothing, and a hundred agents waiting must not lock out the hundred-and-first.

Over stateless HTTP the gate stands in front of the SDK (http.py): a call turned away there
costs the parsing of its few hundred bytes, not the SDK's per-request session, so that past
capacity the CPU still goes to the calls admitted; the front hands the slot to the tool call by
name (`handing_over`, `handed_slot`). Elsewhere (stdio, `--stateful`) the tool
call itself is admitted.

Resource reads (an edit's filled document) are admitted too, by a companion gate with its own
small cap (`Settings.max_resource_reads`): each holds tens of MB while it runs, so a few at once
are what a pod's memory limit allows. The companion drains with the gate.

Every admitted call runs inside a cancel scope: its hard stop. It fires at the call's budget (a
backstop: the client already answers `timeout` in time) or, once the server drains at SIGTERM,
shortly before the grace period ends, so that every call in flight answers with an envelope
before the process exits, never with a transport error.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Final

import anyio

from retab_mcp.errors import CallFailed, ErrorCode

# What a call may wait for a slot: long enough to ride out a burst, short next to any budget.
MAX_ADMISSION_WAIT_SECONDS: Final = 1.0
# Suggested to a call turned away: about the time a slot takes to free up under load.
RETRY_AFTER_SECONDS: Final = 1.0
# What a draining call keeps for itself before the grace ends: time to write its answer.
ANSWER_RESERVE_SECONDS: Final = 1.0
# The backstop fires this long after the budget, so that the client's own `timeout` answers first.
BACKSTOP_SLACK_SECONDS: Final = 0.5


# The hand-off of a slot from the HTTP front to the tool call. The front (http.py
# `Front._admitted`) admits a stateless tool call before the SDK's per-request work, so that a
# call turned away costs next to nothing, and serves the SDK inside `handing_over(slot)`; the
# tool call (server.py `call`) takes that slot with `handed_slot()` instead of a second one. A
# context variable, because between the two ends the request runs through the SDK, which carries
# nothing of ours; it is read nowhere else.
_HANDED: ContextVar[Slot | None] = ContextVar("retab_mcp_handed_slot", default=None)


@contextmanager
def handing_over(slot: Slot) -> Iterator[None]:
    """`slot` handed to the tool call served inside the block (see `_HANDED`)."""
    token = _HANDED.set(slot)
    try:
        yield
    finally:
        _HANDED.reset(token)


def handed_slot() -> Slot | None:
    """The slot the HTTP front handed to the call being served, if it did (see `_HANDED`)."""
    return _HANDED.get()


class Slot:
    """One admitted call: its hard-stop scope, and whether it holds its share of the gate."""

    def __init__(self, gate: Gate, scope: anyio.CancelScope) -> None:
        self.gate = gate
        self.scope = scope
        self.held = True

    async def idle(self, seconds: float) -> None:
        """Sleep `seconds` without holding a slot, then take one back (waiting if need be)."""
        self.gate.release(self)
        await anyio.sleep(seconds)
        await self.gate.acquire(self)

    @property
    def draining(self) -> bool:
        return self.gate.draining


class Gate:
    """The admission gate of one process, built in the server's lifespan."""

    def __init__(
        self, max_in_flight: int, call_timeout: float, limit: str = "calls in flight (RETAB_MCP_MAX_IN_FLIGHT)"
    ) -> None:
        self._slots = anyio.Semaphore(max_in_flight)
        self._limit = limit  # what a call turned away is told it ran into
        self._companions: list[Gate] = []
        self._wait = min(MAX_ADMISSION_WAIT_SECONDS, call_timeout / 10)
        self._budget = call_timeout
        self._admitted: set[Slot] = set()
        self._cutoff = math.inf
        self.draining = False

    async def admit(self, started: float) -> Slot:
        """A slot for a call that started at `started` (anyio time), or `CallFailed` at once
        (overloaded, shutting_down) when there is none to give. Hold it with `holding`."""
        if self.draining:
            raise CallFailed(
                ErrorCode.SHUTTING_DOWN,
                "This retab-mcp process is shutting down; nothing was sent to Retab.",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        try:
            self._slots.acquire_nowait()  # the usual case, without arming a timer
            acquired = True
        except anyio.WouldBlock:
            acquired = False
            with anyio.move_on_after(self._wait):
                await self._slots.acquire()
                acquired = True
        if not acquired:
            raise CallFailed(
                ErrorCode.OVERLOADED,
                f"retab-mcp is at its limit of {self._limit}; nothing was sent to Retab.",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        backstop = started + self._budget + BACKSTOP_SLACK_SECONDS
        return Slot(self, anyio.CancelScope(deadline=min(backstop, self._cutoff)))

    @contextmanager
    def holding(self, slot: Slot) -> Iterator[Slot]:
        """`slot` counted among the calls in flight (the drain reaches it) until the block ends,
        and given back then."""
        self._admitted.add(slot)
        try:
            yield slot
        finally:
            self._admitted.discard(slot)
            self.release(slot)

    @asynccontextmanager
    async def admitted(self, started: float, handed: Slot | None = None) -> AsyncIterator[Slot]:
        """`handed` (the slot the HTTP front already gave this request) when it is one of this
        gate's, else a new slot, held for the block."""
        if handed is not None and handed.gate is self:
            yield handed
            return
        with self.holding(await self.admit(started)) as slot:
            yield slot

    def release(self, slot: Slot) -> None:
        if slot.held:
            slot.held = False
            self._slots.release()

    async def acquire(self, slot: Slot) -> None:
        if not slot.held:
            await self._slots.acquire()
            slot.held = True

    def companion(self, max_in_flight: int, limit: str) -> Gate:
        """A gate with its own cap (for another kind of request) that drains with this one."""
        gate = Gate(max_in_flight, self._budget, limit)
        self._companions.append(gate)
        return gate

    def drain(self, grace: float) -> None:
        """Stop admitting; make every call in flight answer before `grace` seconds are over."""
        for companion in self._companions:
            companion.drain(grace)
        self.draining = True
        self._cutoff = anyio.current_time() + max(0.0, grace - min(ANSWER_RESERVE_SECONDS, grace / 4))
        for slot in self._admitted:
            slot.scope.deadline = min(slot.scope.deadline, self._cutoff)


def cut_short(slot: Slot) -> CallFailed:
    """Why the hard stop of `slot` fired: the drain, or (a backstop) the call's budget."""
    if slot.draining:
        return CallFailed(
            ErrorCode.SHUTTING_DOWN,
            "This retab-mcp process shut down before the call could finish.",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )
    return CallFailed(ErrorCode.TIMEOUT, "The call did not finish within its budget (RETAB_MCP_CALL_TIMEOUT).")
