"""Who may reach our HTTP/gRPC endpoints: loopback tests and the ``Host`` header check (DNS rebinding).

Standard library only. A page on another site can make a browser send requests to ``http://evil.example``
after pointing that name at this machine (DNS rebinding); the request then carries ``Host: evil.example``.
:func:`host_allowed` accepts only names that cannot be rebound that way: the bound address, ``localhost``,
loopback addresses, this machine's name, the names an operator allows explicitly, and, when bound to every
interface, IP literals (a rebinding page cannot make a browser send an IP address it does not own).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

WILDCARDS = ("0.0.0.0", "::", "")


def is_loopback(address: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (a bind that no other machine can reach)."""
    name = address.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host part of a ``Host`` header (port and IPv6 brackets removed), lower case, no trailing dot."""
    h = header.strip().lower()
    if h.startswith("["):
        name = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        name = h.split(":", 1)[0]
    else:
        name = h
    return name.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(header: str | None, bound: str, extra: Iterable[str] = ()) -> bool:
    """Whether a request with this ``Host`` header may be served by a server bound to ``bound``.

    No header (HTTP/1.0 tools) is allowed: browsers always send one. ``extra`` are names given by the
    operator (``--view-allow-host``), e.g. the name of a reverse proxy in front of the view.
    """
    if header is None:
        return True
    name = host_name(header)
    if not name or any(c in name for c in "/\\@ \t"):
        return False
    allowed = {"localhost", host_name(bound), socket.gethostname().lower()}
    allowed |= {host_name(e) for e in extra}
    if name in allowed or is_loopback(name):
        return True
    return bound.strip("[]") in WILDCARDS and _is_ip(name)
