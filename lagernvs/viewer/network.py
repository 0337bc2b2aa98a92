"""Network safety of the viewer: which address it listens on and which pages may talk to it."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

__all__ = ["LOOPBACK_HOSTS", "check_port", "host_warning", "same_origin"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_warning(host: str) -> str | None:
    """The warning printed when the viewer listens beyond this machine (None on loopback)."""
    if host in LOOPBACK_HOSTS:
        return None
    return (
        f"warning: listening on {host}: the scene is visible to anyone on the network who can "
        "reach this machine"
    )


def check_port(host: str, port: int) -> None:
    """Fail with one line when ``host:port`` cannot be listened on (viser would silently move
    to the next free port, and the user would open the wrong address)."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        raise ValueError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); pass another --port "
            "(0 picks a free one) or --host"
        ) from None


def same_origin(origin: str | None, host: str | None, loopback: bool) -> bool:
    """Whether a websocket handshake with these ``Origin`` and ``Host`` headers comes from this
    server's own page.

    No Origin: not a browser, so not a page of another site. Otherwise the Origin must name the
    Host the browser connected to, and on a loopback server that host must be a loopback name
    (a site whose name was re-pointed at 127.0.0.1, "DNS rebinding", has its own Host).
    """
    if origin is None:
        return True
    if host is None or urlsplit(origin).netloc.lower() != host.lower():
        return False
    return not loopback or (urlsplit(f"//{host}").hostname or "") in LOOPBACK_HOSTS
