"""OAuth 2.1 for the HTTP transport (`--auth oauth`): retab-mcp as its own small authorization
server, whose sign-in page asks for the user's Retab API key and whose tokens carry that key.

Decisions, and why:
- Stateless, so any replica serves any user: a client id seals the client's redirect URIs and
  name, and codes, access tokens and refresh tokens seal the user's Retab key and the granted
  scopes, each with the key ring (sealing.py, `RETAB_MCP_SECRET_KEYS`) under its own purpose.
  What a process remembers is only what must not happen twice in it: a spent code, a rotated
  refresh token, sign-in attempts per client address.
- Public clients only (`token_endpoint_auth_method: none`): PKCE S256 protects the code. A
  registration asking for a client secret is registered as public (RFC 7591 lets the server
  replace requested values), as no secret could be kept without a store.
- The SDK's own authorization-server routes were read and not used: they register clients in a
  store under a random id, mint client secrets, advertise no `none` method, match redirect URIs
  exactly even on loopback, answer an unknown redirect URI with JSON rather than a page, and let
  some malformed bodies through to a 500. What is used of the SDK: its models for what goes on
  the wire (authorization-server and protected-resource metadata, the token response), its
  metadata handlers with their CORS, and its RFC 9728 metadata URL. Its resource-server
  middleware is not used either: it owns `Authorization` alone, and `Api-Key` must pass too.
- Resource server: the front (http.py) hands MCP requests here first. A valid access token
  becomes the request's `Api-Key` header, the seam a caller's key travels through today, so the
  tool uses that key for that call only; `Authorization` never reaches the SDK. `Api-Key: <key>`
  is still served as in `--auth key`. A cancel with a read-only token is refused with 403
  `insufficient_scope` (step-up); tools/list still lists the cancels, so that a host can ask for
  more. Tokens are bound to this resource (RFC 8707) and to their client.
- Every malformed OAuth request gets the RFC's error code in JSON (or, for the sign-in page, a
  page with a 4xx status); nothing here answers 500 on bad input, and no page, URL or log line
  shows a Retab key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit

import pydantic_core
from mcp.server.auth.handlers.metadata import MetadataHandler, ProtectedResourceMetadataHandler
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from mcp.shared.auth import OAuthMetadata, OAuthToken, ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from retab_mcp import signin
from retab_mcp.config import Settings
from retab_mcp.keys import well_formed
from retab_mcp.sealing import KeyRing

if TYPE_CHECKING:
    from retab_mcp.server import RetabMCPServer

READ: Final = "retab:read"
CANCEL: Final = "retab:cancel"
SCOPES: Final = (READ, CANCEL)
CODE_TTL: Final = 60
SIGNIN_TTL: Final = 15 * 60  # how long the sign-in form may stay open
CLIENT_TTL: Final = 10 * 365 * 86_400  # a client id lives as long as the secret that sealed it
MAX_FORM_BYTES: Final = 16 * 1024
MAX_REDIRECT_URIS: Final = 5
MAX_URI_CHARS: Final = 512
MAX_NAME_CHARS: Final = 80
# Failed sign-ins per client address, per window: a key is not guessed through this page, and
# each attempt costs one Retab request.
SIGNIN_ATTEMPTS: Final = 10
SIGNIN_WINDOW_SECONDS: Final = 60.0
# Access tokens whose grant is remembered (a few hundred bytes each), then forgotten all at once.
OPENED_TOKENS: Final = 4096
CSRF_COOKIE_PREFIX: Final = "retab_mcp_signin_"
# Never a place to send a user back to.
REFUSED_SCHEMES: Final = frozenset({"javascript", "data", "file", "vbscript", "blob", "about", "ftp", "ws", "wss"})
LOOPBACK_REDIRECT_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PATHS: Final = frozenset({"/authorize", "/token", "/register"})


class OAuthError(Exception):
    """An RFC 6749/7591 error answered as JSON: `error` is the RFC's code."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def response(self) -> Response:
        status, body = self.status, {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=status, headers=NO_STORE)


@dataclass(frozen=True, slots=True)
class Grant:
    """What an access token proves: whose Retab key, for which client, with which scopes."""

    key: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: int


