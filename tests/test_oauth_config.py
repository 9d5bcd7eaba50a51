"""`--auth` and the OAuth settings at start-up: contradictions stop the server with exit 2 and a
message naming the variable, never its value; the other two modes start as before."""

from __future__ import annotations

import subprocess

import pytest

from retab_mcp.config import ConfigError, Settings
from tests.support import SERVER_COMMAND, clean_env

SECRET = "s3cret-value-that-must-never-be-printed-0123"
HTTP = ["--transport", "http", "--port", "0"]
OAUTH = [*HTTP, "--auth", "oauth"]
KEYS = {"RETAB_MCP_SECRET_KEYS": SECRET}

CONTRADICTIONS = [
    (["--auth", "oauth"], KEYS, "(--auth oauth) needs --transport http"),
    (OAUTH, {}, "needs RETAB_MCP_SECRET_KEYS"),
    (OAUTH, {"RETAB_MCP_SECRET_KEYS": "short-" + SECRET[:10]}, "RETAB_MCP_SECRET_KEYS: every"),
    (OAUTH, {"RETAB_MCP_SECRET_KEYS": f"{SECRET},tiny"}, "RETAB_MCP_SECRET_KEYS: every"),
    (OAUTH, {**KEYS, "RETAB_API_KEY": "rt_test_server_key"}, "RETAB_API_KEY is set"),
    ([*OAUTH, "--sandbox"], KEYS, "RETAB_MCP_SANDBOX"),
    ([*OAUTH, "--host", "0.0.0.0"], KEYS, "RETAB_MCP_PUBLIC_URL"),
    ([*OAUTH, "--public-url", "https://x.example/mcp"], KEYS, "RETAB_MCP_PUBLIC_URL must"),
    ([*HTTP, "--auth", "key"], {"RETAB_API_KEY": "rt_test_server_key"}, "unset RETAB_API_KEY"),
    ([*HTTP, "--auth", "token"], {"RETAB_API_KEY": "rt_test_server_key"}, "RETAB_MCP_AUTH_TOKEN"),
    (HTTP, KEYS, "apply to RETAB_MCP_AUTH=oauth"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "env", "message"), CONTRADICTIONS)
def test_contradictions_stop_start_up_naming_the_variable_not_its_value(
    args: list[str], env: dict[str, str], message: str
) -> None:
    done = subprocess.run([*SERVER_COMMAND, *args], env=clean_env(**env), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert done.stdout == ""
    for value in env.values():
        assert value not in done.stderr
        assert SECRET[:12] not in done.stderr


def test_the_modes_as_the_keys_imply_them() -> None:
    assert Settings().auth is None
    Settings(transport="http").check_auth()  # no --auth: as before
    Settings(transport="http", auth="key").check_auth()
    Settings(transport="http", auth="token", api_key="rt_test_k", auth_token="t0k").check_auth()
    oauth = Settings(transport="http", auth="oauth", secret_keys=(SECRET,), port=8123)
    oauth.check_auth()
    assert oauth.issuer_url == "http://127.0.0.1:8123"
    with pytest.raises(ConfigError, match="RETAB_MCP_AUTH must be one of"):
        Settings.from_env({"RETAB_MCP_AUTH": "basic"})
