"""Settings from the environment, and log redaction."""

from __future__ import annotations

import logging
import subprocess

import pytest

from retab_mcp.config import ENV_VARS, ConfigError, Settings, normalize_base_url
from retab_mcp.logs import RedactingFormatter
from retab_mcp.redaction import redact
from tests.support import SERVER_COMMAND, clean_env


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://api.retab.com", "https://api.retab.com"),
        ("https://api.retab.com/", "https://api.retab.com"),
        ("https://api.retab.com/v1", "https://api.retab.com"),
        ("https://api.retab.com/v1/", "https://api.retab.com"),
        ("http://127.0.0.1:8080/proxy/v1", "http://127.0.0.1:8080/proxy"),
    ],
)
def test_base_url_is_normalized_like_the_sdk(raw: str, expected: str) -> None:
    assert normalize_base_url(raw) == expected


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings.api_key is None
    assert (settings.base_url, settings.call_timeout, settings.max_attempts) == ("https://api.retab.com", 30.0, 4)
    assert settings.log_level == "WARNING"


def test_every_variable_is_read() -> None:
    env = {
        "RETAB_API_KEY": "rt_test_x",
        "RETAB_API_BASE_URL": "http://localhost:9/v1",
        "RETAB_MCP_CALL_TIMEOUT": "12.5",
        "RETAB_MCP_MAX_ATTEMPTS": "2",
        "RETAB_MCP_LOG_LEVEL": "debug",
        "RETAB_MCP_READ_ONLY": "true",
        "RETAB_MCP_TOOLS": "get_edit, list_edits",
        "RETAB_MCP_TOOLSETS": "edits, all",
        "RETAB_MCP_SANDBOX": "true",
        "RETAB_MCP_TRANSPORT": "http",
        "RETAB_MCP_HOST": "0.0.0.0",
        "RETAB_MCP_PORT": "9000",
        "RETAB_MCP_HTTP_PATH": "rpc/",
        "RETAB_MCP_STATEFUL": "yes",
        "RETAB_MCP_JSON_RESPONSE": "true",
        "RETAB_MCP_AUTH_TOKEN": "tok",
        "RETAB_MCP_ALLOWED_HOSTS": "a.example:*, b.example",
        "RETAB_MCP_ALLOWED_ORIGINS": "https://a.example",
        "RETAB_MCP_SHUTDOWN_GRACE": "5",
        "RETAB_MCP_WORKERS": "3",
        "RETAB_MCP_MAX_IN_FLIGHT": "8",
        "RETAB_MCP_MAX_SESSIONS": "3",
        "RETAB_MCP_TASKS": "on",
        "RETAB_MCP_TASK_TTL": "120",
        "RETAB_MCP_AUTH": "OAuth",
        "RETAB_MCP_SECRET_KEYS": "a" * 32 + ", " + "b" * 40,
        "RETAB_MCP_PUBLIC_URL": "https://retab.example.com/",
        "RETAB_MCP_OAUTH_ACCESS_TTL": "120",
        "RETAB_MCP_OAUTH_REFRESH_TTL": "600",
    }
    assert {var.name for var in ENV_VARS} >= set(env)
    settings = Settings.from_env(env)
    assert (settings.api_key, settings.base_url) == ("rt_test_x", "http://localhost:9")
    assert (settings.call_timeout, settings.max_attempts, settings.log_level) == (12.5, 2, "DEBUG")
    assert (settings.read_only, settings.tools) == (True, ("get_edit", "list_edits"))
    assert settings.toolsets == ("edits", "all")
    assert (settings.sandbox, settings.transport, settings.host, settings.port) == (True, "http", "0.0.0.0", 9000)
    assert (settings.http_path, settings.stateful, settings.auth_token) == ("/rpc", True, "tok")
    assert settings.allowed_hosts == ("a.example:*", "b.example")
    assert (settings.allowed_origins, settings.shutdown_grace) == (("https://a.example",), 5.0)
    assert (settings.workers, settings.json_response) == (3, True)
    assert (settings.max_in_flight, settings.max_sessions) == (8, 3)
    assert (settings.tasks, settings.task_ttl) == (True, 120.0)
    assert (settings.auth, settings.secret_keys) == ("oauth", ("a" * 32, "b" * 40))
    assert settings.public_url == "https://retab.example.com"
    assert (settings.oauth_access_ttl, settings.oauth_refresh_ttl) == (120, 600)
    assert {var.name for var in ENV_VARS} == set(env)  # every variable is exercised here


@pytest.mark.parametrize(
    ("name", "value"),
    [("RETAB_MCP_MAX_ATTEMPTS", "0"), ("RETAB_MCP_MAX_ATTEMPTS", "2.5"), ("RETAB_MCP_CALL_TIMEOUT", "soon")],
)
def test_bad_numbers_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


