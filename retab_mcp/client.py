"""The one HTTP client to the Retab API: retries, the per-call time budget, upstream errors.

Why it does more than the Retab SDK: an agent's tool call has to answer before the MCP client's
own tool timeout (often 30 to 60 s), whatever the API does. So every tool call runs inside one
deadline (`RETAB_MCP_CALL_TIMEOUT`) that covers all its requests, attempts and waits; retries
cover 429, 5xx gateway errors, connection errors and timeouts (safe: cancel is idempotent, reads
and lists change nothing); `Retry-After` is honoured, and when it asks for longer than the
deadline leaves the call answers at once instead of sleeping.
Clock, sleep and jitter are injectable so tests never wait for real.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import re
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import anyio
import pydantic_core

from retab_mcp._json import map_json
from retab_mcp._version import __version__
from retab_mcp.config import Settings, display_url
from retab_mcp.endpoints import RUN_ID
from retab_mcp.errors import (
    RETRIED_STATUSES,
    CallFailed,
    ErrorCode,
    bounded_line,
    request_id_from,
    upstream_failure,
)
from retab_mcp.keys import check_sent_key

if TYPE_CHECKING:
    # Imported where it is first used instead (see `RetabClient._pool`): off the start-up path.
    import httpx

logger = logging.getLogger(__name__)

USER_AGENT: Final = f"retab-mcp/{__version__}"

# A run's output can hold a multi-megabyte PDF as a data URL; anything far beyond that is not
# a cancel response, and reading it whole would only cost memory. Counted as received and as
# inflated (a small gzip body can inflate a thousandfold).
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
# What a reply's structure may cost: JSON containers and separators outside strings, counted
# in the raw bytes before parsing (`json_nodes`). A run is a few hundred of them (a large form a
# few thousand), and a data URL none; tens of megabytes of tiny objects would otherwise cost
# seconds of CPU and gigabytes of memory on the event loop, in parsing and in every walk over
# the result after it.
MAX_JSON_NODES: Final = 100_000
INFLATE_STEP_BYTES: Final = 1024 * 1024
# An exponent of three digits or more: the only way JSON spells a number too large for a float.
_HUGE_EXPONENT: Final = re.compile(rb"[eE][+-]?\d{3,}")
MAX_RETRY_AFTER_SECONDS: Final = 86_400.0
BACKOFF_BASE_SECONDS: Final = 0.5
BACKOFF_CAP_SECONDS: Final = 8.0


def run_path(template: str, run_id: str) -> str:
    """`template` with `{id}` filled by `run_id` as exactly one path segment.

    The id is checked again here, next to where it enters the URL, whatever the caller checked:
    the Retab SDK sends `../../x` unencoded, which reaches another endpoint. A malformed id is not
    quoted back: it may be of any length, or a key.
    """
    if not RUN_ID.fullmatch(run_id):
        raise CallFailed(
            ErrorCode.INVALID_ARGUMENT,
            "The id you sent is not a valid Retab run id: 1 to 128 characters from A-Z, a-z, 0-9, _ and -.",
        )
    return template.format(id=quote(run_id, safe=""))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    # "inf" and a date in 2099 are numbers too: never more than a day, which no caller waits anyway.
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True, slots=True)
class Reply:
    """A 2xx answer: the parsed JSON body and what the envelope reports about the exchange."""

    body: Any
    http_status: int
    request_id: str | None
    attempts: int


# The connection pool, in shards. httpcore's pool walks all its connections twice per request
# (and counts the idle ones for each of them), so its CPU cost per request grows with the number
# of connections; under load that made the cost of a call grow with concurrency. Shards of a
# few connections each, taken in turn, keep that walk short, and together keep as many
# connections alive as the server admits calls (RETAB_MCP_MAX_IN_FLIGHT's default, 64).
POOL_SHARDS: Final = 16
SHARD_KEEPALIVE: Final = 4
SHARD_CONNECTIONS: Final = 8


def _default_transport() -> httpx.AsyncBaseTransport | None:
    """The sharded pool; or httpx's own (None) where proxy variables are set, which only httpx's
    own pool applies (HTTPS_PROXY, ALL_PROXY, NO_PROXY): a proxied network keeps working."""
    import urllib.request  # httpx imports it too: already loaded by the time the pool is built

    return None if urllib.request.getproxies() else sharded_transport()


def sharded_transport() -> httpx.AsyncBaseTransport:
    # Defined here, not at module level: httpx is imported when the pool is built (see RetabClient).
    import httpx

    class Sharded(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            limits = httpx.Limits(max_connections=SHARD_CONNECTIONS, max_keepalive_connections=SHARD_KEEPALIVE)
            tls = httpx.create_ssl_context()  # one CA bundle loaded, shared by the shards
            self._shards = [httpx.AsyncHTTPTransport(verify=tls, limits=limits) for _ in range(POOL_SHARDS)]
            self._turn = itertools.cycle(self._shards)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await next(self._turn).handle_async_request(request)

        async def aclose(self) -> None:
            for shard in self._shards:
                await shard.aclose()

    return Sharded()


class RetabClient:
    """An `httpx.AsyncClient` with Retab's auth, retries and the per-call budget.

    One instance per process (opened in the server's lifespan), so every call shares one
    connection pool. The key is passed per call, not held here: with the HTTP transport each
    caller brings their own.

    The pool itself is built on the first request, not here: importing httpx and building an
    `httpx.AsyncClient` (which loads the CA bundle into an SSL context) was the largest cost of
    start-up after the SDK's own import, between the client spawning the server and its first
    answer (docs/benchmarks.md). The first tool call pays it instead, once; a TLS setup that
    httpx cannot use (an unreadable SSL_CERT_FILE) therefore shows on that call, as a logged
    configuration_error, rather than stopping the server at start.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        # Public so that whatever waits inside a tool call (the status polls) keeps the same time.
        self.clock = clock
        self.sleep = sleep
        self._jitter = jitter
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> RetabClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _pool(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            try:
                self._http = httpx.AsyncClient(
                    base_url=self._settings.base_url,
                    headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                    timeout=httpx.Timeout(self._settings.call_timeout),
                    follow_redirects=False,
                    transport=self._transport or _default_transport(),
                )
            except (OSError, ValueError) as exc:
                # Built lazily, so a broken setup (an unreadable SSL_CERT_FILE, say) shows here, on
                # a call: it is the user's to fix, not a bug of ours.
                logger.error("could not set up the HTTP client: %s", exc)
                raise CallFailed(
                    ErrorCode.CONFIGURATION_ERROR,
                    f"The HTTP client to Retab could not be set up ({type(exc).__name__}); check the TLS "
                    "settings (SSL_CERT_FILE, SSL_CERT_DIR) and proxy variables. Nothing was sent.",
                ) from None
        return self._http

    def deadline(self) -> float:
        """When a tool call starting now must have answered, on `self.clock`."""
        return self.clock() + self._settings.call_timeout

    async def request(
        self,
        method: Literal["GET", "POST"],
        path: str,
        *,
        api_key: str,
        verb: str,
        subject: str,
        params: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> Reply:
        """`method path` with retries until `deadline` (default: a call budget from now).

        Returns a `Reply`, or raises `CallFailed`; `verb` and `subject` ("cancel", "edit 'edt_1'")
        word its message.
        """
        # Checked here, next to where the key enters a header, whoever passed it (a tool call, the
        # stateful session check): a caller's key with a control character or non-ASCII in it is
        # never forwarded, nor lets the HTTP client fail on it. The server's is checked at start-up.
        check_sent_key(api_key)
        if deadline is None:
            deadline = self.deadline()
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(method, path, params, api_key, deadline, verb, subject)
            if isinstance(outcome, Reply):
                return Reply(outcome.body, outcome.http_status, outcome.request_id, attempt)
            outcome.attempts = attempt
            if not _retried(outcome) or attempt >= self._settings.max_attempts:
                raise outcome
            wait = outcome.retry_after_seconds if outcome.retry_after_seconds is not None else self._backoff(attempt)
            if wait >= deadline - self.clock():
                # Waiting would overrun the call's budget: answer now, saying when to retry.
                if outcome.code is ErrorCode.RATE_LIMITED:
                    outcome.retry_after_seconds = round(wait, 3)
                raise outcome
            logger.info("retrying %s %s after %s in %.2fs (attempt %d)", method, path, outcome.code, wait, attempt)
            await self.sleep(wait)

    async def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        api_key: str,
        deadline: float,
        verb: str,
        subject: str,
    ) -> Reply | CallFailed:
        http = self._pool()  # imports httpx on the first call; a dictionary lookup after that
        import httpx

        left = deadline - self.clock()
        if left <= 0:
            return _timed_out(self._settings)
        # One stalled attempt may take half the budget, so a retry still fits after it. httpx
        # measures it per connect, write and read, from when the attempt has its connection: time
        # spent waiting for one, or behind other calls' CPU work, counts only against the call's
        # own deadline, which covers everything (the pool, the body, its parsing).
        stall = min(left, self._settings.call_timeout / 2)
        started = self.clock()
        try:
            with anyio.fail_after(left):
                async with http.stream(
                    method,
                    path,
                    params=params,
                    headers={"Authorization": f"Bearer {api_key}", "Accept-Encoding": "gzip"},
                    timeout=httpx.Timeout(stall, pool=left),
                ) as response:
                    body = await _read_bounded(response)
        except (TimeoutError, httpx.TimeoutException):
            logger.info("%s %s timed out after %.2fs", method, path, self.clock() - started)
            return _timed_out(self._settings)
        except _UnreadableBody as exc:
            return CallFailed(
                ErrorCode.INVALID_RESPONSE,
                f"The Retab API sent a response {exc}.",
                http_status=response.status_code,
                request_id=request_id_from(response.headers.get("x-request-id")),
            )
        except httpx.HTTPError as exc:
            # The exception's text can carry the URL; the type name says enough and leaks nothing.
            logger.info("%s %s failed: %s", method, path, type(exc).__name__)
            return CallFailed(
                ErrorCode.NETWORK_ERROR,
                f"Could not reach the Retab API at {display_url(self._settings.base_url)} ({type(exc).__name__}).",
            )

        status = response.status_code
        request_id = request_id_from(response.headers.get("x-request-id"))
        logger.debug("%s %s -> %d in %.0f ms", method, path, status, (self.clock() - started) * 1000)
        if 200 <= status < 300:
            try:
                return Reply(parse_json(body), status, request_id, 1)
            except ValueError as exc:
                return CallFailed(
                    ErrorCode.INVALID_RESPONSE,
                    f"The Retab API answered HTTP {status} with a body that is {exc}.",
                    http_status=status,
                    request_id=request_id,
                )
        return upstream_failure(
            status,
            body,
            verb=verb,
            subject=subject,
            request_id=request_id,
            retry_after_seconds=parse_retry_after(response.headers.get("retry-after")),
            base_url=display_url(self._settings.base_url),
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half the step fixed, half random."""
        step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1))
        return step / 2 + self._jitter() * step / 2


def parse_json(body: bytes | bytearray) -> Any:
    """A reply body as JSON, within `MAX_JSON_NODES`, with no infinite number left in it.

    Raises ValueError saying what the body is instead ("not JSON", "too complex ...").
    """
    if json_nodes(body) > MAX_JSON_NODES:
        raise ValueError(f"too complex to be a Retab answer (over {MAX_JSON_NODES} JSON values)")
    try:
        # Keys only: pydantic-core's string cache is process-wide, and every answer's values
        # (timestamps, ids) are new strings, which would fill it call after call. NaN and
        # Infinity are not JSON.
        value = pydantic_core.from_json(body, cache_strings="keys", allow_inf_nan=False)
    except ValueError:
        raise ValueError("not JSON") from None
    # A number like 1e999 parses as infinity, which no JSON encoder may write back out: it
    # becomes the largest float of its sign instead, still a number where the model wants one.
    return _finite(value) if _HUGE_EXPONENT.search(body) else value


def json_nodes(body: bytes | bytearray) -> int:
    """How many containers and separators (`{ [ ,`) a JSON body has outside its strings; past
    `MAX_JSON_NODES`, a number that may not be exact but is over it too.

    Counted with C-speed operations only (this runs on every reply, up to `MAX_BODY_BYTES`): a
    count of the raw bytes first, which is exact when no string holds such a character and is
    almost always under the limit; only a body over it has its strings taken out and is counted
    again. Every string of valid JSON but the first follows a `[`, `{` or `,` of its own and one
    key's `:`, so more than twice the limit in strings is over it anyway: no more are taken out.
    """
    nodes = _structure(body)
    if nodes <= MAX_JSON_NODES:
        return nodes
    # Escapes out first (`\\`, then `\"`), so that a string is a plain `"..."` for the pattern:
    # a pattern that reads escapes itself costs seconds per 20 MB of them.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside, strings = _PLAIN_STRING.subn(b"", unescaped, count=2 * MAX_JSON_NODES + 2)
    return MAX_JSON_NODES + 1 if strings > 2 * MAX_JSON_NODES + 1 else _structure(outside)


_PLAIN_STRING: Final = re.compile(rb'"[^"]*"')


def _structure(body: bytes | bytearray) -> int:
    return body.count(b"{") + body.count(b"[") + body.count(b",")


def _finite(value: Any) -> Any:
    return map_json(value, _finite_number)


def _finite_number(value: Any, _key: object, _parent: object) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else math.copysign(sys.float_info.max, value)
    return value


class _UnreadableBody(Exception):
    """What is wrong with a body, as the end of "The Retab API sent a response ..."."""


_TOO_LARGE: Final = f"larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB"


async def _read_bounded(response: httpx.Response) -> bytearray:
    """The body, inflated by us (never more than `MAX_BODY_BYTES`, at any step), or
    `_UnreadableBody`. httpx would inflate each network chunk whole: a thousandfold."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _UnreadableBody(_TOO_LARGE)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or zlib header, detected
    elif encoding in ("", "identity"):
        inflater = None
    else:
        raise _UnreadableBody(f"in an encoding it was not asked for ({bounded_line(encoding, 40)})")
    # One growing buffer, not a list of chunks joined at the end: that join would double the peak.
    body = bytearray()
    received = 0
    async for raw in response.aiter_raw():
        received += len(raw)
        if received > MAX_BODY_BYTES:
            raise _UnreadableBody(_TOO_LARGE)
        pending = raw
        while pending:
            if inflater is None:
                chunk, pending = pending, b""
            else:
                try:
                    chunk = inflater.decompress(pending, min(INFLATE_STEP_BYTES, MAX_BODY_BYTES - len(body) + 1))
                except zlib.error:
                    raise _UnreadableBody(f"whose {encoding} encoding is corrupt") from None
                pending = inflater.unconsumed_tail
            if len(body) + len(chunk) > MAX_BODY_BYTES:
                raise _UnreadableBody(_TOO_LARGE)
            body += chunk
            if inflater is not None and inflater.eof:
                break
    return body


def _retried(failure: CallFailed) -> bool:
    if failure.http_status is not None:
        return failure.http_status in RETRIED_STATUSES
    return failure.code in (ErrorCode.TIMEOUT, ErrorCode.NETWORK_ERROR)


def _timed_out(settings: Settings) -> CallFailed:
    return CallFailed(
        ErrorCode.TIMEOUT,
        f"The Retab API did not answer within the call budget of {settings.call_timeout:g} seconds "
        "(RETAB_MCP_CALL_TIMEOUT).",
    )
