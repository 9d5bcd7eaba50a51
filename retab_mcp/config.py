"""Every setting retab-mcp reads, and the environment variable behind each.

`ENV_VARS` is the one list of variables: the CLI, the README's configuration table and the
client manifests are checked against it, so a new setting is added here and nowhere else.
Values are parsed once at start-up; a bad value stops the server with a message naming the
variable, instead of failing later on the first tool call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar, get_args

DEFAULT_BASE_URL: Final = "https://api.retab.com"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
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
    EnvVar("RETAB_MCP_LOG_LEVEL", "WARNING", "Log level of the stderr log: " + ", ".join(LOG_LEVELS) + "."),
)


class ConfigError(ValueError):
    """A setting has a value the server cannot run with; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    call_timeout: float = 30.0
    max_attempts: int = 4
    log_level: LogLevel = "WARNING"
    # Serve the embedded Retab sandbox in this process and talk to it instead of `base_url`.
    sandbox: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = {var.name: var.default for var in ENV_VARS}

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or defaults[name]

        return cls(
            api_key=get("RETAB_API_KEY"),
            base_url=normalize_base_url(get("RETAB_API_BASE_URL") or DEFAULT_BASE_URL),
            call_timeout=_number("RETAB_MCP_CALL_TIMEOUT", get("RETAB_MCP_CALL_TIMEOUT"), float, 0.1, 3600),
            max_attempts=_number("RETAB_MCP_MAX_ATTEMPTS", get("RETAB_MCP_MAX_ATTEMPTS"), int, 1, 10),
            log_level=parse_log_level(get("RETAB_MCP_LOG_LEVEL") or "WARNING"),
        )


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
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)} (got {value!r})")
    return level


_Number = TypeVar("_Number", int, float)


def _number(name: str, raw: str | None, kind: type[_Number], low: _Number, high: _Number) -> _Number:
    try:
        value = kind(raw or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number from {low} to {high} (got {raw!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low} to {high} (got {raw!r})")
    return value
