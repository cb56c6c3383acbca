"""Shared fixtures for integration tests: real servers on 127.0.0.1, free ports."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def _free_port() -> int:
    # Bind to port 0 and let the OS pick; the small window before the server
    # binds it again is fine on a test machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port()


@pytest.fixture
def free_port_factory() -> Callable[[], int]:
    """Call it for as many distinct free ports as a test needs."""
    handed_out: set[int] = set()

    def next_port() -> int:
        while True:
            port = _free_port()
            if port not in handed_out:
                handed_out.add(port)
                return port

    return next_port
