"""`retab-mcp doctor`: check what users get wrong in setup, and say how to fix each.

It runs with the same environment the server would get (run it from the client's `env`, or
export the same variables), prints one line per check and a fix under each failure, and exits
non-zero when a check fails. `--sandbox` runs the same checks against the embedded sandbox,
started on a loopback port for the purpose, as `retab-mcp --sandbox` would use it. It never
prints the key: only its kind and length. Its report is meant to be pasted into support
requests, so every line is redacted as results are (redaction.py), and Retab's request id is
shown only when it is short and plain.

Every check and its fixes are listed in `CHECKS`, which the troubleshooting section of
docs/clients.md is tested against.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal

from retab_mcp import __version__
from retab_mcp.clients import KEY_PLACEHOLDER, KEY_VAR
from retab_mcp.config import DEFAULT_BASE_URL, ENV_VARS, ConfigError, Settings, display_url, parse_api_key
from retab_mcp.errors import request_id_from
from retab_mcp.redaction import Redactor

Status = Literal["ok", "warn", "FAIL", "skip"]
KEY_PREFIXES: Final = ("rt_live_", "rt_test_", "sk_retab_")  # sk_retab_ is the legacy form
READ_PATH: Final = "/v1/edits?limit=1"
TIMEOUT_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """One check as the docs describe it: a title and every fix it can print."""

    id: str
    title: str
    fixes: tuple[str, ...]


FIX_PYTHON: Final = (
    "Run retab-mcp with a supported Python: `uv run` (in a clone) and `uvx` pick one by themselves, or "
    "`uv python install 3.12` and reinstall retab-mcp with it."
)
FIX_MCP: Final = (
    "Reinstall retab-mcp so its dependencies match: `uv sync --no-default-groups` in a clone, or add "
    "`--refresh` to the `uvx` command that starts it."
)
FIX_SETTINGS: Final = "Correct the variable named above in the server's `env`, or remove it to use its default."
FIX_KEY_MISSING: Final = (
    f"Put {KEY_VAR} in the `env` of the retab entry in your client's config: desktop apps do not pass your "
    "shell's environment to servers. `retab-mcp config CLIENT --api-key-env --write` does it for you."
)
FIX_KEY_PLACEHOLDER: Final = f"Replace {KEY_PLACEHOLDER} in the client's config with your Retab API key."
FIX_KEY_QUOTED: Final = (
    "Remove the quotes or `Bearer ` around the key (the server takes them off, with a warning): the JSON string "
    "itself is the key."
)
FIX_KEY_PREFIX: Final = (
    "Retab keys start with rt_live_ or rt_test_: check that you copied an API key from the Retab dashboard."
)
FIX_UNREACHABLE: Final = (
    f"Check RETAB_API_BASE_URL (unset means {DEFAULT_BASE_URL}), your network, and any proxy (HTTPS_PROXY) "
    "or firewall between this machine and Retab."
)
FIX_TLS: Final = "A TLS-intercepting proxy needs its CA certificate: point SSL_CERT_FILE at it in the server's `env`."
FIX_KEY_REJECTED: Final = (
    f"Retab did not accept this key (wrong, revoked or mistyped): create a new API key in the Retab dashboard "
    f"and set it as {KEY_VAR}."
)
FIX_KEY_FORBIDDEN: Final = "The key is valid but may not read edits: use a key whose workspace and role can."
FIX_RETAB_DOWN: Final = "Retab answered with an error of its own: wait a minute and run `retab-mcp doctor` again."

CHECKS: Final = (
    CheckInfo("python", "Python version", (FIX_PYTHON,)),
    CheckInfo("mcp", "MCP SDK version", (FIX_MCP,)),
    CheckInfo("settings", "Settings", (FIX_SETTINGS,)),
    CheckInfo("key", "API key is set", (FIX_KEY_MISSING,)),
    CheckInfo("key-shape", "API key looks like a Retab key", (FIX_KEY_PLACEHOLDER, FIX_KEY_QUOTED, FIX_KEY_PREFIX)),
    CheckInfo("reachable", "Retab API is reachable", (FIX_UNREACHABLE, FIX_TLS)),
    CheckInfo("auth", "The key works", (FIX_KEY_REJECTED, FIX_KEY_FORBIDDEN, FIX_RETAB_DOWN)),
)
_TITLES: Final = {check.id: check.title for check in CHECKS}


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    status: Status
    detail: str
    fix: str | None = None

    @property
    def title(self) -> str:
        return _TITLES[self.id]


def check_all(environ: Mapping[str, str] | None = None) -> Iterator[Result]:
    """Run every check in order; later checks are skipped when what they need failed."""
    env = os.environ if environ is None else environ
    redactor = Redactor([env.get(KEY_VAR), env.get(KEY_VAR, "").strip(), env.get("RETAB_MCP_AUTH_TOKEN")])
    for result in _checks(env):
        yield replace(result, detail=redactor.text(result.detail))


def _checks(env: Mapping[str, str]) -> Iterator[Result]:
    yield _python()
    yield _mcp()
    settings: Settings | None = None
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        yield Result("settings", "FAIL", str(exc), FIX_SETTINGS)
    else:
        yield Result("settings", "ok", _describe_settings(settings, env))
    # The value as set, for the key's own checks (a bad unrelated setting does not hide a key
    # problem); the key the server would send (quotes and `Bearer ` taken off), for the read.
    raw = env.get(KEY_VAR, "").strip() or None
    key, problem = parse_api_key(raw)
    if not raw:
        yield Result("key", "FAIL", f"{KEY_VAR} is not set (or empty) in this environment.", FIX_KEY_MISSING)
        yield Result("key-shape", "skip", "no key")
    else:
        yield Result("key", "ok", f"{KEY_VAR} is set ({_describe_key(raw)}).")
        yield _key_shape(raw, problem)
    if settings is None:
        yield Result("reachable", "skip", "the settings are invalid")
        yield Result("auth", "skip", "the settings are invalid")
        return
    reachable = _reachable(settings.base_url)
    yield reachable
    if reachable.status != "ok":
        yield Result("auth", "skip", "Retab is not reachable")
    elif not key:
        yield Result("auth", "skip", "no key" if not problem else "no key the server would send")
    else:
        yield _authenticated_read(settings.base_url, key)


def _python() -> Result:
    running = ".".join(map(str, sys.version_info[:3]))
    wanted = _metadata("Requires-Python")
    if wanted and not satisfies(running, wanted):
        return Result("python", "FAIL", f"Python {running}; retab-mcp needs {wanted}.", FIX_PYTHON)
    return Result("python", "ok", f"Python {running}" + (f" (needs {wanted})" if wanted else ""))


def _mcp() -> Result:
    wanted = next(
        (req[len("mcp") :].split(";")[0].strip() for req in _requirements() if re.match(r"mcp\s*[<>=!~(]", req)),
        "",
    )
    try:
        installed = importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:
        return Result("mcp", "FAIL", "the mcp package is not installed.", FIX_MCP)
    if wanted and not satisfies(installed, wanted.strip("()")):
        return Result("mcp", "FAIL", f"mcp {installed}; retab-mcp needs mcp {wanted}.", FIX_MCP)
    return Result("mcp", "ok", f"mcp {installed}" + (f" (needs {wanted})" if wanted else ""))


def _metadata(field: str) -> str | None:
    try:
        value = importlib.metadata.metadata("retab-mcp")[field]
        return str(value) if value else None
    except (importlib.metadata.PackageNotFoundError, KeyError):
        return None


def _requirements() -> list[str]:
    try:
        return importlib.metadata.requires("retab-mcp") or []
    except importlib.metadata.PackageNotFoundError:
        return []


def satisfies(version: str, specifiers: str) -> bool:
    """Whether `version` meets comma-separated `>=, >, <=, <, ==, !=` clauses on release numbers.

    Enough for this package's own simple requirements, without depending on `packaging`.
    """

    def release(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])

    have = release(version)
    compare: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
        "==": lambda a, b: a[: len(b)] == b,
        "!=": lambda a, b: a[: len(b)] != b,
    }
    for clause in filter(None, (c.strip() for c in specifiers.split(","))):
        match = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*([\w.*+-]+)", clause)
        if match is None:
            continue  # a form this checker does not know is not the user's problem
        op, bound = match.groups()
        width = max(len(have), len(release(bound)))
        a = have + (0,) * (width - len(have))
        b = release(bound)
        b = b if op in ("==", "!=") else b + (0,) * (width - len(b))
        if not compare[op](a, b):
            return False
    return True


def _describe_settings(settings: Settings, env: Mapping[str, str]) -> str:
    """The variables that are set, with values (secrets only by kind), and the base URL used."""
    parts = []
    for var in ENV_VARS:
        if var.name == KEY_VAR:
            continue  # its own check
        value = env.get(var.name, "").strip()
        if value:
            parts.append(f"{var.name}=" + ("(set)" if var.secret else display_url(value)))
    where = f"Retab at {display_url(settings.base_url)}"
    return where + ("; " + ", ".join(parts) if parts else "; every other setting at its default")


def _describe_key(key: str) -> str:
    """What can be said about a key without revealing it."""
    kind = next((p for p in KEY_PREFIXES if key.startswith(p)), None)
    return f"{kind}... key, {len(key)} characters" if kind else f"{len(key)} characters"


def _key_shape(key: str, problem: str | None) -> Result:
    if key == KEY_PLACEHOLDER:
        return Result(
            "key-shape", "FAIL", f"{KEY_VAR} is still the placeholder {KEY_PLACEHOLDER}.", FIX_KEY_PLACEHOLDER
        )
    if problem:
        return Result("key-shape", "FAIL", "the value is a placeholder or an example, not a key.", FIX_KEY_PLACEHOLDER)
    if re.search(r"[\s\"'`]", key):
        # The server takes one pair of quotes and a leading `Bearer ` off, with a warning.
        return Result("key-shape", "warn", "the key has quotes or `Bearer ` around it.", FIX_KEY_QUOTED)
    if not key.startswith(KEY_PREFIXES):
        # A warning: a new kind of key may still work, and the authenticated read will tell.
        return Result("key-shape", "warn", "the key does not start like a Retab key.", FIX_KEY_PREFIX)
    return Result("key-shape", "ok", f"{_describe_key(key)}")


def _reachable(base_url: str) -> Result:
    import httpx

    started = time.monotonic()
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.get(base_url + "/")
    except httpx.ConnectError as exc:
        fix = FIX_TLS if "ssl" in str(exc).lower() or "certificate" in str(exc).lower() else FIX_UNREACHABLE
        return Result("reachable", "FAIL", f"cannot connect to {display_url(base_url)}: {_reason(exc)}", fix)
    except httpx.HTTPError as exc:
        return Result("reachable", "FAIL", f"no answer from {display_url(base_url)}: {_reason(exc)}", FIX_UNREACHABLE)
    elapsed = (time.monotonic() - started) * 1000
    # Any HTTP answer proves the network path; the read below proves the API and the key.
    return Result(
        "reachable", "ok", f"{display_url(base_url)} answered HTTP {response.status_code} in {elapsed:.0f} ms"
    )


def _authenticated_read(base_url: str, key: str) -> Result:
    import httpx

    from retab_mcp.client import USER_AGENT

    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.get(
                base_url + READ_PATH, headers={"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT}
            )
    except httpx.HTTPError as exc:
        return Result("auth", "FAIL", f"GET {READ_PATH} failed: {_reason(exc)}", FIX_UNREACHABLE)
    status = response.status_code
    request_id = request_id_from(response.headers.get("x-request-id"))
    said = f"GET {READ_PATH} answered HTTP {status}" + (f" (request id {request_id})" if request_id else "")
    if 200 <= status < 300:
        return Result("auth", "ok", f"{said}: Retab accepted the key.")
    if status == 401:
        return Result("auth", "FAIL", f"{said}: Retab rejected the key.", FIX_KEY_REJECTED)
    if status == 403:
        return Result("auth", "FAIL", f"{said}: the key may not read edits.", FIX_KEY_FORBIDDEN)
    if status == 429:
        return Result("auth", "warn", f"{said}: rate limited, so the key was not judged.", FIX_RETAB_DOWN)
    if status >= 500:
        return Result("auth", "FAIL", f"{said}.", FIX_RETAB_DOWN)
    return Result("auth", "FAIL", f"{said}: is RETAB_API_BASE_URL the Retab API?", FIX_UNREACHABLE)


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


# -- the command ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=run)
    parser.description = (
        "Check the Python and MCP SDK versions, the settings, the API key and that Retab accepts it, "
        "with the environment this command runs in. Exits 1 when a check fails."
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="run the same checks against the embedded Retab sandbox (started on a loopback port), as "
        "`retab-mcp --sandbox` would use it: no key, no network",
    )


def run(args: argparse.Namespace) -> int:
    print(f"retab-mcp {__version__} doctor")
    if not args.sandbox:
        return _report(check_all())
    from retab_mcp.sandbox import SANDBOX_API_KEY, serve_in_thread

    with serve_in_thread() as sandbox:
        print(f"Against the embedded Retab sandbox at {sandbox.base_url} with its key, not Retab:")
        # The server's own settings, with the sandbox's URL and key in place of Retab's.
        env = {**os.environ, KEY_VAR: SANDBOX_API_KEY, "RETAB_API_BASE_URL": sandbox.base_url}
        return _report(check_all(env))


def _report(results: Iterator[Result]) -> int:
    failed = 0
    for result in results:
        print(f"  {result.status:<5} {result.title}: {result.detail}")
        if result.fix and result.status in ("FAIL", "warn"):
            print(f"        fix: {result.fix}")
        failed += result.status == "FAIL"
    print("All checks passed." if not failed else f"{failed} check{'s' * (failed > 1)} failed.")
    return 1 if failed else 0
