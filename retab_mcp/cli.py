"""Command line: flags -> settings -> transport.

    retab-mcp [--sandbox] [--log-level LEVEL]     the MCP server over stdio
    retab-mcp [--toolsets all] [--read-only] [--tools a,b]   ... serving more or fewer tools
    retab-mcp --tasks                             ... answering long waits with MCP tasks (tasks.py)
    retab-mcp --transport http [--host H] [--port N] [--stateful] ...   over Streamable HTTP
    retab-mcp --transport http --auth oauth --public-url URL   ... users sign in (oauth.py)
    retab-mcp sandbox [--host H] [--port N]       the Retab sandbox alone, on loopback
    retab-mcp config CLIENT [--write]             a client's config entry (clients.py)
    retab-mcp doctor                              setup checks, each with a fix (doctor.py)

Flags win over environment variables (config.ENV_VARS). A bad setting, or an address that
cannot be listened on (listen.py), exits with status 2 and one line on stderr naming it; the
HTTP flags given to the stdio server are named in a one-line warning (desktop configs that carry
them keep working). Nothing is ever printed on stdout by the MCP server.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from retab_mcp import __version__
from retab_mcp.config import (
    LOG_LEVELS,
    ConfigError,
    Settings,
    parse_auth,
    parse_http_path,
    parse_log_level,
    parse_public_url,
    parse_workers,
    split_list,
)


class _Parser(argparse.ArgumentParser):
    def format_help(self) -> str:
        # The sandbox's seeded runs, listed only when help is asked for: the list lives with the
        # sandbox, which nothing else on the start-up path imports.
        if self.prog == "retab-mcp" and self.epilog is None:
            from retab_mcp.sandbox.state import finishing_lines, seeded_ids_by_status

            rows = "\n".join(
                [f"  {status}: {', '.join(ids)}" for status, ids in seeded_ids_by_status().items()] + finishing_lines()
            )
            self.epilog = f"The sandbox (--sandbox, or the sandbox command) has these runs:\n{rows}"
        return super().format_help()


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for `argv`: the setup commands named in it come with their own options."""
    parser = _Parser(
        prog="retab-mcp",
        description="MCP server that lets LLM agents cancel, read, list and wait for Retab file blueprint "
        "and edit runs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"retab-mcp {__version__}")
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="serve an embedded Retab sandbox in this process and use it (no key, no network); its runs are "
        "listed below: fbp_completes01 and edt_completes01 complete, fbp_fails01 and edt_fails01 fail, 3 s after "
        "their first read (try get_blueprint with wait_seconds)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="stderr log level (default: RETAB_MCP_LOG_LEVEL, else WARNING)",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=None,
        help="serve only the tools that change nothing: the get_ and list_ tools (RETAB_MCP_READ_ONLY)",
    )
    parser.add_argument(
        "--toolsets",
        help="kinds of run served, comma-separated, or all (default blueprints,edits; RETAB_MCP_TOOLSETS)",
    )
    parser.add_argument("--tools", help="serve only these tools, comma-separated (RETAB_MCP_TOOLS)")
    parser.add_argument(
        "--tasks",
        action="store_true",
        default=None,
        help="answer a waiting call whose run has not stopped with an MCP task, for clients that declare "
        "the tasks extension (RETAB_MCP_TASKS)",
    )
    http = parser.add_argument_group("HTTP transport (each flag has an environment twin: config.ENV_VARS)")
    http.add_argument("--transport", choices=("stdio", "http"), help="stdio (default) or http (Streamable HTTP)")
    http.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    http.add_argument("--port", type=int, help="port to listen on (default 8000)")
    http.add_argument("--path", dest="http_path", help="path of the MCP endpoint (default /mcp)")
    http.add_argument(
        "--stateful",
        action="store_true",
        default=None,
        help="keep sessions and SSE streams (default: stateless JSON, any replica answers any request)",
    )
    http.add_argument(
        "--json-response",
        action="store_true",
        default=None,
        help="answer with JSON only, never SSE, for proxies that buffer SSE (RETAB_MCP_JSON_RESPONSE)",
    )
    http.add_argument("--allowed-hosts", help="extra accepted Host values, comma-separated (name:* for any port)")
    http.add_argument("--allowed-origins", help="extra accepted Origin values, comma-separated")
    http.add_argument(
        "--auth",
        choices=("oauth", "key", "token"),
        help="how callers sign in: oauth (users sign in with their Retab key), key (each sends their own), "
        "token (the server's key, for RETAB_MCP_AUTH_TOKEN holders); RETAB_MCP_AUTH",
    )
    http.add_argument("--public-url", help="--auth oauth: the URL clients reach this server at (RETAB_MCP_PUBLIC_URL)")
    http.add_argument("--workers", help="stateless HTTP: processes serving the port, one per core to use (default 1)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    sandbox = commands.add_parser(
        "sandbox",
        help="serve the Retab sandbox alone on loopback",
        description="Serve the Retab sandbox alone on loopback; its URL is printed on stdout, its seeded runs on "
        "stderr (also in `retab-mcp --help`). Runs fbp_completes01 and edt_completes01 complete, fbp_fails01 and "
        "edt_fails01 fail, 3 s after their first read; so do <prefix>completes01 and <prefix>fails01 of every kind.",
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    # Setup helpers: each registers its own options and `run`. Its module is imported only when its
    # name is on the command line, so that --version, --help and the server do not pay for it.
    for name, (module, summary) in SETUP_COMMANDS.items():
        command = commands.add_parser(name, help=summary)
        if name in argv:
            importlib.import_module(module).add_arguments(command)
    return parser


SETUP_COMMANDS: Final = {
    "config": ("retab_mcp.clients", "print or --write a client's config entry for retab-mcp"),
    "doctor": ("retab_mcp.doctor", "check the setup and say how to fix what is wrong"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv).parse_args(argv)
    if getattr(args, "run", None):
        # config and doctor run before the settings are parsed: doctor reports a bad one with its fix.
        return int(args.run(args))
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"retab-mcp: {exc}", file=sys.stderr)
        return 2

    from retab_mcp import logs

    logs.configure(settings.log_level, secrets=[settings.api_key, settings.auth_token, *settings.secret_keys])

    from retab_mcp.listen import StartError  # a busy port: one line, status 2, as a bad setting

    if args.command == "sandbox":
        from retab_mcp.sandbox import serve

        try:
            serve(host=args.host, port=args.port)
        except StartError as exc:
            print(f"retab-mcp: {exc}", file=sys.stderr)
            return 2
        return 0

    from retab_mcp.server import RetabMCPServer

    try:
        server = RetabMCPServer(settings)
    except ConfigError as exc:  # --toolsets, --tools or --read-only name no such tool
        print(f"retab-mcp: {exc}", file=sys.stderr)
        return 2
    if settings.transport == "http" and settings.workers > 1:
        from retab_mcp import workers

        return workers.serve(server, settings)
    if settings.transport == "http":
        from retab_mcp.http import serve as serve_http

        try:
            serve_http(server, settings)
        except StartError as exc:
            print(f"retab-mcp: {exc}", file=sys.stderr)
            return 2
    else:
        from retab_mcp import stdio

        # At end of input the calls in flight finish before the process exits: their budget, and
        # a little more to write the answers.
        stdio.run(server, drain_seconds=settings.call_timeout + 2)
    return 0


# The flags of the HTTP transport, by their attribute on the parsed arguments.
_HTTP_FLAGS: Final = {
    "host": "--host",
    "port": "--port",
    "http_path": "--path",
    "stateful": "--stateful",
    "allowed_hosts": "--allowed-hosts",
    "allowed_origins": "--allowed-origins",
}


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings, with the flags given on the command line on top."""
    settings = Settings.from_env(warn=True)
    flags = {
        "log_level": parse_log_level(args.log_level) if args.log_level else None,
        "read_only": args.read_only,
        "toolsets": split_list(args.toolsets) if args.toolsets is not None else None,
        "tools": split_list(args.tools) if args.tools is not None else None,
        "sandbox": args.sandbox or None,
        "tasks": args.tasks,
        "transport": args.transport,
        "host": args.host,
        "port": args.port,
        "http_path": parse_http_path(args.http_path) if args.http_path else None,
        "stateful": args.stateful,
        "json_response": args.json_response,
        "allowed_hosts": split_list(args.allowed_hosts) if args.allowed_hosts else None,
        "allowed_origins": split_list(args.allowed_origins) if args.allowed_origins else None,
        "workers": parse_workers(args.workers) if args.workers is not None else None,
        "auth": parse_auth(args.auth),
        "public_url": parse_public_url(args.public_url),
    }
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535 (got {args.port})")
    settings = replace(settings, **{name: value for name, value in flags.items() if value is not None})
    if settings.transport == "stdio" and args.command is None:
        # Kept working (desktop configs carry them), but said: they change nothing here.
        ignored = ", ".join(flag for name, flag in _HTTP_FLAGS.items() if getattr(args, name) is not None)
        if ignored:
            print(f"retab-mcp: warning: {ignored}: for --transport http only; stdio ignores them", file=sys.stderr)
    if settings.transport == "http":
        settings.check_http_exposure()
    settings.check_tasks()
    settings.check_workers()
    settings.check_auth()
    return settings
