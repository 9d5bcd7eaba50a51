"""`--auth oauth` end to end: real server processes on loopback pointed at the sandbox, the SDK's
own OAuth client signing in through the sign-in page, and the attacks a token server must stand."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from retab_mcp.sandbox import RunningSandbox, fingerprint
from retab_mcp.sealing import KeyRing
from tests.browser import browser_script
from tests.support import HttpServer, http_server

ALICE = "rt_test_alice_7Hq2x9Lm"
BOB = "rt_test_bob_3Zp8w1Kd"
RING = "oauth-test-secret-0123456789abcdef-ring-one"
OTHER_RING = "oauth-test-secret-fedcba9876543210-ring-two"
CALLBACK = "http://127.0.0.1:53682/callback"
READ_ONLY_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


# The harness's HTTP server, as this module's tests name it.
Running = HttpServer


@contextmanager
def oauth_server(base_url: str, *args: str, **env: str) -> Iterator[HttpServer]:
    """`retab-mcp --transport http --auth oauth` on a free loopback port, Retab at `base_url`."""
    settings = {"RETAB_API_BASE_URL": base_url, "RETAB_MCP_SECRET_KEYS": RING, **env}
    with http_server("--auth", "oauth", *args, **settings) as server:
        yield server


@pytest.fixture(scope="module")
def server(_running_sandbox: RunningSandbox) -> Iterator[Running]:
    with oauth_server(_running_sandbox.base_url) as running:
        yield running


# -- a client that does what a user's browser does --------------------------------------------


def hidden_request(page: str) -> str:
    match = re.search(r'name="request" value="([^"]+)"', page)
    assert match, page
    return unescape(match.group(1))


def sign_in(
    http: httpx.Client, authorize_url: str, key: str, scope: str = "read_cancel", action: str = "allow"
) -> httpx.Response:
    """Open the sign-in page at `authorize_url` and submit it; the answer (a 303 on success)."""
    page = http.get(authorize_url)
    assert page.status_code == 200, page.text
    base = f"{urlsplit(authorize_url).scheme}://{urlsplit(authorize_url).netloc}"
    form = {"request": hidden_request(page.text), "retab_api_key": key, "scope": scope, "action": action}
    return http.post(base + "/authorize", data=form)


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(CALLBACK), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


class Memory:
    """The SDK client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@asynccontextmanager
async def signed_in_client(
    mcp_url: str, key: str, scope: str = "read_cancel", mode: str = "legacy"
) -> AsyncIterator[tuple[Client, Memory]]:
    """The SDK's Client with the SDK's OAuthClientProvider; its redirect handler is the user."""
    result: dict[str, str] = {}

    async def redirect(url: str) -> None:
        with httpx.Client(timeout=30) as browser:
            result.update(redirect_params(sign_in(browser, url, key, scope)))

    async def callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=result["code"], state=result.get("state"), iss=result.get("iss"))

    storage = Memory()
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(redirect_uris=[AnyUrl(CALLBACK)], client_name="Test agent"),
        storage=storage,
        redirect_handler=redirect,
        callback_handler=callback,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        Client(streamable_http_client(mcp_url, http_client=http), mode=mode) as client,
    ):
        yield client, storage


def register(server: Running, **metadata: Any) -> dict[str, Any]:
    body = {"redirect_uris": [CALLBACK], "client_name": "Test agent", **metadata}
    answer = httpx.post(server.url + "/register", json=body)
    assert answer.status_code == 201, answer.text
    registered: dict[str, Any] = answer.json()
    return registered


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(server: Running, client_id: str, challenge: str, **extra: str) -> str:
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "state": "st-1",
        "code_challenge": challenge, "code_challenge_method": "S256", "resource": server.mcp, **extra,
    }  # fmt: skip
    return f"{server.url}/authorize?{urlencode(params)}"


def tokens_for(server: Running, key: str, scope: str = "read_cancel", resource: str | None = None) -> dict[str, Any]:
    """A whole flow by hand: register, sign in, redeem the code (for `resource`: the server's own)."""
    client_id = register(server)["client_id"]
    verifier, challenge = pkce()
    url = authorize_url(server, client_id, challenge, resource=resource or server.mcp)
    with httpx.Client() as browser:
        code = redirect_params(sign_in(browser, url, key, scope))["code"]
    answer = redeem(server, client_id, code, verifier)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return {**tokens, "client_id": client_id}


