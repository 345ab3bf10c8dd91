"""Starting the fault proxy, and blocking socket calls bounded by a timeout."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from pytest_spark.probes.toxiproxy import Proxy
from spark_sandbox.chaosproxy.__main__ import TOKEN_ENV
from spark_sandbox.services.ports import free_port, is_listening
from spark_sandbox.services.process import ServiceProcess

IO_TIMEOUT = 5.0
FAULT_PROXY_COMMAND = (sys.executable, "-m", "spark_sandbox.chaosproxy")


def start_fault_proxy(
    log_dir: Path, *extra: str, token: str | None = None
) -> tuple[ServiceProcess, str]:
    """The fault proxy; with ``token`` its API requires ``Authorization: Bearer <token>``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    service = ServiceProcess(
        "chaosproxy",
        [*FAULT_PROXY_COMMAND, "--host", "127.0.0.1", "--port", str(port), *extra],
        log_path=log_dir / f"chaosproxy-{port}.log",
        ready=lambda: is_listening(port),
        ready_timeout=15.0,
        env=env,
    )
    service.start()
    return service, f"http://127.0.0.1:{port}"


def connect(proxy: Proxy) -> socket.socket:
    return socket.create_connection((proxy.listen_host, proxy.listen_port), timeout=IO_TIMEOUT)


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    received = 0
    while received < size:
        chunk = sock.recv(min(65536, size - received))
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


def receive_until_closed(sock: socket.socket, limit: int = 10_000_000) -> bytes:
    chunks: list[bytes] = []
    received = 0
    while received < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


def round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return receive_exactly(sock, len(payload))
