"""Command line: flags -> settings -> transport.

    retab-mcp [--sandbox] [--log-level LEVEL]     the MCP server over stdio
    retab-mcp sandbox [--host H] [--port N]       the Retab sandbox alone, on loopback
    retab-mcp config CLIENT [--write]             a client's config entry (clients.py)
    retab-mcp doctor                              setup checks, each with a fix (doctor.py)

Flags win over environment variables (config.ENV_VARS). A bad setting exits with status 2 and
one line on stderr naming it; nothing is ever printed on stdout by the MCP server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from retab_mcp import __version__
from retab_mcp.config import LOG_LEVELS, ConfigError, Settings, parse_log_level


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retab-mcp",
        description="MCP server exposing Retab's cancel_blueprint and cancel_edit to LLM agents.",
    )
    parser.add_argument("--version", action="version", version=f"retab-mcp {__version__}")
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="serve an embedded Retab sandbox in this process and use it (no key, no network)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="stderr log level (default: RETAB_MCP_LOG_LEVEL, else WARNING)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    sandbox = commands.add_parser("sandbox", help="serve the Retab sandbox alone on loopback")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    # Setup helpers: each registers its own options and `run` (light imports: no SDK, no httpx).
    from retab_mcp import clients, doctor

    clients.add_arguments(commands.add_parser("config", help="print or --write a client's config entry for retab-mcp"))
    doctor.add_arguments(commands.add_parser("doctor", help="check the setup and say how to fix what is wrong"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "run", None):
        # config and doctor run before the settings are parsed: doctor reports a bad one with its fix.
        return int(args.run(args))
    try:
        settings = Settings.from_env()
        if args.log_level:
            settings = replace(settings, log_level=parse_log_level(args.log_level))
    except ConfigError as exc:
        print(f"retab-mcp: {exc}", file=sys.stderr)
        return 2

    from retab_mcp import logs

    logs.configure(settings.log_level, secrets=[settings.api_key or ""])

    if args.command == "sandbox":
        from retab_mcp.sandbox import serve

        serve(host=args.host, port=args.port)
        return 0

    from retab_mcp.server import RetabMCPServer

    if args.sandbox:
        settings = replace(settings, sandbox=True)
    RetabMCPServer(settings).run("stdio")
    return 0
