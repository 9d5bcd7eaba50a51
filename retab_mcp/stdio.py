"""MCP over stdin/stdout, served by the event loop.

Why not the SDK's `stdio_server()`: it reads every line and writes every answer (write, then
flush) through `anyio.wrap_file`, three worker-thread round trips per call, which were the
largest single cost of a stdio call after the upstream request itself (docs/benchmarks.md).
Here the pipes are asyncio pipe transports. Everything above the bytes is the SDK's: the
framing (one JSON-RPC message per line, UTF-8), the message models, and the low-level server's
loop (both protocol eras, `notifications/cancelled`, progress, the lifespan).

What this transport adds, each a promise of the README:
- A line that is not a JSON-RPC message (not JSON, a batch array, a wrong "jsonrpc", a request
  without a method, an id that is not a string or an integer, JSON nested too deeply to parse)
  is answered with -32700 or -32600 (id null when it cannot be read) instead of being dropped,
  and serving goes on.
- At end of input, the calls in flight finish (within the call budget) and each is answered
  before the process exits; one still going after `drain_seconds` is answered by the SDK's
  dispatcher with "Connection closed". Every request gets exactly one answer.
- Backpressure: while the client is not reading its answers (stdout's buffer is full), or
  MAX_PENDING_ANSWERS requests are unanswered, no further line is read. A client that writes
  without reading fills the pipe and waits; this process's memory stays bounded.
- SIGINT (how hosts stop a stdio server, and Ctrl-C) stops the process quietly, exit status 0:
  the calls in flight are cancelled, as when the host goes away.
- stdout carries protocol only: while serving, fd 1 points at stderr and fd 0 at /dev/null (as
  the SDK does), and the wire is served from private duplicates of both.
- A stdin or stdout that is not a pipe, socket or terminal (a regular file: `< calls.jsonl`, or
  /dev/null under nohup, systemd or `docker run` without -i: epoll refuses it) is served through
  worker threads instead, with the same behaviour. A closed stdin, stdout or stderr is opened on
  /dev/null first: a closed stdin is an empty input, served until its end at once (exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Any, Final

import anyio
from mcp.server import MCPServer
from mcp.shared.dispatcher import as_request_id, coerce_request_id
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from retab_mcp import _sdk

logger = logging.getLogger(__name__)

# One message per line; a tool call is a few hundred bytes. A longer line is refused (and skipped
# to its end) rather than buffered without bound.
MAX_LINE_BYTES: Final = 4 * 1024 * 1024
_CHUNK: Final = 64 * 1024
# Requests read but not yet answered, at most. Far above what a client keeps in flight (calls
# past RETAB_MCP_MAX_IN_FLIGHT are refused anyway), and it bounds what answers can hold in memory.
MAX_PENDING_ANSWERS: Final = 256
# How long the last answers may take to leave when the client has stopped reading stdout.
_CLOSE_SECONDS: Final = 5.0


def run(server: MCPServer[Any], drain_seconds: float) -> None:
    """Serve `server` over this process's stdin and stdout until end of input or SIGINT."""
    _open_closed_std()
    try:
        anyio.run(serve, server, drain_seconds)
    except KeyboardInterrupt:
        # Hosts stop their stdio servers with SIGINT, and so does Ctrl-C in a terminal: a normal
        # stop, not a failure (the event loop has cancelled the calls in flight and closed up).
        logger.info("interrupted (SIGINT): stopped")


async def serve(server: MCPServer[Any], drain_seconds: float) -> None:
    # The SDK's own `run_stdio_async` drives the same object; it has no public accessor (_sdk.py).
    lowlevel = _sdk.lowlevel(server)
    with _claimed_descriptors() as (wire_in, wire_out):
        reader, output = await _Input.open(wire_in), await _Output.open(wire_out)
        try:
            wire = _Wire(reader, output, drain_seconds)
            await lowlevel.run(wire, wire.writer, lowlevel.create_initialization_options())
        finally:
            reader.close()
            await output.close()


def _open_closed_std() -> None:
    """/dev/null on whichever of fd 0, 1 and 2 is closed, before anything else takes its number:
    the event loop's own descriptor, opened as fd 0, was then replaced by `_claimed_descriptors`."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if opened != fd:  # the lowest free number is this one, unless another thread took it
                os.dup2(opened, fd)
                os.close(opened)


@contextlib.contextmanager
def _claimed_descriptors() -> Iterator[tuple[int, int]]:
    """Private duplicates of fd 0 and 1 for the wire; fd 0 -> /dev/null, fd 1 -> stderr meanwhile,
    so that nothing else in the process (a library's print, a child process) reaches the wire."""
    sys.stdout.flush()
    wire_in, wire_out, saved_in, saved_out = (_dup_above_std(fd) for fd in (0, 1, 0, 1))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    try:
        yield wire_in, wire_out
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)
        # The pipe transports made the descriptions non-blocking; a terminal shared with the
        # shell must not stay that way.
        for fd in (0, 1):
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)


