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

import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import anyio
import pydantic_core

from retab_mcp import __version__
from retab_mcp.config import Settings
from retab_mcp.errors import RETRIED_STATUSES, CallFailed, ErrorCode, upstream_failure

if TYPE_CHECKING:
    # Imported where it is first used instead (see `RetabClient._pool`): off the start-up path.
    import httpx

logger = logging.getLogger(__name__)

USER_AGENT: Final = f"retab-mcp/{__version__}"
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
_RUN_ID: Final = re.compile(RUN_ID_PATTERN)

# A run's output can hold a multi-megabyte PDF as a data URL; anything far beyond that is not
# a cancel response, and reading it whole would only cost memory.
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
BACKOFF_BASE_SECONDS: Final = 0.5
BACKOFF_CAP_SECONDS: Final = 8.0


def run_path(template: str, run_id: str) -> str:
    """`template` with `{id}` filled by `run_id` as exactly one path segment.

    The id is checked again here, next to where it enters the URL, whatever the caller checked:
    the Retab SDK sends `../../x` unencoded, which reaches another endpoint.
    """
    if not _RUN_ID.fullmatch(run_id):
        raise CallFailed(ErrorCode.INVALID_ARGUMENT, f"{run_id!r} is not a valid Retab run id.")
    return template.format(id=quote(run_id, safe=""))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Reply:
    """A 2xx answer: the parsed JSON body and what the envelope reports about the exchange."""

    body: Any
    http_status: int
    request_id: str | None
    attempts: int


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
                    transport=self._transport,
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
        # One stalled attempt may take half the budget, so a retry still fits after it.
        attempt_timeout = min(left, self._settings.call_timeout / 2)
        started = self.clock()
        try:
            with anyio.fail_after(attempt_timeout):
                async with http.stream(
                    method,
                    path,
                    params=params,
                    headers={"Authorization": f"Bearer {api_key}"},
                    timeout=httpx.Timeout(attempt_timeout),
                ) as response:
                    body = await _read_bounded(response)
        except (TimeoutError, httpx.TimeoutException):
            logger.info("%s %s timed out after %.2fs", method, path, self.clock() - started)
            return _timed_out(self._settings)
        except _BodyTooLarge:
            return CallFailed(
                ErrorCode.INVALID_RESPONSE,
                f"The Retab API sent a response larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB.",
                http_status=response.status_code,
                request_id=response.headers.get("x-request-id"),
            )
        except httpx.HTTPError as exc:
            # The exception's text can carry the URL; the type name says enough and leaks nothing.
            logger.info("%s %s failed: %s", method, path, type(exc).__name__)
            return CallFailed(
                ErrorCode.NETWORK_ERROR,
                f"Could not reach the Retab API at {self._settings.base_url} ({type(exc).__name__}).",
            )

        status = response.status_code
        request_id = response.headers.get("x-request-id")
        logger.debug("%s %s -> %d in %.0f ms", method, path, status, (self.clock() - started) * 1000)
        if 200 <= status < 300:
            try:
                # Keys only: pydantic-core's string cache is process-wide, and every answer's
                # values (timestamps, ids) are new strings, which would fill it call after call.
                return Reply(pydantic_core.from_json(body, cache_strings="keys"), status, request_id, 1)
            except ValueError:
                return CallFailed(
                    ErrorCode.INVALID_RESPONSE,
                    f"The Retab API answered HTTP {status} with a body that is not JSON.",
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
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half the step fixed, half random."""
        step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1))
        return step / 2 + self._jitter() * step / 2


class _BodyTooLarge(Exception):
    pass


async def _read_bounded(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


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