# A value of each variable that is not one, and the variables that take any text.
BAD_VALUES = {
    "RETAB_API_BASE_URL": "api.retab.com",
    "RETAB_MCP_CALL_TIMEOUT": "soon",
    "RETAB_MCP_MAX_ATTEMPTS": "11",
    "RETAB_MCP_MAX_IN_FLIGHT": "0",
    "RETAB_MCP_MAX_SESSIONS": "lots",
    "RETAB_MCP_LOG_LEVEL": "verbose",
    "RETAB_MCP_READ_ONLY": "maybe",
    "RETAB_MCP_SANDBOX": "sometimes",
    "RETAB_MCP_TRANSPORT": "websocket",
    "RETAB_MCP_PORT": "eighty",
    "RETAB_MCP_HTTP_PATH": "/healthz",
    "RETAB_MCP_STATEFUL": "2",
    "RETAB_MCP_JSON_RESPONSE": "sse",
    "RETAB_MCP_SHUTDOWN_GRACE": "-1",
    "RETAB_MCP_WORKERS": "many",
    "RETAB_MCP_TASKS": "perhaps",
    "RETAB_MCP_TASK_TTL": "5",
    "RETAB_MCP_AUTH": "password",
    "RETAB_MCP_PUBLIC_URL": "http://retab.example.com",
    "RETAB_MCP_OAUTH_ACCESS_TTL": "0",
    "RETAB_MCP_OAUTH_REFRESH_TTL": "forever",
}
FREE_TEXT = {
    "RETAB_API_KEY",
    "RETAB_MCP_TOOLS",  # checked against the served tools when the server starts (test below)
    "RETAB_MCP_TOOLSETS",  # checked against the run table when the server starts (test below)
    "RETAB_MCP_HOST",
    "RETAB_MCP_AUTH_TOKEN",
    "RETAB_MCP_ALLOWED_HOSTS",
    "RETAB_MCP_ALLOWED_ORIGINS",
    "RETAB_MCP_SECRET_KEYS",  # secrets: a bad value is refused without being shown (test below)
}


def test_every_variable_is_either_parsed_or_free_text() -> None:
    assert set(BAD_VALUES) | FREE_TEXT == {var.name for var in ENV_VARS}


@pytest.mark.parametrize(("name", "value"), BAD_VALUES.items())
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(f"{name} must "), raised.value
    assert repr(value) in str(raised.value)


def test_a_short_secret_key_is_refused_without_being_shown() -> None:
    short = "too-short-a-secret-0123456789"
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"RETAB_MCP_SECRET_KEYS": f"{'k' * 32},{short}"})
    assert str(raised.value).startswith("RETAB_MCP_SECRET_KEYS must ")
    assert short not in str(raised.value)
    assert "k" * 32 not in str(raised.value)


def test_a_bad_log_level_stops_start_up_naming_the_variable() -> None:
    done = subprocess.run(
        SERVER_COMMAND, env=clean_env(RETAB_MCP_LOG_LEVEL="verbose"), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        "retab-mcp: RETAB_MCP_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'verbose')"
    )


def test_the_key_is_not_in_the_settings_repr() -> None:
    assert "rt_live_abc" not in repr(Settings(api_key="rt_live_abc"))


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Bearer abc.def-123",
        "headers={'Api-Key': 'zzz-secret'}",
        "key rt_live_0123456789abcdef in the text",
        "legacy sk_retab_ABCDEF key",
    ],
)
def test_key_shapes_are_redacted(line: str) -> None:
    masked = redact(line)
    assert "[redacted]" in masked
    for secret in ("abc.def-123", "zzz-secret", "rt_live_0123456789abcdef", "sk_retab_ABCDEF"):
        assert secret not in masked


def test_the_configured_key_is_redacted_whatever_its_shape() -> None:
    formatter = RedactingFormatter(["plainsecret42"])
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "sending %s", ("plainsecret42",), None)
    assert "plainsecret42" not in formatter.format(record)


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--tools", "get_edit,cancel_everything"], {}, "cancel_everything"),
        ([], {"RETAB_MCP_TOOLS": "nope"}, "nope"),
        (["--read-only", "--tools", "cancel_edit"], {}, "cancel_edit"),
        ([], {"RETAB_MCP_READ_ONLY": "maybe"}, "RETAB_MCP_READ_ONLY"),
        (["--toolsets", "edits,invoices"], {}, "invoices"),
        ([], {"RETAB_MCP_TOOLSETS": "all,workflows"}, "workflows"),
        (["--toolsets", ""], {}, "RETAB_MCP_TOOLSETS"),
        (["--toolsets", "edits", "--tools", "get_blueprint"], {}, "blueprints"),
    ],
)
def test_a_tool_selection_that_names_no_served_tool_stops_start_up(
    argv: list[str], env: dict[str, str], named: str
) -> None:
    done = subprocess.run(
        [*SERVER_COMMAND, *argv],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert named in done.stderr
    assert done.stdout == ""


def test_help_names_the_sandbox_runs_and_the_tool_flags() -> None:
    done = subprocess.run([*SERVER_COMMAND, "--help"], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for text in ("--read-only", "--tools", "--toolsets", "edt_stopping01", "fbp_a1b2c3d4e5f6", "edt_completed01"):
        assert text in done.stdout
