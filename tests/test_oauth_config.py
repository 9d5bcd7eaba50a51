"""`--auth` and the OAuth settings at start-up: contradictions stop the server with exit 2 and a
message naming the variable, never its value; the other two modes start as before."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from retab_mcp.cli import _parser
from retab_mcp.config import ENV_VARS, ConfigError, Settings
from tests.support import ROOT, SERVER_COMMAND, clean_env

SECRET = "s3cret-value-that-must-never-be-printed-0123"
HTTP = ["--transport", "http", "--port", "0"]
OAUTH = [*HTTP, "--auth", "oauth"]
KEYS = {"RETAB_MCP_SECRET_KEYS": SECRET}

CONTRADICTIONS = [
    (["--auth", "oauth"], KEYS, "(--auth oauth) needs --transport http"),
    (OAUTH, {}, "needs RETAB_MCP_SECRET_KEYS"),
    (OAUTH, {"RETAB_MCP_SECRET_KEYS": "short-" + SECRET[:10]}, "RETAB_MCP_SECRET_KEYS must be secrets of at least 32"),
    (OAUTH, {"RETAB_MCP_SECRET_KEYS": f"{SECRET},tiny"}, "RETAB_MCP_SECRET_KEYS must be secrets of at least 32"),
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


# -- the Kubernetes manifests for a team (manifests/kubernetes/oauth, docs/hosting.md) ---------

OAUTH_MANIFESTS = sorted((ROOT / "manifests" / "kubernetes" / "oauth").glob("*.yaml"))


def oauth_documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for path in OAUTH_MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc}


@pytest.mark.parametrize("path", OAUTH_MANIFESTS, ids=[p.name for p in OAUTH_MANIFESTS])
def test_the_oauth_manifests_validate_against_the_kubernetes_schema(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.31.0", strict=True)


def test_the_oauth_deployment_starts_the_server_in_oauth_mode() -> None:
    docs = oauth_documents()
    assert set(docs) == {"Deployment", "Secret", "Ingress"}
    [container] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    args = _parser().parse_args(container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= {var.name for var in ENV_VARS} | {"FORWARDED_ALLOW_IPS"}
    # The settings the pod starts with pass the start-up checks (the Secret's value stands in).
    values = {name: e.get("value") for name, e in env.items() if "value" in e}
    values["RETAB_MCP_SECRET_KEYS"] = docs["Secret"]["stringData"]["secret-keys"]
    settings = replace(Settings.from_env(values), transport=args.transport, host=args.host, auth=args.auth)
    settings.check_auth()
    assert settings.oauth
    assert env["RETAB_MCP_SECRET_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == docs["Secret"]["metadata"]["name"]
    # The Ingress serves the public URL's host, with TLS, to the Service of ../service.yaml.
    [rule] = docs["Ingress"]["spec"]["rules"]
    assert f"https://{rule['host']}" == settings.public_url
    assert rule["host"] in docs["Ingress"]["spec"]["tls"][0]["hosts"]
    service = yaml.safe_load((ROOT / "manifests" / "kubernetes" / "service.yaml").read_text())
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == service["metadata"]["name"]
    assert docs["Deployment"]["metadata"]["name"] == "retab-mcp"  # takes the place of ../deployment.yaml
