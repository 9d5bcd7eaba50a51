"""The sign-in page of `--auth oauth` (oauth.py): one small HTML form, no script, no external asset.

It says which app is asking and the host the user will be sent back to, asks for the Retab API
key (`retab_api_key`) and offers "read and cancel runs" or "read only". Every value shown is
escaped. The page may not be framed (`frame-ancestors 'none'`, clickjacking), its only style is
inline and pinned by hash, and the form may post only here and, through our redirect, to the
app's own address (`form-action`: browsers check a form's redirects too).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from html import escape
from typing import Final
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

_STYLE: Final = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#111}
main{max-width:28rem;margin:3rem auto;padding:2rem;background:#fff;border:1px solid #d0d4da;border-radius:8px}
h1{font-size:1.35rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;font:inherit;
border:1px solid #6b7280;border-radius:4px}
fieldset{border:1px solid #d0d4da;border-radius:4px;margin:1rem 0;padding:.5rem 1rem}
fieldset label{display:inline;font-weight:400;margin:0}
.choice{margin:.35rem 0}
.alert{background:#fdecea;border:1px solid #b3261e;color:#5f1410;padding:.75rem;border-radius:4px}
.hint{color:#374151;font-size:.9rem}
button{font:inherit;padding:.6rem 1.2rem;border-radius:4px;border:1px solid #1d4ed8;background:#1d4ed8;color:#fff}
button.secondary{background:#fff;color:#1d4ed8;margin-left:.5rem}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
""".strip()
_SOURCE: Final = re.compile(r"[a-z][a-z0-9+.-]*:(//[A-Za-z0-9.\-]+(:[0-9]+)?|//\[[0-9a-fA-F:]+\](:[0-9]+)?)?")
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


@dataclass(frozen=True, slots=True)
class Form:
    client_name: str
    redirect: str  # the registered address the user goes back to
    request: str  # the sealed authorization request (CSRF-bound, see oauth.py)
    may_cancel: bool  # the app asked for the cancel scope, or for no scope in particular


def page(form: Form, message: str | None = None, status: int = 200) -> HTMLResponse:
    """The sign-in form, with `message` (why the last attempt failed) above it."""
    host = _host(form.redirect)
    alert = f'<p class="alert" role="alert" id="problem">{escape(message)}</p>' if message else ""
    described = ' aria-describedby="problem" aria-invalid="true"' if message else ' aria-describedby="key-hint"'
    cancel_choice = (
        '<div class="choice"><input type="radio" id="scope-cancel" name="scope" value="read_cancel" checked>'
        ' <label for="scope-cancel">Read and cancel runs</label></div>'
        if form.may_cancel
        else ""
    )
    read_checked = "" if form.may_cancel else " checked"
    body = f"""
<h1>Sign in to Retab for {escape(form.client_name)}</h1>
<p><strong>{escape(form.client_name)}</strong> asks to use your Retab runs through this server.
After you sign in you will be sent back to <strong>{escape(host)}</strong>.</p>
{alert}
<form method="post" action="/authorize">
<input type="hidden" name="request" value="{escape(form.request)}">
<label for="retab_api_key">Retab API key</label>
<input type="password" id="retab_api_key" name="retab_api_key" required autocomplete="off" spellcheck="false"
 autocapitalize="off"{described}>
<p class="hint" id="key-hint">Your key from the Retab dashboard (it starts with rt_). It is checked with Retab
once, then kept only inside the tokens given to {escape(form.client_name)}, sealed: this server stores nothing.</p>
<fieldset><legend>What may {escape(form.client_name)} do?</legend>
{cancel_choice}
<div class="choice"><input type="radio" id="scope-read" name="scope" value="read"{read_checked}>
 <label for="scope-read">Read only: see runs, never stop one</label></div>
</fieldset>
<button type="submit" name="action" value="allow">Sign in</button>
<button type="submit" name="action" value="deny" class="secondary" formnovalidate>Cancel</button>
</form>"""
    return _html(body, status, form.redirect)


def error_page(message: str, status: int = 400) -> HTMLResponse:
    """A sign-in request that cannot go back to the app: said here, never redirected."""
    body = f'<h1>Sign-in cannot continue</h1>\n<p class="alert" role="alert">{escape(message)}</p>'
    return _html(body, status, None)


def _html(body: str, status: int, redirect: str | None) -> HTMLResponse:
    document = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>Sign in to Retab</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>{body}\n</main>\n</body>\n</html>\n"
    )
    targets = "'self'" + (f" {_origin(redirect)}" if redirect else "")
    policy = (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action {targets}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    return HTMLResponse(document, status_code=status, headers=headers)


def _host(uri: str) -> str:
    parts = urlsplit(uri)
    return parts.netloc or f"{parts.scheme}: (an app on this device)"


def _origin(uri: str) -> str:
    """What `form-action` needs to allow the redirect back: the origin, or the app's scheme."""
    parts = urlsplit(uri)
    source = f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else f"{parts.scheme}:"
    # Nothing that could end the directive: a source the grammar allows, or none (the browser
    # then stops at the redirect, and the app's address is on the page).
    return source if _SOURCE.fullmatch(source) else ""