class OAuth:
    """The authorization server's routes (`app`) and the resource server's checks (`admit`,
    `step_up`), for one process."""

    def __init__(self, server: RetabMCPServer, settings: Settings, ring: KeyRing | None = None) -> None:
        self.server = server
        self.ring = ring or KeyRing(settings.secret_keys)
        self.access_ttl, self.refresh_ttl = settings.oauth_access_ttl, settings.oauth_refresh_ttl
        base = settings.issuer_url
        self.secure_cookies = base.startswith("https://")
        self.resource = base + settings.http_path
        # Validated as the SDK's clients read them: an issuer without a path keeps no trailing slash.
        self.metadata = OAuthMetadata.model_validate(
            {
                "issuer": base,
                "authorization_endpoint": base + "/authorize",
                "token_endpoint": base + "/token",
                "registration_endpoint": base + "/register",
                "scopes_supported": list(SCOPES),
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["none"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": True,
            }
        )
        self.issuer = str(self.metadata.issuer)  # as clients compare it (RFC 9207): pydantic's rendering
        self.resource_metadata_url = str(build_resource_metadata_url(AnyHttpUrl(self.resource)))
        self._spent = _Spent()
        self._opened: dict[str, Grant] = {}
        self._attempts = _Attempts(SIGNIN_ATTEMPTS, SIGNIN_WINDOW_SECONDS)
        self.app = self._routes(base)

    def serves(self, path: str) -> bool:
        return path in PATHS or path.startswith("/.well-known/oauth-")

    # -- resource server ---------------------------------------------------------------------

    def open_access(self, token: str) -> Grant | None:
        """The grant an access token carries, if this ring sealed it for this resource. A token
        seen lately is not opened again (a client sends the same one for an hour): its grant is
        remembered, and its expiry still checked."""
        grant = self._opened.get(token)
        if grant is not None:
            return grant if grant.expires_at > time.time() else None
        payload = self.ring.unseal("access", token)
        if payload is None or payload.get("r") != self.resource:
            return None
        key, client, scopes = payload.get("k"), payload.get("c"), payload.get("q")
        if not isinstance(key, str) or not isinstance(client, str) or not _scope_list(scopes):
            return None
        if len(self._opened) >= OPENED_TOKENS:
            self._opened.clear()
        grant = self._opened[token] = Grant(key, client, tuple(scopes), payload["exp"])
        return grant

    def admit(self, scope: Scope) -> Scope | Response:
        """An MCP request's scope as the tools should see it, or the answer that refuses it.

        A bearer token must be an access token of this server's: its Retab key then travels on
        as `Api-Key`, the caller's-key seam. With no bearer token, an `Api-Key` is served as it
        came (full scope: the key's holder can do anything with it anyway)."""
        authorization, api_key = _header(scope, b"authorization"), _header(scope, b"api-key")
        kind, _, token = (authorization or "").partition(" ")
        if authorization is None or kind.lower() != "bearer":
            if api_key and authorization is None:
                return scope
            return self._challenge(None, "Sign in with OAuth, or send your Retab API key as `Api-Key: <key>`.")
        grant = self.open_access(token.strip())
        if grant is None:
            return self._challenge(
                "invalid_token",
                "The access token is expired, revoked or not this server's: sign in again. (A Retab API key "
                "goes in the `Api-Key` header here.)",
            )
        headers = [(name, value) for name, value in scope["headers"] if name not in (b"authorization", b"api-key")]
        headers.append((b"api-key", grant.key.encode()))
        # `auth` as Starlette's authentication sets it: what step_up reads. (Who owns a session is
        # the key's fingerprint, set by the front as for any caller's key.)
        return {**scope, "headers": headers, "auth": AuthCredentials(list(grant.scopes))}

    def step_up(self, scope: Scope, body: bytes) -> Response | None:
        """403 `insufficient_scope` for a request that calls a tool its token's scopes do not
        allow (a cancel with a read-only token), else None. The body is parsed as the SDK parses
        it (pydantic-core), so what is checked here is what the SDK would run."""
        credentials = scope.get("auth")
        if not isinstance(credentials, AuthCredentials) or CANCEL in credentials.scopes:
            return None
        try:
            parsed = pydantic_core.from_json(body)
        except ValueError:
            return None  # not JSON to the SDK either: it answers a parse error
        messages = parsed if isinstance(parsed, list) else [parsed]
        for message in messages:
            params = message.get("params") if isinstance(message, dict) else None
            if isinstance(params, dict) and message.get("method") == "tools/call":
                endpoint = self.server.served(params.get("name"))
                if endpoint is not None and not endpoint.read_only:
                    return self._challenge(
                        "insufficient_scope",
                        f"{endpoint.tool} needs the `{CANCEL}` scope; this token is read-only. Sign in again "
                        "and choose “read and cancel runs”.",
                        status=403,
                    )
        return None

    def _challenge(self, error: str | None, message: str, status: int = 401) -> Response:
        """RFC 6750 §3 / RFC 9728 §5.1: where to find how to sign in, and what was wrong."""
        parts = ['Bearer realm="retab-mcp"']
        if error:
            parts.append(f'error="{error}"')
        parts += [f'scope="{" ".join(SCOPES)}"', f'resource_metadata="{self.resource_metadata_url}"']
        body = {"error": error or "missing_token", "error_description": message}
        return JSONResponse(body, status_code=status, headers={"WWW-Authenticate": ", ".join(parts)})

    # -- authorization server ----------------------------------------------------------------

    def _routes(self, base: str) -> Starlette:
        resource_metadata = ProtectedResourceMetadata.model_validate(
            {
                "resource": self.resource,
                "authorization_servers": [base],
                "scopes_supported": list(SCOPES),
                "resource_name": "Retab runs (retab-mcp)",
            }
        )
        prm = cors_middleware(ProtectedResourceMetadataHandler(resource_metadata).handle, ["GET", "OPTIONS"])
        asm = cors_middleware(MetadataHandler(self.metadata).handle, ["GET", "OPTIONS"])
        prm_path = urlsplit(self.resource_metadata_url).path
        post = ["POST", "OPTIONS"]
        return Starlette(
            routes=[
                # RFC 9728 §3.1 puts it after the resource's path; some clients look at the root.
                Route(prm_path, prm, methods=["GET", "OPTIONS"]),
                Route("/.well-known/oauth-protected-resource", prm, methods=["GET", "OPTIONS"]),
                Route("/.well-known/oauth-authorization-server", asm, methods=["GET", "OPTIONS"]),
                Route("/register", cors_middleware(self._json(self.register), post), methods=post),
                Route("/token", cors_middleware(self._json(self.token), post), methods=post),
                Route("/authorize", self.authorize, methods=["GET", "POST"]),
            ]
        )

    @staticmethod
    def _json(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def answer(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except OAuthError as error:
                return error.response()
            return response

        return answer

    async def register(self, request: Request) -> Response:
        """RFC 7591 registration of a public client; the client id seals what was registered."""
        body = await _body(request)
        try:
            metadata = pydantic_core.from_json(body)
        except ValueError:
            raise OAuthError("invalid_client_metadata", "The body must be a JSON object.") from None
        if not isinstance(metadata, dict):
            raise OAuthError("invalid_client_metadata", "The body must be a JSON object.")
        uris = metadata.get("redirect_uris")
        if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_REDIRECT_URIS:
            raise OAuthError("invalid_redirect_uri", f"Send 1 to {MAX_REDIRECT_URIS} redirect_uris.")
        for uri in uris:
            if (problem := _redirect_problem(uri)) is not None:
                raise OAuthError("invalid_redirect_uri", problem)
        grants = metadata.get("grant_types", ["authorization_code", "refresh_token"])
        if not isinstance(grants, list) or "authorization_code" not in grants:
            raise OAuthError("invalid_client_metadata", "grant_types must include authorization_code.")
        responses = metadata.get("response_types", ["code"])
        if not isinstance(responses, list) or "code" not in responses:
            raise OAuthError("invalid_client_metadata", "response_types must include code.")
        requested = metadata.get("scope")
        if requested is not None and (not isinstance(requested, str) or _scopes(requested) is None):
            raise OAuthError("invalid_client_metadata", f"scope may hold only {' and '.join(SCOPES)}.")
        name = _client_name(metadata.get("client_name"))
        client_id = self.ring.seal("client", {"u": uris, "n": name}, ttl=CLIENT_TTL)
        registered = {
            "client_id": client_id,
            "client_id_issued_at": int(time.time()),
            "client_name": name,
            "redirect_uris": uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": requested or " ".join(SCOPES),
        }
        return JSONResponse(registered, status_code=201, headers=NO_STORE)

    def _client(self, client_id: object) -> tuple[list[str], str] | None:
        payload = self.ring.unseal("client", client_id)
        if payload is None or not isinstance(uris := payload.get("u"), list) or not isinstance(payload.get("n"), str):
            return None
        return [uri for uri in uris if isinstance(uri, str)], payload["n"]

    async def authorize(self, request: Request) -> Response:
        """GET: the sign-in page for an authorization request. POST: its form, submitted."""
        try:
            if request.method == "GET":
                return self._signin_page(request)
            return await self._signed_in(request)
        except _PageError as error:
            return signin.error_page(error.message, error.status)

    def _signin_page(self, request: Request) -> Response:
        params = _single(request.query_params.multi_items())
        if params is None:
            raise _PageError("The sign-in link repeats a parameter; start again from your app.")
        client = self._client(params.get("client_id"))
        if client is None:
            raise _PageError("The app asking to sign in is not registered here (its client id is not valid).")
        uris, name = client
        redirect_uri = _matching_redirect(params.get("redirect_uri"), uris)
        if redirect_uri is None:
            raise _PageError("The app asked to send you back to an address it did not register; nothing was sent.")
        state = params.get("state")

        def refuse(error: str, description: str) -> Response:
            return _redirect(redirect_uri, {"error": error, "error_description": description}, state, self.issuer)

        if params.get("response_type") != "code":
            return refuse("unsupported_response_type", "Only response_type=code is supported.")
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not _PKCE.fullmatch(challenge):
            return refuse("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256.")
        requested = _scopes(params.get("scope", ""))
        if requested is None:
            return refuse("invalid_scope", f"Scopes offered: {' '.join(SCOPES)}.")
        resource = params.get("resource", self.resource)
        if resource.rstrip("/") != self.resource:
            return refuse("invalid_target", f"This server issues tokens for {self.resource} only.")
        csrf_name, csrf_value = secrets.token_hex(6), secrets.token_urlsafe(24)
        sealed = self.ring.seal(
            "signin",
            {"c": params["client_id"], "u": redirect_uri, "s": state, "p": challenge, "q": requested, "x": csrf_name,
             "v": hashlib.sha256(csrf_value.encode()).hexdigest()},
            ttl=SIGNIN_TTL,
        )  # fmt: skip
        page = signin.page(self._form(name, redirect_uri, requested, sealed))
        page.set_cookie(
            CSRF_COOKIE_PREFIX + csrf_name, csrf_value, max_age=SIGNIN_TTL, path="/authorize",
            secure=self.secure_cookies, httponly=True, samesite="strict",
        )  # fmt: skip
        return page

    def _form(self, name: str, redirect_uri: str, requested: list[str], sealed: str) -> signin.Form:
        return signin.Form(
            client_name=name,
            redirect=redirect_uri,
            request=sealed,
            may_cancel=not requested or CANCEL in requested,
        )

    async def _signed_in(self, request: Request) -> Response:
        form = _single(parse_qsl((await _body(request)).decode("utf-8", "replace"), keep_blank_values=True))
        if form is None or request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            raise _PageError("The sign-in form came back malformed; start again from your app.")
        pending = self.ring.unseal("signin", form.get("request"))
        client = self._client(pending.get("c")) if pending else None
        if pending is None or client is None:
            raise _PageError("This sign-in form has expired; start again from your app.")
        cookie = request.cookies.get(CSRF_COOKIE_PREFIX + str(pending.get("x")), "")
        if not hmac.compare_digest(hashlib.sha256(cookie.encode()).hexdigest(), str(pending.get("v"))):
            raise _PageError(
                "This sign-in form was not opened in this browser (or its cookie was blocked); start again "
                "from your app.",
                403,
            )
        redirect_uri, state, requested = pending["u"], pending.get("s"), pending.get("q") or []
        if form.get("action") == "deny":
            return _redirect(redirect_uri, {"error": "access_denied"}, state, self.issuer)
        form_view = self._form(client[1], redirect_uri, requested, form["request"])
        address = request.client.host if request.client else "unknown"
        if self._attempts.exhausted(address):
            message = "Too many failed sign-ins from your address: wait a minute, then try again."
            return signin.page(form_view, message, 429)
        key = form.get("retab_api_key", "").strip()
        if not well_formed(key):
            self._attempts.failed(address)
            return signin.page(form_view, "That is not a Retab API key: paste the whole key, e.g. rt_live_…", 400)
        verdict = await self._check_key(key)
        if verdict is None:
            return signin.page(form_view, "Retab could not be reached to check the key; try again in a moment.", 503)
        if not verdict:
            self._attempts.failed(address)
            return signin.page(form_view, "Retab does not accept this API key. Check it and try again.", 401)
        wanted = [READ, CANCEL] if form.get("scope") == "read_cancel" and form_view.may_cancel else [READ]
        code = self.ring.seal(
            "code",
            {"c": pending["c"], "u": redirect_uri, "p": pending["p"], "q": wanted, "k": key,
             "j": secrets.token_hex(12)},
            ttl=CODE_TTL,
        )  # fmt: skip
        return _redirect(redirect_uri, {"code": code}, state, self.issuer)

    async def _check_key(self, key: str) -> bool | None:
        """Whether Retab accepts `key` (AppState.accepts); None if that could not be told."""
        state = self.server.state
        return None if state is None else await state.accepts(key)

    async def token(self, request: Request) -> Response:
        """RFC 6749 §4.1.3 and §6: a code (with its PKCE verifier) or a refresh token, for tokens."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "Send the token request as application/x-www-form-urlencoded.")
        form = _single(parse_qsl((await _body(request)).decode("utf-8", "replace"), keep_blank_values=True))
        if form is None:
            raise OAuthError("invalid_request", "A parameter is repeated.")
        client_id = form.get("client_id")
        if not client_id:
            raise OAuthError("invalid_request", "client_id is required.")
        if self._client(client_id) is None:
            raise OAuthError("invalid_client", "The client id is not valid here: register again.", 401)
        resource = form.get("resource")
        match form.get("grant_type"):
            case "authorization_code":
                grant = self._redeem_code(form, client_id)
                scopes = grant["q"]
            case "refresh_token":
                grant = self._redeem_refresh(form, client_id)
                scopes = grant["q"]
                if "scope" in form:
                    narrowed = _scopes(form["scope"])
                    if narrowed is None or not set(narrowed) <= set(scopes):
                        raise OAuthError("invalid_scope", "A refresh cannot widen the grant.")
                    scopes = narrowed or scopes
            case None:
                raise OAuthError("invalid_request", "grant_type is required.")
            case _:
                raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token.")
        if resource is not None and resource.rstrip("/") != self.resource:
            raise OAuthError("invalid_target", f"This server issues tokens for {self.resource} only.")
        # Spent only once every check passed: a refused request leaves the grant usable.
        if not self._spent.spend(str(grant.get("j")), grant["exp"]):
            raise OAuthError("invalid_grant", "This code or refresh token was already used: sign in again.")
        carried = {"c": client_id, "k": grant["k"], "r": self.resource}
        access = self.ring.seal("access", {**carried, "q": scopes}, ttl=self.access_ttl)
        rotated = {**carried, "q": grant["q"], "j": secrets.token_hex(12)}  # a refresh keeps the grant's scopes
        refresh = self.ring.seal("refresh", rotated, ttl=self.refresh_ttl)
        answer = OAuthToken(
            access_token=access, expires_in=self.access_ttl, scope=" ".join(scopes), refresh_token=refresh
        )
        return JSONResponse(answer.model_dump(exclude_none=True), headers=NO_STORE)

    def _redeem_code(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        code = self.ring.unseal("code", form.get("code"))
        verifier = form.get("code_verifier", "")
        if "code" not in form or "code_verifier" not in form:
            raise OAuthError("invalid_request", "code and code_verifier are required.")
        if code is None or code.get("c") != client_id or not _scope_list(code.get("q")):
            raise OAuthError("invalid_grant", "The code is not valid (expired, or for another client).")
        if "redirect_uri" in form and form["redirect_uri"] != code.get("u"):
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request's.")
        if not _PKCE_VERIFIER.fullmatch(verifier) or not hmac.compare_digest(_s256(verifier), str(code.get("p"))):
            raise OAuthError("invalid_grant", "The code_verifier does not match the code_challenge.")
        return code

    def _redeem_refresh(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        refresh = self.ring.unseal("refresh", form.get("refresh_token"))
        if refresh is None or refresh.get("c") != client_id or refresh.get("r") != self.resource:
            raise OAuthError("invalid_grant", "The refresh token is not valid (expired, or for another client).")
        if not _scope_list(refresh.get("q")):
            raise OAuthError("invalid_grant", "The refresh token is not valid.")
        return refresh


class _PageError(Exception):
    """A sign-in request that cannot be sent back to a registered address: shown on a page."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class _Spent:
    """Codes and refresh tokens used in this process, until they expire anyway."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}
        self._next_sweep = 0.0

    def spend(self, token_id: str, expires: int) -> bool:
        now = time.time()
        if now >= self._next_sweep:
            self._until = {seen: until for seen, until in self._until.items() if until > now}
            self._next_sweep = now + 60
        if token_id in self._until:
            return False
        self._until[token_id] = expires
        return True


class _Attempts:
    """At most `limit` failed sign-ins per client address in each `window` seconds: what a key
    guesser needs many of, and a user few."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, tuple[float, int]] = {}

    def exhausted(self, address: str) -> bool:
        started, count = self._failures.get(address, (0.0, 0))
        return count >= self.limit and time.monotonic() - started < self.window

    def failed(self, address: str) -> None:
        now = time.monotonic()
        if len(self._failures) > 10_000:
            self._failures = {a: (t, n) for a, (t, n) in self._failures.items() if now - t < self.window}
        started, count = self._failures.get(address, (now, 0))
        if now - started >= self.window:
            started, count = now, 0
        self._failures[address] = (started, count + 1)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1")).strip()
    return None


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", f"The body is over {MAX_FORM_BYTES} bytes.", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _single(pairs: list[tuple[str, str]]) -> dict[str, str] | None:
    """The parameters as a dict; None if one is repeated (RFC 6749 §3.1)."""
    params = dict(pairs)
    return params if len(params) == len(pairs) else None


def _scopes(value: str) -> list[str] | None:
    """The scopes of a space-separated list, in SCOPES' order; None if one is unknown."""
    asked = set(value.split())
    return None if not asked <= set(SCOPES) else [scope for scope in SCOPES if scope in asked]


def _scope_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and bool(value) and all(scope in SCOPES for scope in value)


def _client_name(value: object) -> str:
    if not isinstance(value, str):
        return "An unnamed app"
    name = "".join(ch for ch in value if ch.isprintable()).strip()[:MAX_NAME_CHARS]
    return name or "An unnamed app"


def _redirect_problem(uri: object) -> str | None:
    """Why `uri` cannot be a redirect URI, or None."""
    if not isinstance(uri, str) or not 0 < len(uri) <= MAX_URI_CHARS or not uri.isprintable() or " " in uri:
        return f"A redirect URI must be a URI of at most {MAX_URI_CHARS} characters."
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or parts.scheme.lower() in REFUSED_SCHEMES:
        return "A redirect URI must be absolute, without a fragment, and not javascript:, data: or file:."
    if parts.scheme.lower() == "http" and parts.hostname not in LOOPBACK_REDIRECT_HOSTS:
        return "A redirect URI over http must be a loopback one (127.0.0.1, [::1], localhost); use https."
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        return "A redirect URI must name a host."
    return None


def _matching_redirect(asked: str | None, registered: list[str]) -> str | None:
    """The redirect URI to use: exactly a registered one, or (RFC 8252 §7.3) a loopback one on
    another port; the only registered one when none is asked for."""
    if asked is None:
        return registered[0] if len(registered) == 1 else None
    if asked in registered:
        return asked
    parts = urlsplit(asked)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1"):
        return None
    for uri in registered:
        known = urlsplit(uri)
        same_but_port = (known.scheme, known.hostname, known.path, known.query) == (
            parts.scheme, parts.hostname, parts.path, parts.query,
        )  # fmt: skip
        if same_but_port:
            return asked
    return None


def _redirect(uri: str, params: dict[str, str], state: object, issuer: str) -> Response:
    """303 back to the client, with `state` as it came and the issuer (RFC 9207)."""
    query = {**params, **({"state": state} if isinstance(state, str) else {}), "iss": issuer}
    separator = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(uri + separator + urlencode(query), status_code=303, headers=NO_STORE)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


_PKCE: Final = re.compile(r"[A-Za-z0-9_-]{43}")  # RFC 7636 §4.2: BASE64URL(SHA256(verifier))
_PKCE_VERIFIER: Final = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
