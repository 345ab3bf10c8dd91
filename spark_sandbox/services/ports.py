"""Free loopback ports from the OS, safe when several sandboxes start at once."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just reported free on ``host``.

    The socket is closed before the service binds, so another process could take the port in
    between; the executors treat "address in use" as an early exit with the log attached, and
    the OS hands out ports round-robin, which makes that race rare in practice.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
