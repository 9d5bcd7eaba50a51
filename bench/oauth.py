"""What OAuth costs per call: retab-mcp over HTTP with `--auth oauth` (each call carries an access
token that seals the caller's key) next to the same server with the caller's key in a header,
side by side in one run (interleaved slices, bench/httpload.py).

    uv run --group bench python -m bench.oauth [--duration S] [--slices N]

The token is obtained as a user gets one: registration, the sign-in form, the code for tokens.
The goal (issue 17): calls/s at c=16 with OAuth at least 0.95x the caller's-key figure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import re
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from statistics import median
from typing import Any, Final

import httpx

from bench import httpload
from bench.harness import BIN, SANDBOX_KEY, Sandbox

LEVEL: Final = 16
GOAL: Final = 0.95
SECRET: Final = "bench-oauth-secret-0123456789abcdefghijkl"  # noqa: S105  (a throwaway ring for the run)
CALLBACK: Final = "http://127.0.0.1:53682/callback"


def access_token(base: str, key: str = SANDBOX_KEY) -> str:
    """`Bearer <token>` for `key`, through the server's own registration, sign-in and token routes."""
    deadline = time.monotonic() + 30
    while httpx.get(base + "/readyz").status_code != 200:  # the key check needs the upstream client
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base} did not become ready")
        time.sleep(0.05)
    client_id = httpx.post(base + "/register", json={"redirect_uris": [CALLBACK]}).json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "code_challenge": challenge,
             "code_challenge_method": "S256"}  # fmt: skip
    with httpx.Client(base_url=base) as browser:
        page = browser.get("/authorize", params=query).text
        match = re.search(r'name="request" value="([^"]+)"', page)
        if match is None:
            raise RuntimeError("the sign-in page has no request field")
        form = {"request": html.unescape(match.group(1)), "retab_api_key": key, "scope": "read_cancel"}
        location = browser.post("/authorize", data=form).headers["location"]
    code = httpx.QueryParams(location.split("?", 1)[1])["code"]
    redeemed = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": client_id}
    token: str = httpx.post(base + "/token", data=redeemed).json()["access_token"]
    return f"Bearer {token}"


def contenders(argv: list[str], base_url: str) -> list[httpload.HttpContender]:
    """The same server twice: the caller's key as a header, and an OAuth access token."""
    keyed = httpload.retab_mcp_http(argv, base_url, key="retab-mcp-key", label="retab-mcp, caller's key header")
    oauth = httpload.retab_mcp_http(
        argv, base_url, key="retab-mcp-oauth", label="retab-mcp --auth oauth, access token",
        extra=("--auth", "oauth"), env={"RETAB_MCP_SECRET_KEYS": SECRET},
    )  # fmt: skip
    return [keyed, replace(oauth, authorize=access_token)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.oauth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per slice (default 10)")
    parser.add_argument("--slices", type=int, default=6, help="interleaved slices per contender (default 6)")
    args = parser.parse_args(argv)
    sandbox = Sandbox()
    try:
        results: dict[str, Any] = httpload.run(
            contenders([str(BIN / "retab-mcp")], sandbox.base_url), [LEVEL], args.slices, 2.0, args.duration,
            lambda line: print(line, file=sys.stderr),
        )  # fmt: skip
    finally:
        sandbox.close()
    keyed, oauth = results["retab-mcp-key"][str(LEVEL)], results["retab-mcp-oauth"][str(LEVEL)]
    ratio = oauth["calls_per_s"] / keyed["calls_per_s"]
    # Each slice of one server ran next to the same slice of the other: their ratios, one per
    # pair, are less swayed by the machine's other load than the pooled totals.
    paired = median(
        [o["calls_per_s"] / k["calls_per_s"] for k, o in zip(keyed["slices"], oauth["slices"], strict=True)]
    )
    rows = [
        f"| {label} | {figures['calls_per_s']:.0f} | {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} | "
        f"{figures['cpu_per_call_ms']:.2f} |"
        for label, figures in (("caller's key header", keyed), ("`--auth oauth` access token", oauth))
    ]
    print("| c=16 | calls/s | p50 ms | p99 ms | server CPU ms/call |\n|---|---|---|---|---|")
    print("\n".join(rows))
    verdict = "met" if min(ratio, paired) >= GOAL else "MISSED"
    print(f"\nOAuth / caller's key: {ratio:.3f}x pooled, {paired:.3f}x median of paired slices", end="")
    print(f" (goal >= {GOAL}x): {verdict}")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    raise SystemExit(main())
