"""Every setting retab-mcp reads, and the environment variable behind each.

`ENV_VARS` is the one list of variables: the CLI, the README's configuration table and the
client manifests are checked against it, so a new setting is added here and nowhere else.
Values are parsed once at start-up; a bad value stops the server with a message naming the
variable, instead of failing later on the first tool call.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar, get_args
from urllib.parse import urlsplit, urlunsplit

from retab_mcp.keys import KEY_RULE, well_formed

DEFAULT_BASE_URL: Final = "https://api.retab.com"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
AuthMode = Literal["oauth", "key", "token"]
AUTH_MODES: Final[tuple[AuthMode, ...]] = get_args(AuthMode)
# Each secret of RETAB_MCP_SECRET_KEYS: as sealing.KeyRing requires (not imported here, to keep
# start-up light).
MIN_SECRET_CHARS: Final = 32
LOG_LEVELS: Final[tuple[LogLevel, ...]] = get_args(LogLevel)


@dataclass(frozen=True, slots=True)
class EnvVar:
    name: str
    default: str | None
    description: str
    secret: bool = False


ENV_VARS: Final = (
    EnvVar("RETAB_API_KEY", None, "Retab API key, sent as `Authorization: Bearer <key>`.", secret=True),
    EnvVar("RETAB_API_BASE_URL", DEFAULT_BASE_URL, "Retab API base URL; a trailing `/` or `/v1` is ignored."),
    EnvVar(
        "RETAB_MCP_CALL_TIMEOUT",
        "30",
        "Seconds one tool call may take in all, retries and waits included.",
    ),
    EnvVar("RETAB_MCP_MAX_ATTEMPTS", "4", "Upstream attempts per tool call, the first one included (1 to 10)."),
    EnvVar(
        "RETAB_MCP_MAX_IN_FLIGHT",
        "64",
        "Tool calls one process runs at once; one more waits up to 1 s, then answers `overloaded` (1 to 10000).",
    ),
    EnvVar("RETAB_MCP_LOG_LEVEL", "WARNING", "Log level of the stderr log: " + ", ".join(LOG_LEVELS) + "."),
    EnvVar(
        "RETAB_MCP_READ_ONLY",
        "false",
        "`true` serves only the tools that change nothing (the get_ and list_ tools).",
    ),
    EnvVar(
        "RETAB_MCP_TOOLSETS",
        "blueprints,edits",
        "Kinds of run served, comma-separated: blueprints, edits, classifications, extractions, parses, "
        "partitions, splits, schemas, or `all`.",
    ),
    EnvVar("RETAB_MCP_TOOLS", "", "Serve only these tools of the toolsets, comma-separated (default: all of them)."),
    EnvVar("RETAB_MCP_SANDBOX", "false", "`true` serves the embedded Retab sandbox in-process and uses it (no key)."),
    EnvVar("RETAB_MCP_TRANSPORT", "stdio", "`stdio`, or `http` for Streamable HTTP."),
    EnvVar("RETAB_MCP_HOST", "127.0.0.1", "HTTP: address to listen on."),
    EnvVar("RETAB_MCP_PORT", "8000", "HTTP: port to listen on."),
    EnvVar("RETAB_MCP_HTTP_PATH", "/mcp", "HTTP: path of the MCP endpoint."),
    EnvVar(
        "RETAB_MCP_STATEFUL",
        "false",
        "HTTP: `true` keeps sessions and SSE streams; the default (stateless, JSON responses) lets any "
        "replica answer any request.",
    ),
    EnvVar(
        "RETAB_MCP_JSON_RESPONSE",
        "false",
        "HTTP: `true` answers every request with JSON, never SSE, for proxies that buffer SSE; a waiting "
        "call's progress is then not sent.",
    ),
    EnvVar(
        "RETAB_MCP_AUTH_TOKEN",
        None,
        "HTTP with a server key (`RETAB_API_KEY` set): the bearer token callers must present.",
        secret=True,
    ),
    EnvVar(
        "RETAB_MCP_AUTH",
        "",
        "HTTP: how callers sign in. `key`: each sends their own Retab key; `token`: the server's key for "
        "holders of `RETAB_MCP_AUTH_TOKEN`; `oauth`: users sign in with their Retab key through OAuth "
        "(claude.ai, Claude Desktop). Default: `token` with a server key, else `key`.",
    ),
    EnvVar(
        "RETAB_MCP_SECRET_KEYS",
        None,
        "`--auth oauth` and `--tasks` over HTTP: secrets that seal tokens and task ids, comma-separated, each at "
        "least 32 characters; the first seals, all open (rotation). The same on every replica.",
        secret=True,
    ),
    EnvVar(
        "RETAB_MCP_PUBLIC_URL",
        "",
        "`--auth oauth`: the URL clients reach this server at, e.g. `https://retab.example.com` (default "
        "`http://<host>:<port>`).",
    ),
    EnvVar("RETAB_MCP_OAUTH_ACCESS_TTL", "3600", "`--auth oauth`: seconds an access token lives (60 to 86400)."),
    EnvVar(
        "RETAB_MCP_OAUTH_REFRESH_TTL",
        "2592000",
        "`--auth oauth`: seconds a refresh token lives; each refresh issues a new one (60 to 31536000).",
    ),
    EnvVar("RETAB_MCP_ALLOWED_HOSTS", "", "HTTP: extra accepted `Host` values, comma-separated (`name:*` = any port)."),
    EnvVar("RETAB_MCP_ALLOWED_ORIGINS", "", "HTTP: extra accepted `Origin` values, comma-separated."),
    EnvVar(
        "RETAB_MCP_MAX_SESSIONS",
        "1000",
        "HTTP with `--stateful`: sessions open at once; one more is refused with 503 (1 to 100000).",
    ),
    EnvVar(
        "RETAB_MCP_WORKERS",
        "1",
        "HTTP, stateless: processes serving the port, one per core to use (1 to 64); under Kubernetes keep 1 "
        "and scale replicas.",
    ),
    EnvVar(
        "RETAB_MCP_SHUTDOWN_GRACE",
        "35",
        "HTTP: seconds in-flight calls get to finish after SIGTERM; longer than the call budget, so that "
        "they all can. A call still running 1 s before it ends answers `shutting_down`.",
    ),
    EnvVar(
        "RETAB_MCP_TASKS",
        "false",
        "`true` answers a waiting get_/cancel_ call whose run has not stopped with an MCP task to poll, for "
        "clients that declare the tasks extension.",
    ),
    EnvVar("RETAB_MCP_TASK_TTL", "3600", "Seconds a task id can be polled after it was issued (60 to 604800)."),
)
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
UNUSED_AUTH_WARNING: Final = (
    "RETAB_MCP_AUTH_TOKEN is set but ignored: with no RETAB_API_KEY each caller sends their own Retab key, "
    "and any caller with a key Retab accepts is served. Unset it, or set RETAB_API_KEY to serve token "
    "holders with the server's key."
)


# What a key copied with its surroundings carries: the server takes the key out of them.
_QUOTES: Final = ('"', "'", "`")
# What no key holds, but a placeholder or an example does ("YOUR_RETAB_API_KEY", "<key>", "rt_live_...").
_PLACEHOLDER: Final = re.compile(r"YOUR_|<|>|\.\.\.|…|\s", re.IGNORECASE)
KEY_FIX: Final = (
    "put a Retab API key (from the Retab dashboard, rt_live_... or rt_test_...) in RETAB_API_KEY, in the "
    "\"env\" block of this server's entry in your MCP client's configuration, and restart the server"
)


def parse_api_key(raw: str | None, *, warn: bool = False) -> tuple[str | None, str | None]:
    """RETAB_API_KEY as (key, problem): the key with one pair of quotes and a leading `Bearer `
    taken off (and, if `warn`, one line on stderr saying so, never the key); or no key and why,
    when it is clearly not one (a placeholder, an example, a malformed value). Never the value
    in the problem."""
    value = (raw or "").strip()
    taken = []
    if len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES:
        value = value[1:-1].strip()
        taken.append("the quotes around it")
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
        taken.append("its leading `Bearer `")
    if taken and warn:
        print(f"retab-mcp: warning: RETAB_API_KEY: took off {' and '.join(taken)}; the rest is used", file=sys.stderr)
    if not value:
        return None, None
    if _PLACEHOLDER.search(value):
        return None, f"RETAB_API_KEY is not a key but a placeholder or an example (the value is not shown): {KEY_FIX}"
    if not well_formed(value):
        return None, f"RETAB_API_KEY must be {KEY_RULE} (the value is not shown): {KEY_FIX}"
    return value, None


class ConfigError(ValueError):
    """A setting has a value the server cannot run with; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    api_key: str | None = field(default=None, repr=False)
    # Why RETAB_API_KEY gives no key although it is set (parse_api_key); served like a missing
    # key on stdio, each call answering this; refused at start-up over HTTP.
    key_problem: str | None = None
    base_url: str = DEFAULT_BASE_URL
    call_timeout: float = 30.0
    max_attempts: int = 4
    max_in_flight: int = 64
    # Resource reads (an edit's filled document, up to 20 MiB) one process runs at once, each
    # holding tens of MB while it does: their own small cap, next to the tool calls'.
    max_resource_reads: int = 2
    log_level: LogLevel = "WARNING"
    # Which tools are served: those of the toolsets (kinds of run), then only the read-only ones,
    # and/or only those named (empty: all). Names are checked against the run table by the server.
    read_only: bool = False
    toolsets: tuple[str, ...] = ("blueprints", "edits")
    tools: tuple[str, ...] = ()
    # Serve the embedded Retab sandbox in this process and talk to it instead of `base_url`.
    sandbox: bool = False
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    http_path: str = "/mcp"
    stateful: bool = False
    json_response: bool = False
    auth_token: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_sessions: int = 1000
    workers: int = 1
    shutdown_grace: float = 35.0
    # How HTTP callers sign in (None: as the keys set imply, `token` with a server key, else `key`).
    auth: AuthMode | None = None
    # The key ring that seals OAuth's tokens and MCP task ids (sealing.py).
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    public_url: str | None = None
    oauth_access_ttl: int = 3600
    oauth_refresh_ttl: int = 30 * 24 * 3600
    # MCP tasks (tasks.py): off unless asked for, since some hosts declare the extension by default.
    tasks: bool = False
    task_ttl: float = 3600.0

    @property
    def uses_server_key(self) -> bool:
        """Upstream calls use one key of the server's (or the sandbox's), not each caller's own."""
        return bool(self.api_key) or self.sandbox

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, warn: bool = False) -> Settings:
        """The settings `environ` (default: this process's) gives; `warn`: say on stderr what was
        taken off the key (the server's start, not doctor's report)."""
        env = os.environ if environ is None else environ
        defaults = {var.name: var.default for var in ENV_VARS}

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or defaults[name]

        api_key, key_problem = parse_api_key(env.get("RETAB_API_KEY"), warn=warn)
        return cls(
            api_key=api_key,
            key_problem=key_problem,
            base_url=normalize_base_url(get("RETAB_API_BASE_URL") or DEFAULT_BASE_URL),
            call_timeout=_number("RETAB_MCP_CALL_TIMEOUT", get("RETAB_MCP_CALL_TIMEOUT"), float, 0.1, 3600),
            max_attempts=_number("RETAB_MCP_MAX_ATTEMPTS", get("RETAB_MCP_MAX_ATTEMPTS"), int, 1, 10),
            max_in_flight=_number("RETAB_MCP_MAX_IN_FLIGHT", get("RETAB_MCP_MAX_IN_FLIGHT"), int, 1, 10_000),
            log_level=parse_log_level(get("RETAB_MCP_LOG_LEVEL") or "WARNING"),
            read_only=_flag("RETAB_MCP_READ_ONLY", get("RETAB_MCP_READ_ONLY")),
            toolsets=split_list(get("RETAB_MCP_TOOLSETS")),
            tools=split_list(get("RETAB_MCP_TOOLS")),
            sandbox=_flag("RETAB_MCP_SANDBOX", get("RETAB_MCP_SANDBOX")),
            transport=parse_transport(get("RETAB_MCP_TRANSPORT") or "stdio"),
            host=get("RETAB_MCP_HOST") or "127.0.0.1",
            port=_number("RETAB_MCP_PORT", get("RETAB_MCP_PORT"), int, 0, 65535),
            http_path=parse_http_path(get("RETAB_MCP_HTTP_PATH") or "/mcp"),
            stateful=_flag("RETAB_MCP_STATEFUL", get("RETAB_MCP_STATEFUL")),
            json_response=_flag("RETAB_MCP_JSON_RESPONSE", get("RETAB_MCP_JSON_RESPONSE")),
            auth_token=_token("RETAB_MCP_AUTH_TOKEN", get("RETAB_MCP_AUTH_TOKEN")),
            allowed_hosts=split_list(get("RETAB_MCP_ALLOWED_HOSTS")),
            allowed_origins=split_list(get("RETAB_MCP_ALLOWED_ORIGINS")),
            max_sessions=_number("RETAB_MCP_MAX_SESSIONS", get("RETAB_MCP_MAX_SESSIONS"), int, 1, 100_000),
            workers=parse_workers(get("RETAB_MCP_WORKERS") or "1"),
            shutdown_grace=_number("RETAB_MCP_SHUTDOWN_GRACE", get("RETAB_MCP_SHUTDOWN_GRACE"), float, 0, 3600),
            auth=parse_auth(get("RETAB_MCP_AUTH")),
            secret_keys=parse_secret_keys(get("RETAB_MCP_SECRET_KEYS")),
            public_url=parse_public_url(get("RETAB_MCP_PUBLIC_URL")),
            oauth_access_ttl=_number("RETAB_MCP_OAUTH_ACCESS_TTL", get("RETAB_MCP_OAUTH_ACCESS_TTL"), int, 60, 86_400),
            oauth_refresh_ttl=_number(
                "RETAB_MCP_OAUTH_REFRESH_TTL", get("RETAB_MCP_OAUTH_REFRESH_TTL"), int, 60, 365 * 86_400
            ),
            tasks=_flag("RETAB_MCP_TASKS", get("RETAB_MCP_TASKS")),
            task_ttl=_number("RETAB_MCP_TASK_TTL", get("RETAB_MCP_TASK_TTL"), float, 60, 604_800),
        )

    @property
    def oauth(self) -> bool:
        return self.auth == "oauth"

    @property
    def issuer_url(self) -> str:
        """Where clients reach this server: RETAB_MCP_PUBLIC_URL, else the address it listens on."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def check_auth(self) -> None:
        """Refuse settings that contradict the auth mode asked for (RETAB_MCP_AUTH, --auth).
        Messages name variables, never their values."""
        if self.auth is None:
            if self.public_url or (self.secret_keys and not self.tasks):
                raise ConfigError(
                    "RETAB_MCP_SECRET_KEYS and RETAB_MCP_PUBLIC_URL apply to RETAB_MCP_AUTH=oauth (--auth oauth), "
                    "which is not set (RETAB_MCP_SECRET_KEYS also to RETAB_MCP_TASKS)"
                )
            return
        if self.auth == "key" and self.uses_server_key:
            raise ConfigError(
                "RETAB_MCP_AUTH=key (--auth key) has each caller send their own Retab key: unset RETAB_API_KEY "
                "(and --sandbox), or use --auth token"
            )
        if self.auth == "token" and not (self.uses_server_key and self.auth_token):
            raise ConfigError(
                "RETAB_MCP_AUTH=token (--auth token) needs both RETAB_API_KEY (or --sandbox) and RETAB_MCP_AUTH_TOKEN"
            )
        if self.auth != "oauth":
            if self.public_url or (self.secret_keys and not self.tasks):
                raise ConfigError(
                    "RETAB_MCP_SECRET_KEYS and RETAB_MCP_PUBLIC_URL apply to --auth oauth only "
                    "(RETAB_MCP_SECRET_KEYS also to --tasks)"
                )
            return
        if self.transport != "http":
            raise ConfigError("RETAB_MCP_AUTH=oauth (--auth oauth) needs --transport http: stdio has no sign-in")
        if self.api_key:
            raise ConfigError(
                "RETAB_API_KEY is set with RETAB_MCP_AUTH=oauth (--auth oauth): with OAuth each user signs in "
                "with their own Retab key. Unset RETAB_API_KEY."
            )
        if self.sandbox:
            raise ConfigError(
                "RETAB_MCP_SANDBOX (--sandbox) uses the sandbox's own key, not the users': with --auth oauth, "
                "run `retab-mcp sandbox` and point RETAB_API_BASE_URL at it"
            )
        if self.auth_token:
            raise ConfigError("RETAB_MCP_AUTH_TOKEN is set with RETAB_MCP_AUTH=oauth (--auth oauth): unset it")
        if not self.secret_keys:
            raise ConfigError(
                "RETAB_MCP_AUTH=oauth (--auth oauth) needs RETAB_MCP_SECRET_KEYS: one or more secrets of at least "
                f"{MIN_SECRET_CHARS} characters, comma-separated, shared by every replica"
            )
        if self.public_url is None and self.host not in LOOPBACK_HOSTS:
            raise ConfigError(
                "RETAB_MCP_PUBLIC_URL (--public-url) must be set with --auth oauth beyond loopback: tokens and "
                "sign-in links name the URL clients reach this server at"
            )

    def check_http_exposure(self) -> None:
        """Refuse to be an open relay: a server key served beyond loopback needs an auth token.
        Warn (stderr) of an auth token that guards nothing: an operator who set one expects it to.
        A RETAB_API_KEY that is set but no key is refused: serving each caller's own key instead
        is not what the operator meant."""
        if self.key_problem and not self.sandbox:
            raise ConfigError(self.key_problem)
        if self.uses_server_key and not self.auth_token and self.host not in LOOPBACK_HOSTS:
            raise ConfigError(
                f"refusing to serve on {self.host} with a server-side Retab key and no RETAB_MCP_AUTH_TOKEN: "
                "anyone who can reach the port could spend that key. Set RETAB_MCP_AUTH_TOKEN (callers send "
                "it as a bearer token), or unset RETAB_API_KEY so each caller brings their own key."
            )
        if self.auth_token and not self.uses_server_key:
            print(f"retab-mcp: warning: {UNUSED_AUTH_WARNING}", file=sys.stderr, flush=True)

    def check_tasks(self) -> None:
        """Tasks over HTTP need a key ring every process shares: an id sealed with one process's
        ephemeral key opens nowhere else, and not after a restart."""
        if self.tasks and self.transport == "http" and not self.secret_keys:
            raise ConfigError(
                "RETAB_MCP_TASKS (--tasks) over HTTP needs RETAB_MCP_SECRET_KEYS: task ids are sealed with it, so "
                "that every process and replica, and a restarted one, can answer them."
            )

    def check_workers(self) -> None:
        """More than one worker process: only where any process can answer any request."""
        if self.workers == 1:
            return
        if self.transport != "http":
            raise ConfigError("RETAB_MCP_WORKERS (--workers) applies to --transport http; stdio is one process")
        if self.stateful:
            raise ConfigError(
                "RETAB_MCP_WORKERS (--workers) above 1 needs stateless HTTP: a session lives in one process and "
                "its next request may reach another. Unset RETAB_MCP_STATEFUL (--stateful), or use one worker."
            )
        if self.sandbox:
            raise ConfigError(
                "RETAB_MCP_WORKERS (--workers) above 1 cannot share the embedded sandbox (RETAB_MCP_SANDBOX, "
                "--sandbox): each process would have its own. Run `retab-mcp sandbox` and point "
                "RETAB_API_BASE_URL at it."
            )


def display_url(url: str) -> str:
    """`url` without any user:password part, for messages, results and logs (a base URL may carry
    a proxy's or a gateway's credentials)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def normalize_base_url(url: str) -> str:
    """Strip what the API paths already carry: a trailing `/` and a trailing `/v1` (as the SDK does)."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")].rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"RETAB_API_BASE_URL must start with http:// or https:// (got {url!r})")
    return url


def parse_log_level(value: str) -> LogLevel:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"RETAB_MCP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} (got {value!r})")
    return level


_Number = TypeVar("_Number", int, float)


def parse_transport(value: str) -> Literal["stdio", "http"]:
    match value.strip().lower():
        case "stdio":
            return "stdio"
        case "http":
            return "http"
    raise ConfigError(f"RETAB_MCP_TRANSPORT must be stdio or http (got {value!r})")


def parse_auth(value: str | None) -> AuthMode | None:
    mode = (value or "").strip().lower()
    if not mode:
        return None
    for known in AUTH_MODES:
        if mode == known:
            return known
    raise ConfigError(f"RETAB_MCP_AUTH must be one of {', '.join(AUTH_MODES)} (got {value!r})")


def parse_public_url(value: str | None) -> str | None:
    """`scheme://host[:port]`: the issuer of tokens, so https beyond loopback, and no path (the
    sign-in routes sit at the root)."""
    url = (value or "").strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    loopback = parts.hostname in LOOPBACK_HOSTS
    if (
        parts.scheme not in ("https", "http")
        or (parts.scheme == "http" and not loopback)
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ConfigError(
            "RETAB_MCP_PUBLIC_URL must be https://host[:port] (--public-url), with no path; http only on "
            f"loopback (got {value!r})"
        )
    return url


def parse_http_path(value: str) -> str:
    path = "/" + value.strip().strip("/")
    if path == "/" or any(part in ("healthz", "readyz") for part in path.split("/")):
        raise ConfigError(f"RETAB_MCP_HTTP_PATH must be a path like /mcp, not /healthz or /readyz (got {value!r})")
    return path


def parse_workers(value: str) -> int:
    return _number("RETAB_MCP_WORKERS", value, int, 1, 64)


def parse_secret_keys(value: str | None) -> tuple[str, ...]:
    keys = split_list(value)
    if any(len(key) < MIN_SECRET_CHARS for key in keys):
        raise ConfigError(
            f"RETAB_MCP_SECRET_KEYS must be secrets of at least {MIN_SECRET_CHARS} characters each, "
            "comma-separated (the value is not shown)"
        )
    return keys


def split_list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _token(name: str, value: str | None) -> str | None:
    if value is not None and not well_formed(value):  # the shape of a key (keys.py)
        raise ConfigError(f"{name} must be {KEY_RULE} (the value is not shown)")
    return value


def _flag(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false (got {raw!r})")


def _number(name: str, raw: str | None, kind: type[_Number], low: _Number, high: _Number) -> _Number:
    try:
        value = kind(raw or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number from {low} to {high} (got {raw!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low} to {high} (got {raw!r})")
    return value