def redeem(server: Running, client_id: str, code: str, verifier: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": client_id,
            "redirect_uri": CALLBACK, **extra}  # fmt: skip
    return httpx.post(server.url + "/token", data=form)


def call(server: Running, tool: str, arguments: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    return httpx.post(server.mcp, json=message, headers={**READ_ONLY_HEADERS, **headers}, timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the SDK's own client ----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])  # 2025-11-25 (handshake) and 2026-07-28 (sessionless)
async def test_the_sdk_client_signs_in_and_calls_with_the_users_own_key(
    server: Running, sandbox: RunningSandbox, mode: str
) -> None:
    async with signed_in_client(server.mcp, ALICE, mode=mode) as (client, storage):
        listed = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("get_edit", {"edit_id": "edt_01G34H8J2K"})
    assert "cancel_edit" in listed
    assert result.structured_content is not None
    assert result.structured_content["ok"], result
    assert storage.tokens is not None
    assert storage.tokens.refresh_token
    assert storage.tokens.scope == "retab:read retab:cancel"
    recorded = [r for r in sandbox.sandbox.recorded() if "edt_01G34H8J2K" in r.path]
    assert recorded
    assert {r.key_fingerprint for r in recorded} == {fingerprint(ALICE)}
    # Nothing the user typed, nor anything sealed from it, is logged in the clear.
    assert ALICE not in server.stderr
    assert f"signed in with OAuth at {server.url} (or sent as Api-Key)" in server.stderr


def test_two_users_keys_never_cross(server: Running, sandbox: RunningSandbox) -> None:
    alice, bob = tokens_for(server, ALICE), tokens_for(server, BOB)
    sandbox.sandbox.reset()
    for _ in range(5):
        for who, tokens in (("alice", alice), ("bob", bob)):
            edit = "edt_01G34H8J2K" if who == "alice" else "edt_running01"
            assert call(server, "get_edit", {"edit_id": edit}, bearer(tokens["access_token"])).status_code == 200
    expected = {"edt_01G34H8J2K": fingerprint(ALICE), "edt_running01": fingerprint(BOB)}
    seen = [(r.path.rsplit("/", 1)[-1], r.key_fingerprint) for r in sandbox.sandbox.recorded()]
    assert len(seen) == 10
    assert all(expected[edit] == key for edit, key in seen), seen


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_documents(server: Running) -> None:
    resource = httpx.get(server.url + "/.well-known/oauth-protected-resource/mcp").json()
    assert resource["resource"] == server.mcp
    assert resource["authorization_servers"] == [server.url]
    assert resource["scopes_supported"] == ["retab:read", "retab:cancel"]
    metadata = httpx.get(server.url + "/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == server.url
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["registration_endpoint"] == server.url + "/register"
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    missing = httpx.post(server.mcp, json={}, headers=READ_ONLY_HEADERS)
    assert missing.status_code == 401
    challenge = missing.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{server.url}/.well-known/oauth-protected-resource/mcp"' in challenge


# -- the sign-in page --------------------------------------------------------------------------


def test_the_page_shows_who_asks_and_where_the_user_goes_back_and_cannot_be_framed(server: Running) -> None:
    client_id = register(server, client_name="<b>Evil</b> & co")["client_id"]
    page = httpx.get(authorize_url(server, client_id, pkce()[1]))
    assert page.status_code == 200
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; co" in page.text
    assert "<b>Evil</b>" not in page.text
    assert "127.0.0.1:53682" in page.text
    assert 'name="retab_api_key"' in page.text
    assert "<script" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_a_refused_retab_key_shows_the_page_again_without_a_code(server: Running, sandbox: RunningSandbox) -> None:
    client_id = register(server)["client_id"]
    with httpx.Client() as browser:
        answer = sign_in(browser, authorize_url(server, client_id, pkce()[1]), "rt_live_refused_by_retab_9x")
    assert answer.status_code == 401
    assert "location" not in answer.headers
    assert "Retab does not accept this API key" in answer.text
    assert "rt_live_refused_by_retab_9x" not in answer.text
    assert 'name="retab_api_key"' in answer.text
    checks = [r for r in sandbox.sandbox.recorded() if r.path == "/v1/edits"]
    assert [(r.method, r.query) for r in checks] == [("GET", "limit=1")]


def test_a_form_posted_from_another_browser_is_refused(server: Running) -> None:
    client_id = register(server)["client_id"]
    with httpx.Client() as victim:
        page = victim.get(authorize_url(server, client_id, pkce()[1]))
    form = {"request": hidden_request(page.text), "retab_api_key": ALICE, "scope": "read"}
    with httpx.Client() as attacker:  # the request, without the cookie of the browser that opened it
        answer = attacker.post(server.url + "/authorize", data=form)
    assert answer.status_code == 403
    assert "location" not in answer.headers


def test_an_unregistered_redirect_uri_is_shown_on_the_page_never_followed(server: Running) -> None:
    client_id = register(server)["client_id"]
    for other in (
        "https://attacker.example/callback",
        "http://127.0.0.1:53682/elsewhere",
        "http://127.0.0.2:9/callback",
    ):
        answer = httpx.get(authorize_url(server, client_id, pkce()[1], redirect_uri=other))
        assert answer.status_code == 400, other
        assert "location" not in answer.headers
        assert "did not register" in answer.text
    # RFC 8252 §7.3: a loopback redirect URI may use any port.
    other_port = authorize_url(server, client_id, pkce()[1], redirect_uri="http://127.0.0.1:5173/callback")
    assert httpx.get(other_port).status_code == 200


def test_state_comes_back_as_sent_on_success_and_on_denial(server: Running) -> None:
    client_id = register(server)["client_id"]
    state = "s t&a=te/é?#x"
    for action, expected in (("allow", "code"), ("deny", "error")):
        with httpx.Client() as browser:
            url = authorize_url(server, client_id, pkce()[1], state=state)
            params = redirect_params(sign_in(browser, url, ALICE, action=action))
        assert params["state"] == state
        assert expected in params
        assert params["iss"] == server.url
    assert params["error"] == "access_denied"


def test_failed_sign_ins_are_limited_per_address(_running_sandbox: RunningSandbox) -> None:  # noqa: PT019
    with oauth_server(_running_sandbox.base_url) as running:
        client_id = register(running)["client_id"]
        with httpx.Client() as browser:
            url = authorize_url(running, client_id, pkce()[1])
            statuses = [sign_in(browser, url, f"rt_live_guess{i}").status_code for i in range(11)]
            last = sign_in(browser, url, ALICE)  # even the right key waits
    assert statuses == [401] * 10 + [429]
    assert last.status_code == 429
    assert "location" not in last.headers


# -- codes and tokens --------------------------------------------------------------------------


def test_a_pkce_mismatch_and_a_replayed_code_get_no_tokens(server: Running) -> None:
    client_id = register(server)["client_id"]
    verifier, challenge = pkce()
    with httpx.Client() as browser:
        code = redirect_params(sign_in(browser, authorize_url(server, client_id, challenge), ALICE))["code"]
    wrong = redeem(server, client_id, code, pkce()[0])
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert "access_token" not in wrong.json()
    first = redeem(server, client_id, code, verifier)
    assert first.status_code == 200
    replay = redeem(server, client_id, code, verifier)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    other_client = register(server)["client_id"]
    assert redeem(server, other_client, code, verifier).json()["error"] == "invalid_grant"


def test_a_code_is_bound_to_this_resource(server: Running) -> None:
    client_id = register(server)["client_id"]
    verifier, challenge = pkce()
    elsewhere = authorize_url(server, client_id, challenge, resource="https://other.example/mcp")
    with httpx.Client() as browser:
        refused = browser.get(elsewhere)
    assert redirect_params(refused)["error"] == "invalid_target"
    with httpx.Client() as browser:
        code = redirect_params(sign_in(browser, authorize_url(server, client_id, challenge), ALICE))["code"]
    answer = redeem(server, client_id, code, verifier, resource="https://other.example/mcp")
    assert answer.json()["error"] == "invalid_target"


def test_refresh_rotates_and_never_widens(server: Running) -> None:
    tokens = tokens_for(server, ALICE, scope="read")
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": tokens["client_id"]}
    wider = httpx.post(server.url + "/token", data={**form, "scope": "retab:read retab:cancel"})
    assert wider.json()["error"] == "invalid_scope"
    rotated = httpx.post(server.url + "/token", data=form)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["scope"] == "retab:read"
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    edit = {"edit_id": "edt_01G34H8J2K"}
    assert call(server, "get_edit", edit, bearer(rotated.json()["access_token"])).status_code == 200
    again = httpx.post(server.url + "/token", data=form)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    stolen = httpx.post(server.url + "/token", data={**form, "refresh_token": rotated.json()["refresh_token"],
                                                     "client_id": register(server)["client_id"]})  # fmt: skip
    assert stolen.json()["error"] == "invalid_grant"


def sealed_access(secret: str, key: str = ALICE, ttl: float = 600, **payload: Any) -> str:
    """An access token as a server holding `secret` would seal it."""
    claims = {"c": "client", "k": key, "q": ["retab:read", "retab:cancel"], "r": "", **payload}
    return KeyRing([secret]).seal("access", claims, ttl=ttl)


def test_tampered_expired_foreign_and_other_resource_tokens_are_refused(server: Running) -> None:
    good = tokens_for(server, ALICE)["access_token"]
    tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    refused = {
        "tampered": tampered,
        "expired": sealed_access(RING, r=server.mcp, ttl=-5),
        "other ring": sealed_access(OTHER_RING, r=server.mcp),
        "other resource": sealed_access(RING, r="https://other.example/mcp"),
        "a retab key": ALICE,
    }
    for why, token in refused.items():
        answer = call(server, "get_edit", {"edit_id": "edt_01G34H8J2K"}, bearer(token))
        assert answer.status_code == 401, why
        assert 'error="invalid_token"' in answer.headers["www-authenticate"], why
        assert "resource_metadata=" in answer.headers["www-authenticate"], why
    sealed_here = sealed_access(RING, r=server.mcp)
    assert call(server, "get_edit", {"edit_id": "edt_01G34H8J2K"}, bearer(sealed_here)).status_code == 200


def test_a_read_only_token_reads_and_is_asked_to_step_up_for_a_cancel(server: Running, sandbox: RunningSandbox) -> None:
    token = tokens_for(server, ALICE, scope="read")["access_token"]
    read = call(server, "get_edit", {"edit_id": "edt_01G34H8J2K"}, bearer(token))
    assert read.json()["result"]["structuredContent"]["ok"]
    refused = call(server, "cancel_edit", {"edit_id": "edt_01G34H8J2K"}, bearer(token))
    assert refused.status_code == 403
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="retab:read retab:cancel"' in challenge
    assert not [r for r in sandbox.sandbox.recorded() if r.method == "POST"]
    full = tokens_for(server, ALICE)["access_token"]
    assert call(server, "cancel_edit", {"edit_id": "edt_01G34H8J2K"}, bearer(full)).status_code == 200


def test_an_api_key_header_is_still_served(server: Running, sandbox: RunningSandbox) -> None:
    answer = call(server, "get_edit", {"edit_id": "edt_01G34H8J2K"}, {"Api-Key": BOB})
    assert answer.json()["result"]["structuredContent"]["ok"]
    assert {r.key_fingerprint for r in sandbox.sandbox.recorded()} == {fingerprint(BOB)}


def test_key_rotation_and_two_processes_sharing_one_ring(
    _running_sandbox: RunningSandbox,  # noqa: PT019
    server: Running,
) -> None:
    old = tokens_for(server, ALICE)
    new_secret = "oauth-test-secret-rotated-in-0123456789abcdef"
    edit = {"edit_id": "edt_01G34H8J2K"}
    with oauth_server(_running_sandbox.base_url, RETAB_MCP_SECRET_KEYS=f"{new_secret},{RING}",
                      RETAB_MCP_PUBLIC_URL=server.url) as rotated:  # fmt: skip
        # Same ring, another process: each accepts the other's tokens.
        assert call(rotated, "get_edit", edit, bearer(old["access_token"])).status_code == 200
        fresh = tokens_for(rotated, BOB, resource=server.mcp)  # replicas: one public URL
    assert call(server, "get_edit", edit, bearer(fresh["access_token"])).status_code == 401  # sealed with the new one
    with oauth_server(_running_sandbox.base_url, RETAB_MCP_SECRET_KEYS=new_secret,
                      RETAB_MCP_PUBLIC_URL=server.url) as dropped:  # fmt: skip
        assert call(dropped, "get_edit", edit, bearer(fresh["access_token"])).status_code == 200
        assert call(dropped, "get_edit", edit, bearer(old["access_token"])).status_code == 401
        refresh = {"grant_type": "refresh_token", "refresh_token": old["refresh_token"], "client_id": old["client_id"]}
        assert httpx.post(dropped.url + "/token", data=refresh).json()["error"] == "invalid_client"


CODE = {"grant_type": "authorization_code", "client_id": "<registered>"}
REFRESH = {"grant_type": "refresh_token", "client_id": "<registered>"}
# fmt: off
MALFORMED = [
    ("/token", {"grant_type": "authorization_code"}, "invalid_request"),
    ("/token", {"grant_type": "password", "client_id": "x"}, "invalid_client"),
    ("/token", {"grant_type": "client_credentials", "client_id": "<registered>"}, "unsupported_grant_type"),
    ("/token", {"client_id": "<registered>"}, "invalid_request"),
    ("/token", {"grant_type": "authorization_code", "client_id": "<registered>", "code": "x"}, "invalid_request"),
    (
        "/token",
        {"grant_type": "authorization_code", "client_id": "<registered>", "code": "v1.AAAA", "code_verifier": "x" * 43},
        "invalid_grant",
    ),
    (
        "/token",
        {"grant_type": "refresh_token", "client_id": "<registered>", "refresh_token": "garbage"},
        "invalid_grant",
    ),
    (
        "/token",
        {"grant_type": "refresh_token", "client_id": "<registered>", "refresh_token": "x", "scope": "admin"},
        "invalid_grant",
    ),
    ("/register", {"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
    ("/register", {"redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri"),
    ("/register", {"redirect_uris": []}, "invalid_redirect_uri"),
    ("/register", {"redirect_uris": [CALLBACK], "scope": "admin"}, "invalid_client_metadata"),
    ("/register", {"redirect_uris": [CALLBACK], "grant_types": ["implicit"]}, "invalid_client_metadata"),
    ("/register", [1, 2], "invalid_client_metadata"),
]
# fmt: on


@pytest.mark.parametrize(("path", "body", "error"), MALFORMED)
def test_malformed_oauth_requests_get_the_rfc_error_code(server: Running, path: str, body: Any, error: str) -> None:
    registered = register(server)["client_id"]
    if path == "/token":
        form = {k: (registered if v == "<registered>" else v) for k, v in body.items()}
        answer = httpx.post(server.url + path, data=form)
    else:
        answer = httpx.post(server.url + path, json=body)
    assert answer.status_code in (400, 401), answer.text
    assert answer.json()["error"] == error, answer.text


FORM = "application/x-www-form-urlencoded"


def test_hostile_bytes_never_get_a_500(server: Running) -> None:
    registered = register(server)["client_id"]
    attempts = [
        ("POST", "/token", b"\xff\xfe" * 100, "application/x-www-form-urlencoded"),
        (
            "POST",
            "/token",
            b"grant_type=authorization_code&grant_type=refresh_token",
            "application/x-www-form-urlencoded",
        ),
        ("POST", "/token", b'{"grant_type": "authorization_code"}', "application/json"),
        ("POST", "/token", b"--x\r\nContent-Disposition: form-data\r\n", "multipart/form-data; boundary=x"),
        ("POST", "/token", b"a=" + b"b" * 20_000, "application/x-www-form-urlencoded"),
        ("POST", "/register", b"{" * 5000, "application/json"),
        ("POST", "/register", b"\x00\x01", "application/json"),
        ("POST", "/authorize", b"request=v1.xyz&retab_api_key=rt_test_a", "application/x-www-form-urlencoded"),
        ("POST", "/authorize", b"\xff", "text/plain"),
        ("GET", "/authorize?client_id=" + registered + "&client_id=" + registered, b"", ""),
        ("GET", "/authorize?client_id=%ff%fe", b"", ""),
        ("GET", f"/authorize?client_id={registered}&redirect_uri={CALLBACK}", b"", ""),
    ]
    for method, path, body, content_type in attempts:
        answer = httpx.request(method, server.url + path, content=body, headers={"Content-Type": content_type})
        assert 400 <= answer.status_code < 500 or answer.status_code == 303, (path, body[:40], answer.status_code)
        if answer.status_code == 303:  # an error sent back to the registered client, never a code
            assert "error=" in answer.headers["location"]
            assert "code=" not in answer.headers["location"]
    assert "Traceback" not in server.stderr


# -- a real browser ----------------------------------------------------------------------------

SIGN_IN_IN_CHROMIUM = """
const { chromium } = require('playwright-core');
const [url, key, screenshot, callback] = process.argv.slice(-4);
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, headless: true,
                                          args: ['--no-sandbox', '--headless=new'] });
  const page = await browser.newPage({ viewport: { width: 720, height: 760 } });
  const opened = await page.goto(url);
  await page.screenshot({ path: screenshot, fullPage: true });
  const title = await page.title();
  // Found by their accessible names: the label is tied to the input, the choices to theirs.
  await page.getByLabel('Retab API key').fill(key);
  await page.getByLabel('Read only: see runs, never stop one').check();
  await Promise.all([page.waitForURL(callback + '**'), page.getByRole('button', { name: 'Sign in' }).click()]);
  console.log(JSON.stringify({ status: opened.status(), title, landed: page.url() }));
  await browser.close();
})().catch((error) => { console.error(error); process.exit(1); });
"""


@contextmanager
def app_callback() -> Iterator[str]:
    """A loopback listener standing for the app's redirect URI; its URL."""

    class Callback(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"back in the app")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.server_address[1]}/callback"
    finally:
        listener.shutdown()
        listener.server_close()


SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "signin.png"


def test_a_real_browser_fills_and_submits_the_sign_in_page(
    server: Running, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    client_id = register(server, client_name="Claude")["client_id"]
    verifier, challenge = pkce()
    shot = tmp_path / "signin.png"
    with app_callback() as callback:  # registered on another port: a loopback redirect may use any
        url = authorize_url(server, client_id, challenge, state="browser-state", redirect_uri=callback)
        printed = browser_script(SIGN_IN_IN_CHROMIUM, url, BOB, str(shot), callback)
    outcome = json.loads(printed.strip().splitlines()[-1])
    assert outcome["status"] == 200
    assert outcome["title"] == "Sign in to Retab"
    assert outcome["landed"].startswith(callback + "?")
    landed = {k: v[0] for k, v in parse_qs(urlsplit(outcome["landed"]).query).items()}
    assert landed["state"] == "browser-state"
    tokens = redeem(server, client_id, landed["code"], verifier, redirect_uri=callback).json()
    assert tokens["scope"] == "retab:read"  # the choice made in the browser
    assert call(server, "get_edit", {"edit_id": "edt_01G34H8J2K"}, bearer(tokens["access_token"])).status_code == 200
    assert {r.key_fingerprint for r in sandbox.sandbox.recorded()} == {fingerprint(BOB)}
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):  # the docs' picture of the page, taken by this test
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(shot.read_bytes())


@pytest.mark.anyio
async def test_signed_in_calls_work_with_sessions_too(_running_sandbox: RunningSandbox) -> None:  # noqa: PT019
    with oauth_server(_running_sandbox.base_url, "--stateful") as stateful:
        async with signed_in_client(stateful.mcp, ALICE) as (client, _):
            result = await client.call_tool("get_edit", {"edit_id": "edt_01G34H8J2K"})
    assert result.structured_content is not None
    assert result.structured_content["ok"], result
