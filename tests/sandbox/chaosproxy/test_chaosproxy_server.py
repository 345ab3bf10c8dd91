"""The server process: start-up config, loopback-only binding, clean shutdown on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from pathlib import Path

import pytest
from chaosproxy_support import (
    FAULT_PROXY_COMMAND,
    connect,
    receive_until_closed,
    round_trip,
    start_fault_proxy,
)

from pytest_spark.probes.toxiproxy import ToxiproxyClient, ToxiproxyError
from spark_sandbox.services.ports import free_port, is_listening


def test_config_file_creates_proxies_before_the_api_answers(
    tmp_path: Path, echo_upstream: str
) -> None:
    feed_port = free_port()
    config = tmp_path / "toxiproxy.json"
    config.write_text(
        json.dumps(
            [
                {
                    "name": "spark_feed",
                    "listen": f"127.0.0.1:{feed_port}",
                    "upstream": echo_upstream,
                },
                {"name": "spark_db", "upstream": echo_upstream, "enabled": False},
            ]
        )
    )
    service, url = start_fault_proxy(tmp_path, "--config", str(config))
    try:
        with ToxiproxyClient(url) as client:
            proxies = client.proxies()
        assert set(proxies) == {"spark_feed", "spark_db"}
        assert proxies["spark_db"].enabled is False
        with connect(proxies["spark_feed"]) as sock:
            assert round_trip(sock, b"tick") == b"tick"
    finally:
        service.stop()


def test_sigterm_closes_listeners_and_connections(tmp_path: Path, echo_upstream: str) -> None:
    service, url = start_fault_proxy(tmp_path)
    try:
        with ToxiproxyClient(url) as client:
            proxy = client.create_proxy("spark_api", upstream=echo_upstream)
        sock = connect(proxy)
        with sock:
            assert round_trip(sock, b"open") == b"open"
            assert service.proc is not None
            process = service.proc
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            with contextlib.suppress(ConnectionResetError):  # closed is closed, FIN or RST
                assert receive_until_closed(sock) == b""
        assert not is_listening(proxy.listen_port)
        assert not is_listening(int(url.rsplit(":", 1)[1]))
    finally:
        service.stop()


def test_the_api_refuses_a_non_loopback_host() -> None:
    result = subprocess.run(
        [*FAULT_PROXY_COMMAND, "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--allow-non-loopback" in result.stderr


def test_a_fault_left_behind_is_reported(tmp_path: Path, echo_upstream: str) -> None:
    service, url = start_fault_proxy(tmp_path)
    try:
        with ToxiproxyClient(url, timeout=1.0) as client:
            client.create_proxy("spark_db", upstream=echo_upstream)
            with (
                pytest.raises(ToxiproxyError, match="still active") as caught,
                client.toxic("spark_db", type="latency", attributes={"latency": 100}),
            ):
                service.stop()  # the fault API goes away while the fault is in place
        assert caught.value.status is None
    finally:
        service.stop()
