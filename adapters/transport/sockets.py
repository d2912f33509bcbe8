"""The socket calls both TCP transports share: binding a listener, options."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from raftcore.adapters.transport.frames import format_address


def bind_listen_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """One listening TCP socket for ``host:port`` (the first address it resolves to).

    A single socket keeps ``listen_address`` exact with port 0. Resolution of
    a numeric host never blocks; a name is resolved once, at start.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        # Name the address: "Address already in use" alone does not say which.
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def set_socket_options(sock: Any) -> None:
    """TCP_NODELAY and keep-alive on a connected socket (errors ignored: best effort)."""
    for level, option in (
        (socket.IPPROTO_TCP, socket.TCP_NODELAY),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    ):
        with contextlib.suppress(OSError, AttributeError):  # platform dependent
            sock.setsockopt(level, option, 1)


def describe_peername(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return format_address(str(peername[0]), int(peername[1]))
    return str(peername)
