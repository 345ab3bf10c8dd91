"""The fault proxy as a real subprocess, in front of a real TCP echo upstream."""

from __future__ import annotations

import socketserver
import threading
import uuid
from collections.abc import Iterator

import pytest
from chaosproxy_support import start_fault_proxy

from pytest_spark.probes.toxiproxy import Proxy, ToxiproxyClient, ToxiproxyError


class EchoHandler(socketserver.BaseRequestHandler):
    """Echo until the client half-closes, then close: enough to observe every toxic."""

    def handle(self) -> None:
        self.request.settimeout(30)
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[str]:
    server = EchoServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def fault_proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service, url = start_fault_proxy(tmp_path_factory.mktemp("chaosproxy"))
    try:
        yield url
    finally:
        service.stop()


@pytest.fixture
def toxiproxy(fault_proxy_url: str) -> Iterator[ToxiproxyClient]:
    with ToxiproxyClient(fault_proxy_url) as client:
        yield client


@pytest.fixture
def echo_proxy(toxiproxy: ToxiproxyClient, echo_upstream: str) -> Iterator[Proxy]:
    """A fresh proxy in front of the echo upstream, deleted (with its toxics) afterwards."""
    proxy = toxiproxy.create_proxy(f"echo_{uuid.uuid4().hex[:8]}", upstream=echo_upstream)
    try:
        yield proxy
    finally:
        try:
            toxiproxy.delete_proxy(proxy.name)
        except ToxiproxyError as exc:
            if exc.status != 404:
                raise
