"""A listening address taken before serving: what goes wrong is one line, not uvicorn's traceback.

The HTTP server (one process, or the parent of --workers) and `retab-mcp sandbox` bind their
address here first and hand the socket to uvicorn, so that a busy port or a host that is no
address ends the command with status 2 and a line naming the setting to change (`StartError`),
as a bad setting does. SO_REUSEADDR lets a restart through the TIME_WAIT connections a stopped
server leaves behind; it never lets two servers listen on one port.
"""

from __future__ import annotations

import errno
import socket


class StartError(Exception):
    """The address cannot be listened on: one line for stderr."""


def address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """The family and socket address of `host` and `port`, or StartError."""
    try:
        family, _, _, _, found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        raise StartError(f"RETAB_MCP_HOST (--host) {host!r} is not an address to listen on: {reason}") from None
    return family, (str(found[0]), int(found[1]))


def bound(family: socket.AddressFamily, where: tuple[str, int], *, reuseport: bool = False) -> socket.socket:
    """A TCP socket bound to `where` (not listening yet); OSError as the system raised it."""
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say so.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(where)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve(host: str, port: int, *, port_setting: str = "RETAB_MCP_PORT (--port)") -> socket.socket:
    """A socket bound to `host` and `port`; StartError where something already listens there."""
    family, where = address(host, port)
    try:
        return bound(family, where)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartError(
                f"port {where[1]} on {host} is already in use; stop what serves it, or choose another {port_setting}"
            ) from None
        raise StartError(f"cannot listen on {host} port {where[1]}: {exc.strerror or exc}") from None