def _dup_above_std(fd: int) -> int:
    """A non-inheritable duplicate of `fd` that is not 0, 1 or 2 (one of them may be closed)."""
    low: list[int] = []
    duplicate = os.dup(fd)
    while duplicate <= 2:
        low.append(duplicate)
        duplicate = os.dup(fd)
    for extra in low:
        os.close(extra)
    return duplicate


# -- bytes in, bytes out ---------------------------------------------------------------------

# Not a pipe, socket or terminal (a regular file), or an event loop without pipe transports.
_NO_PIPE_TRANSPORT: Final = (ValueError, OSError, NotImplementedError)


def _pollable(fd: int) -> bool:
    """A pipe, socket or terminal: what the event loop can watch. asyncio takes any character
    device, but epoll refuses /dev/null, and only once the loop runs (a traceback, then a hang)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


class _Input:
    """Chunks of stdin: from an asyncio pipe transport, or a worker thread (b"" at the end)."""

    def __init__(self, file: Any, reader: asyncio.StreamReader | None) -> None:
        self._file = file
        self._reader = reader
        self._transport: asyncio.BaseTransport | None = None

    @classmethod
    async def open(cls, fd: int) -> _Input:
        file = os.fdopen(fd, "rb", buffering=0)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
        if not _pollable(fd):
            return cls(file, None)
        try:
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), file)
        except _NO_PIPE_TRANSPORT:
            return cls(file, None)
        opened = cls(file, reader)
        opened._transport = transport
        return opened

    async def read(self) -> bytes:
        if self._reader is None:
            chunk: bytes = await anyio.to_thread.run_sync(self._file.read, _CHUNK)
            return chunk
        return await self._reader.read(_CHUNK)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        else:
            self._file.close()


class _Output(asyncio.Protocol):
    """stdout: an asyncio pipe transport with flow control, or a worker thread."""

    def __init__(self) -> None:
        self._transport: asyncio.WriteTransport | None = None
        self._file: Any = None  # the worker thread's file, when there is no transport
        # Clear while the transport's buffer is over its high-water mark (the reader is behind).
        # An event, not a future: one waiter cancelled must not cancel the others' wait.
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, fd: int) -> _Output:
        output = cls()
        file = os.fdopen(fd, "wb", buffering=0)
        if not _pollable(fd):
            output._file = file
            return output
        try:
            await asyncio.get_running_loop().connect_write_pipe(lambda: output, file)
        except _NO_PIPE_TRANSPORT:
            output._file = file
        return output

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()
        if not self._lost.done():
            self._lost.set_result(None)

    async def write(self, data: bytes) -> None:
        if self._transport is None:
            await anyio.to_thread.run_sync(_write_all, self._file, data)
            return
        if self._transport.is_closing():
            logger.debug("stdout is closed: dropped %d bytes", len(data))
            return
        # Whole: once buffered, the message goes out even if this task is cancelled.
        self._transport.write(data)
        await self.writable()

    async def writable(self) -> None:
        """Returns once the reader has caught up (the buffer is under its high-water mark)."""
        await self._writable.wait()

    async def close(self) -> None:
        """Write out what is buffered (for a while, if the reader has stopped), then let go."""
        if self._transport is None:
            self._file.close()
            return
        self._transport.close()
        with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
            await self._lost
        if not self._lost.done():
            self._transport.abort()


def _write_all(file: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[file.write(view) :]


class _Lines:
    """Splits the chunks of stdin into lines; a line over MAX_LINE_BYTES comes out as None."""

    def __init__(self, source: _Input) -> None:
        self._read = source.read
        self._buffer = bytearray()
        self._oversize = False
        self._eof = False

    async def next(self) -> bytes | None:
        """The next line without its newline, None for an oversize one; raises EOFError at the end."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if self._oversize:
                    self._oversize = False
                    return None
                return line
            if self._eof:
                if self._buffer or self._oversize:  # a last line without a newline
                    self._buffer.append(ord("\n"))
                    continue
                raise EOFError
            if len(self._buffer) > MAX_LINE_BYTES:
                self._buffer.clear()
                self._oversize = True
            chunk = await self._read()
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True


# -- messages ----------------------------------------------------------------------------------


