"""No host name but localhost resolves in a test, in the test process and in every Python process
a test starts: tests/conftest.py puts this folder first on PYTHONPATH, so Python loads this module
at the start-up of those processes. A name fails to resolve before any packet leaves. (IP literals
pass; the fetcher's address guard decides about them.)"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def local_only(getaddrinfo: Callable[..., Any]) -> Callable[..., Any]:
    """``getaddrinfo`` that refuses every host name but localhost's."""

    def resolve(host: object, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.lower() not in LOCAL_NAMES and not _is_ip_literal(name):
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no names: {name}")
        return getaddrinfo(host, *args, **kwargs)

    return resolve


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]").split("%")[0])
    except ValueError:
        return False
    return True


if __name__ == "sitecustomize":  # a process a test started, not an import by the tests
    socket.getaddrinfo = local_only(socket.getaddrinfo)
