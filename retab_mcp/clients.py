"""`retab-mcp config CLIENT`: the client's config entry for this installation, printed or merged.

What users get wrong when they copy an entry by hand, and what this does instead:
- Desktop apps start servers with a minimal PATH and no shell environment, so a bare `uv` or
  `python` fails ("spawn uv ENOENT"): the entry names the absolute path of what is running now,
  the Python of this installation, or `uvx` when this is itself a throwaway `uvx` environment
  (uv's cache, which `uv cache clean` empties, so its Python must not be written down). A `uvx`
  entry installs what is running now: from a Git URL or a path, `uvx --from` that same source.
- The key never reaches the server when it is only in the shell: it goes in the entry's `env`,
  as a placeholder unless `--api-key-env` says to copy it (VS Code prompts for it instead).
- Hand edits lose other servers or break the JSON: `--write` merges into the file, keeps every
  other key, writes a backup first, replaces the file atomically, and will not replace an
  existing `retab` entry without `--force`. Replacing it keeps what the user put in its `env`:
  the key they pasted is never put back to the placeholder, and never printed.
- VS Code's mcp.json is JSONC (comments, trailing commas): it is read as such, and written back
  as plain JSON, which cannot hold comments; the backup keeps them, and one stderr line says so.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlparse

SERVER_NAME: Final = "retab"
KEY_VAR: Final = "RETAB_API_KEY"
KEY_PLACEHOLDER: Final = "YOUR_RETAB_API_KEY"
PACKAGE: Final = "retab-mcp"
# VS Code asks for the key once and keeps it in its secret storage, instead of a file.
VSCODE_KEY_INPUT: Final = {
    "type": "promptString",
    "id": "retab-api-key",
    "description": "Retab API key",
    "password": True,
}

Launcher = Literal["auto", "python", "uvx"]


@dataclass(frozen=True, slots=True)
class Client:
    name: str  # as on the command line
    title: str
    servers_key: str  # the object in the file that holds servers by name
    entry_fields: Mapping[str, str] = field(default_factory=dict)  # fields every entry carries
    prompts_for_key: bool = False  # VS Code's `inputs`
    jsonc: bool = False  # the file may hold comments and trailing commas
    restart: str = ""


CLIENTS: Final = {
    client.name: client
    for client in (
        Client("claude-desktop", "Claude Desktop", "mcpServers", restart="Quit and reopen Claude Desktop."),
        Client("cursor", "Cursor", "mcpServers", restart="Reload MCP servers in Cursor's settings."),
        Client(
            "vscode",
            "VS Code",
            "servers",
            {"type": "stdio"},
            prompts_for_key=True,
            jsonc=True,
            restart="Start the server from the MCP view in VS Code.",
        ),
        Client(
            "claude-code",
            "Claude Code",
            "mcpServers",
            {"type": "stdio"},
            restart="Start a new Claude Code session; `claude mcp list` shows it.",
        ),
    )
}


class SetupError(Exception):
    """Something the user has to fix; the message says what. Nothing was written."""


@dataclass(frozen=True, slots=True)
class Launch:
    command: str
    args: tuple[str, ...]


# -- what to run ---------------------------------------------------------------------------------


def launch(launcher: Launcher = "auto", environ: Mapping[str, str] | None = None) -> Launch:
    """The absolute command that starts this installation of retab-mcp over stdio."""
    env = os.environ if environ is None else environ
    if launcher == "auto":
        launcher = "uvx" if _in_uv_cache(env) else "python"
    if launcher == "uvx":
        return Launch(_uvx(env), uvx_args())
    # abspath, not resolve(): a venv's python is a symlink, and its target runs without the venv.
    return Launch(os.path.abspath(sys.executable), ("-m", "retab_mcp"))


def _uvx(env: Mapping[str, str]) -> str:
    # uv sets UV to its own absolute path for what it runs; uvx sits next to it.
    uv = env.get("UV")
    if uv:
        sibling = Path(uv).with_name("uvx.exe" if sys.platform == "win32" else "uvx")
        if sibling.is_file():
            return str(sibling)
    # Not resolved either: a package manager's symlink survives upgrades, its target does not.
    found = shutil.which("uvx", path=env.get("PATH"))
    if not found:
        raise SetupError("uvx was not found on PATH: install uv (https://docs.astral.sh/uv/) or use --launcher python.")
    return os.path.abspath(found)


def uvx_args(direct_url: str | None = None) -> tuple[str, ...]:
    """uvx's arguments that run this same retab-mcp: the package from the index, or `--from` the
    Git URL or path it was installed from (PEP 610's direct_url.json), which the index may not have."""
    if direct_url is None:
        try:
            direct_url = importlib.metadata.distribution(PACKAGE).read_text("direct_url.json")
        except importlib.metadata.PackageNotFoundError:
            direct_url = None
    if not direct_url:
        return (PACKAGE,)
    origin = json.loads(direct_url)
    url: str = origin["url"]
    vcs = origin.get("vcs_info") or {}
    if vcs.get("vcs") == "git":
        revision = vcs.get("requested_revision")
        source = f"git+{url}@{revision}" if revision else f"git+{url}"
    elif url.startswith("file://"):
        source = unquote(urlparse(url).path)
    else:
        source = url
    return ("--from", source, PACKAGE)


def _in_uv_cache(env: Mapping[str, str]) -> bool:
    """Whether this Python is a `uvx` environment in uv's cache (gone after `uv cache clean`)."""
    prefix = Path(sys.prefix).resolve()
    uv = env.get("UV")
    if uv:
        try:
            answer = subprocess.run(  # noqa: S603 - uv's own path, from uv
                [uv, "cache", "dir"], capture_output=True, text=True, timeout=10, check=True
            )
            return prefix.is_relative_to(Path(answer.stdout.strip()).resolve())
        except (OSError, subprocess.SubprocessError):
            pass
    return any(part.startswith("archive-v") for part in prefix.parts)


# -- what to write -------------------------------------------------------------------------------


def entry(client: Client, how: Launch, api_key: str | None = None) -> dict[str, Any]:
    """The `retab` server entry; the key is `api_key`, else a placeholder or VS Code's prompt."""
    if api_key is None:
        api_key = f"${{input:{VSCODE_KEY_INPUT['id']}}}" if client.prompts_for_key else KEY_PLACEHOLDER
    return {**client.entry_fields, "command": how.command, "args": list(how.args), "env": {KEY_VAR: api_key}}


def document(client: Client, server: dict[str, Any]) -> dict[str, Any]:
    """A whole config file holding only `server` (what `config` prints, ready to merge)."""
    doc: dict[str, Any] = {client.servers_key: {SERVER_NAME: server}}
    if _uses_key_prompt(server):
        doc["inputs"] = [dict(VSCODE_KEY_INPUT)]
    return doc


def _uses_key_prompt(server: dict[str, Any]) -> bool:
    return bool(server.get("env", {}).get(KEY_VAR, "").startswith("${input:"))


def default_path(
    client: Client, platform: str | None = None, home: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Where the client reads its user-level config on this platform."""
    platform = platform or sys.platform
    home = home or Path.home()
    env = os.environ if environ is None else environ
    if platform == "darwin":
        app_data = home / "Library" / "Application Support"
    elif platform == "win32":
        app_data = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
    else:
        app_data = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return {
        "claude-desktop": app_data / "Claude" / "claude_desktop_config.json",
        "cursor": home / ".cursor" / "mcp.json",
        "vscode": app_data / "Code" / "User" / "mcp.json",
        "claude-code": home / ".claude.json",  # Claude Code's user scope
    }[client.name]


@dataclass(frozen=True, slots=True)
class Written:
    path: Path
    backup: Path | None
    changed: bool
    server: dict[str, Any]  # the entry as it is in the file
    comments_dropped: bool = False


def _holds_a_key(value: object) -> bool:
    """A key the user put there: anything but nothing and our placeholder (a real key, or a
    reference such as VS Code's `${input:...}` or `${env:...}`)."""
    return isinstance(value, str) and bool(value.strip()) and value != KEY_PLACEHOLDER


def keep_users_env(current: object, server: dict[str, Any]) -> dict[str, Any]:
    """`server` with the `env` the user set in the `current` entry kept: every variable it does
    not set itself, and the key unless `server` brings one (not a placeholder or a prompt)."""
    if not isinstance(current, dict) or not isinstance(current.get("env"), dict):
        return server
    users: dict[str, Any] = current["env"]
    env = {**users, **server["env"]}
    if _holds_a_key(users.get(KEY_VAR)) and not _is_key(server["env"][KEY_VAR]):
        env[KEY_VAR] = users[KEY_VAR]
    return {**server, "env": env}


def _is_key(value: str) -> bool:
    return _holds_a_key(value) and not value.startswith("${input:")


def merge(client: Client, existing: dict[str, Any], server: dict[str, Any], *, force: bool) -> dict[str, Any] | None:
    """`existing` with the `retab` entry set to `server` (keeping the user's env, keep_users_env);
    None when it already is exactly that."""
    servers = existing.get(client.servers_key, {})
    if not isinstance(servers, dict):
        raise SetupError(f"`{client.servers_key}` in the file is not a JSON object; fix it by hand first.")
    inputs = existing.get("inputs", [])
    if not isinstance(inputs, list):
        raise SetupError("`inputs` in the file is not a JSON array; fix it by hand first.")
    current = servers.get(SERVER_NAME)
    server = keep_users_env(current, server)
    wants_prompt = _uses_key_prompt(server)
    has_prompt = any(isinstance(i, dict) and i.get("id") == VSCODE_KEY_INPUT["id"] for i in inputs)
    if current == server and (has_prompt or not wants_prompt):
        return None
    if current is not None and current != server and not force:
        raise SetupError(
            f"the file already has a different `{SERVER_NAME}` server entry; pass --force to replace it "
            "(a backup of the file is written first)."
        )
    merged = copy.deepcopy(existing)
    merged.setdefault(client.servers_key, {})[SERVER_NAME] = server
    if wants_prompt:
        kept = [i for i in inputs if not (isinstance(i, dict) and i.get("id") == VSCODE_KEY_INPUT["id"])]
        merged["inputs"] = [*copy.deepcopy(kept), dict(VSCODE_KEY_INPUT)]
    return merged


def write(client: Client, path: Path, server: dict[str, Any], *, force: bool) -> Written:
    """Merge `server` into the config file at `path`, backup first, atomic replace."""
    existing: dict[str, Any] = {}
    had_comments = False
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if client.jsonc:
            text, had_comments = strip_jsonc(text, path)
        if text.strip():
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as exc:
                allowed = "" if client.jsonc else f"; {client.title} reads plain JSON, without comments"
                raise SetupError(
                    f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}){allowed}. "
                    "Fix the file or add the printed entry by hand."
                ) from None
            if not isinstance(loaded, dict):
                raise SetupError(f"{path} does not hold a JSON object.")
            existing = loaded
    merged = merge(client, existing, server, force=force)
    if merged is None:
        return Written(path, None, changed=False, server=existing[client.servers_key][SERVER_NAME])
    backup = _backup(path) if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file can hold keys: a new one is private to the user; an existing one keeps its mode.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(merged, out, indent=2, ensure_ascii=False)
            out.write("\n")
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Written(path, backup, True, merged[client.servers_key][SERVER_NAME], comments_dropped=had_comments)


def strip_jsonc(text: str, path: Path) -> tuple[str, bool]:
    """JSONC `text` as plain JSON (comments and trailing commas out, strings untouched, line
    numbers kept for the parser's error message), and whether it had comments."""
    out: list[str] = []  # single characters, and whole strings as one item
    comments = False
    i = 0
    while i < len(text):
        if text[i] == '"':
            end = i + 1
            while end < len(text) and text[end] not in '"\n':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            i = end + 1
        elif text.startswith("//", i):
            comments = True
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            comments = True
            end = text.find("*/", i + 2)
            if end < 0:
                raise SetupError(f"{path} has a /* comment that never ends.")
            out.append("\n" * text.count("\n", i, end) or " ")
            i = end + 2
        else:
            if text[i] in "}]":
                last = len(out) - 1
                while last >= 0 and out[last].isspace():
                    last -= 1
                if last >= 0 and out[last] == ",":
                    out[last] = " "
            out.append(text[i])
            i += 1
    return "".join(out), comments


def _backup(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    counter = 1
    while backup.exists():  # never overwrite an earlier backup
        backup = path.with_name(f"{path.name}.{stamp}-{counter}.bak")
        counter += 1
    shutil.copy2(path, backup)
    return backup


# -- the command ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=run)
    parser.add_argument("client", choices=sorted(CLIENTS), help="the MCP client to configure")
    parser.add_argument(
        "--api-key-env",
        nargs="?",
        const=KEY_VAR,
        metavar="VAR",
        help=f"copy the key from environment variable VAR (default {KEY_VAR}) instead of a placeholder",
    )
    parser.add_argument(
        "--launcher",
        choices=("auto", "python", "uvx"),
        default="auto",
        help="how the client starts the server: this installation's Python, or uvx (default: uvx when this "
        "is a throwaway uvx environment, else this Python)",
    )
    parser.add_argument("--write", action="store_true", help="merge the entry into the client's config file")
    parser.add_argument("--force", action="store_true", help="with --write: replace an existing retab entry")
    parser.add_argument(
        "--config-path", type=Path, help="with --write: the config file to merge into (default: the client's own)"
    )


def run(args: argparse.Namespace) -> int:
    client = CLIENTS[args.client]
    try:
        api_key = None
        if args.api_key_env:
            api_key = os.environ.get(args.api_key_env, "").strip()
            if not api_key:
                raise SetupError(f"{args.api_key_env} is not set in this shell, so there is no key to copy.")
        server = entry(client, launch(args.launcher), api_key)
        if not args.write:
            print(json.dumps(document(client, server), indent=2))
            where = args.config_path or default_path(client)
            print(f"Merge this into {where} (or rerun with --write). {client.restart}", file=sys.stderr)
            if api_key is None and not client.prompts_for_key:
                print(f"Replace {KEY_PLACEHOLDER} with your Retab API key.", file=sys.stderr)
            return 0
        written = write(client, args.config_path or default_path(client), server, force=args.force)
    except (SetupError, OSError) as exc:
        print(f"retab-mcp config: {exc}", file=sys.stderr)
        return 1
    if not written.changed:
        print(f"{written.path} already has this retab entry; nothing to do.")
        return 0
    print(f"Wrote the retab entry to {written.path}.")
    if written.backup:
        print(f"Backup of the previous file: {written.backup}")
    if written.comments_dropped:
        print(
            f"retab-mcp config: JSON cannot keep the comments {written.path} had; the backup has them.",
            file=sys.stderr,
        )
    key = written.server.get("env", {}).get(KEY_VAR)
    if key == KEY_PLACEHOLDER:
        print(f"Now replace {KEY_PLACEHOLDER} in that file with your Retab API key.")
    elif api_key is None and key != server["env"][KEY_VAR]:
        print("Kept the Retab API key the entry already had.")
    print(client.restart)
    return 0