class _Writer:
    """The write stream the SDK's dispatcher sends answers and notifications to."""

    def __init__(self, output: _Output, answered: Callable[[RequestId | None], None]) -> None:
        self._output = output
        self._answered = answered
        self._closed = False

    async def send(self, item: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        message = item.message
        data = message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
        await self._output.write(data)
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            self._answered(message.id)

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> _Writer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _Wire:
    """The read stream the SDK's dispatcher reads requests from; answers malformed lines itself,
    and at end of input waits for the calls in flight before it reports the end."""

    def __init__(self, source: _Input, output: _Output, drain_seconds: float) -> None:
        self._lines = _Lines(source)
        self.writer = _Writer(output, self._answered)
        self._drain_seconds = drain_seconds
        self._output = output
        self._in_flight: set[RequestId] = set()
        self._idle = anyio.Event()
        self._room = anyio.Event()
        self._closed = False

    def _answered(self, request_id: RequestId | None) -> None:
        if request_id is not None:
            self._in_flight.discard(coerce_request_id(request_id))
        self._room.set()
        if not self._in_flight:
            self._idle.set()

    async def receive(self) -> SessionMessage:
        while not self._closed:
            await self._backpressure()
            try:
                line = await self._lines.next()
            except EOFError:
                break
            message = await self._message(line)
            if message is not None:
                return SessionMessage(message)
        await self._drain()
        raise anyio.EndOfStream

    async def _backpressure(self) -> None:
        """Read no further while the client is not reading its answers (stdout is paused), or
        while MAX_PENDING_ANSWERS requests are unanswered: what is not read stays in the pipe,
        and the client's writes wait, instead of the answers piling up in this process."""
        while True:
            await self._output.writable()
            if len(self._in_flight) < MAX_PENDING_ANSWERS:
                return
            self._room = anyio.Event()
            await self._room.wait()

    async def _drain(self) -> None:
        if self._in_flight:
            logger.debug("end of input with %d call(s) in flight: letting them finish", len(self._in_flight))
            self._idle = anyio.Event()
            with anyio.move_on_after(self._drain_seconds):
                await self._idle.wait()

    async def _message(self, line: bytes | None) -> JSONRPCMessage | None:
        """The line's message, or None when there is none to hand on (answered here, or blank)."""
        if line is None:
            await self._refuse(INVALID_REQUEST, f"Invalid Request: a message is at most {MAX_LINE_BYTES} bytes.")
            return None
        try:
            message = jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValidationError:
            if line.strip():
                await self._refuse(*_malformed(line))
            return None
        if isinstance(message, JSONRPCRequest):
            self._in_flight.add(coerce_request_id(message.id))
        elif isinstance(message, JSONRPCNotification):
            # Parsing drops an id that is not a string or an integer (null, true, 1.5) and reads
            # such a request as a notification, which would go unanswered.
            if b'"id"' in line and "id" in json.loads(line):
                await self._refuse(INVALID_REQUEST, "Invalid Request: the id must be a string or an integer.")
                return None
            if message.method == "notifications/cancelled" and message.params:
                cancelled = as_request_id(message.params.get("requestId"))
                if cancelled is not None:  # never answered (the spec says so): no longer waited for
                    self._answered(cancelled)
        return message

    async def _refuse(self, code: int, message: str, request_id: RequestId | None = None) -> None:
        logger.info("answered a malformed message with %d: %s", code, message)
        error = JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))
        with contextlib.suppress(anyio.ClosedResourceError):
            await self.writer.send(SessionMessage(error))

    async def aclose(self) -> None:
        self._closed = True

    def __aiter__(self) -> _Wire:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _Wire:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _malformed(line: bytes) -> tuple[int, str, RequestId | None]:
    """The JSON-RPC error for a line that is not a message of this protocol: code, message, id."""
    try:
        raw = json.loads(line)
    except ValueError:
        return PARSE_ERROR, "Parse error: the line is not JSON.", None
    except RecursionError:
        # JSON, but nested beyond what the parser's recursion allows (about 1,000 levels).
        return INVALID_REQUEST, "Invalid Request: the message is nested too deeply.", _leading_id(line)
    if isinstance(raw, list):
        return INVALID_REQUEST, "Invalid Request: batches are not supported; send one message per line.", None
    if not isinstance(raw, dict):
        return INVALID_REQUEST, "Invalid Request: a message is a JSON object.", None
    request_id = as_request_id(raw.get("id"))
    if raw.get("jsonrpc") != "2.0":
        return INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0".', request_id
    if not isinstance(raw.get("method"), str) and "result" not in raw and "error" not in raw:
        return INVALID_REQUEST, 'Invalid Request: a request needs a "method" string.', request_id
    return INVALID_REQUEST, "Invalid Request: not a request, notification or response of this protocol.", request_id


# A JSON string, and a top-level member whose value is a string, number, true, false or null.
_STRING: Final = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_SCALAR_MEMBER: Final = rb"\s*" + _STRING + rb"\s*:\s*(?:" + _STRING + rb"|[-+.\w]+)\s*,"
_LEADING_ID: Final = re.compile(
    rb"\s*\{(?:" + _SCALAR_MEMBER + rb')*?\s*"id"\s*:\s*(' + _STRING + rb"|-?[0-9]+)\s*[,}]"
)


def _leading_id(line: bytes) -> RequestId | None:
    """The id of a message too deep to parse, when it comes among the scalar members that open
    the object (where clients write it: before "params"); None when it cannot be told."""
    match = _LEADING_ID.match(line)
    if match is None:
        return None
    try:
        return as_request_id(json.loads(match.group(1)))
    except ValueError:
        return None
