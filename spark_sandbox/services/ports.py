"""Free loopback ports for the sandbox's listeners, safe when several sandboxes start at once.

Asking the OS for port 0 returns a port from the ephemeral range, the same range the kernel
draws from for every outgoing connection (the API to PgBouncer, Prometheus scraping,
browsers, test clients). Between the moment the port is handed out and the moment the
service binds it, any of those connections can take it: a start that fails with "address
already in use" once in a few hundred sandboxes. So listener ports come from *below* the
ephemeral range, where the kernel never picks a source port, and each one is claimed in a
small registry for long enough to be bound, so that two sandboxes starting together never
choose the same one. A bind test still confirms that nothing else listens there.

The registry is one per user and machine, at a fixed place in ``/tmp``, not in the sandbox
home: a sandbox whose home was moved with ``TMPDIR`` (the project's own tests do that) still
competes for the same ports as every other sandbox of the user, so it must see their claims.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default
LISTENER_SPAN = 12000
# A claim keeps other sandboxes off a port until its service has surely bound it.
CLAIM_SECONDS = 120.0
ATTEMPTS = 500
# Not tempfile.gettempdir(): that follows TMPDIR, and the claims must be shared regardless.
REGISTRY_ROOT = Path("/tmp")


def listener_range() -> tuple[int, int]:
    """[low, high) of ports that the kernel does not use as ephemeral source ports."""
    try:
        low, high = (int(v) for v in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        low, high = DEFAULT_EPHEMERAL
    if low - 1024 >= 2048:
        return max(1024, low - LISTENER_SPAN), low
    if 65535 - high >= 2048:
        return high + 1, 65536
    return 1024, 65536  # an unusual kernel setting: the bind test and the claims remain


def free_port(host: str = "127.0.0.1") -> int:
    """A port outside the ephemeral range, free on ``host`` and claimed for this sandbox."""
    low, high = listener_range()
    with _registry() as claims:
        for _ in range(ATTEMPTS):
            port = random.randrange(low, high)
            claim = claims / str(port)
            with contextlib.suppress(FileNotFoundError):
                if time.time() - claim.stat().st_mtime < CLAIM_SECONDS:
                    continue
            if _bindable(host, port):
                claim.write_text(f"{os.getpid()}\n")
                return port
    raise OSError(f"no free port in {low}-{high - 1} on {host} after {ATTEMPTS} attempts")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # the NTP server is UDP
        try:
            udp.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _registry() -> Iterator[Path]:
    """This user's port claims, held under an exclusive lock while one port is chosen."""
    claims = registry_dir()
    claims.mkdir(mode=0o700, exist_ok=True)
    if claims.is_symlink() or claims.stat().st_uid != os.geteuid():
        raise OSError(f"{claims} is not this user's port registry (owner or symlink); remove it")
    fd = os.open(claims / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield claims
    finally:
        os.close(fd)


def registry_dir() -> Path:
    """``/tmp/spark-sandbox-ports-<uid>``: the same for every sandbox home of this user."""
    return REGISTRY_ROOT / f"spark-sandbox-ports-{os.geteuid()}"


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
