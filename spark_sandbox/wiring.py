"""Wiring shared by the service specs: ports, commands, readiness probes, configs, reloads."""

from __future__ import annotations

import http.client
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from spark_sandbox.endpoints import HOST
from spark_sandbox.services.ports import free_port
from spark_sandbox.services.process import ServiceStartError, tail

# Prometheus and Alertmanager confirm a SIGHUP reload in their metrics within a second or two.
RELOAD_SECONDS = 10.0
# Listeners whose port is chosen before anything starts, so that steps can run in parallel.
PORT_NAMES = (
    "api", "api_stable", "third_party", "feed", "consumer", "outbox", "chaosproxy",
    "proxy_api", "proxy_db", "proxy_feed", "proxy_consumer",
    "alert_sink", "alertmanager", "pgbouncer_exporter", "prometheus", "closed_target",
)  # fmt: skip


def allocate_ports() -> dict[str, int]:
    """One OS-chosen port per listener, reserved up front so that steps can run in parallel."""
    ports: dict[str, int] = {}
    while len(ports) < len(PORT_NAMES):
        # free_port() closes its socket, so the OS may hand the same port out twice in a row.
        port = free_port(HOST)
        if port not in ports.values():
            ports[PORT_NAMES[len(ports)]] = port
    return ports


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def uvicorn(app: str, port: int) -> list[str]:
    return python_module(
        "uvicorn", app, "--host", HOST, "--port", str(port), "--no-access-log",
        "--log-level", "warning",
    )  # fmt: skip


def http_ready(port: int, path: str = "/health") -> Callable[[], bool]:
    """A readiness probe: GET ``path`` answers 2xx."""

    def ready() -> bool:
        return http_status(f"http://{HOST}:{port}{path}") // 100 == 2

    return ready


def http_status(url: str, timeout: float = 1.0) -> int:
    """The status of a GET to a loopback URL, 0 when nothing answers."""
    rest = url.removeprefix("http://")
    address, _, path = rest.partition("/")
    host, _, port = address.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/" + path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def routed_to_sink(
    config_text: str, webhook_url: str, dead: Mapping[str, str] | None = None
) -> str:
    """An Alertmanager config with every receiver's webhook URL replaced by ``webhook_url``,
    or, for a receiver named in ``dead`` (receiver -> URL), by that URL, where nobody answers."""
    import yaml

    config = yaml.safe_load(config_text) or {}
    receivers = config.get("receivers", [])
    dead = dict(dead or {})
    unknown = sorted(set(dead) - {r.get("name") for r in receivers})
    if unknown:
        # A defect that changes nothing would prove nothing.
        raise ValueError(f"no receiver {', '.join(unknown)} in the Alertmanager config")
    for receiver in receivers:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = dead.get(receiver.get("name"), webhook_url)
    return str(yaml.safe_dump(config, sort_keys=False))


def reload_config(service: str, pid: int, url: str, log_path: Path) -> None:
    """SIGHUP ``pid`` (Prometheus or Alertmanager) and wait until its metrics confirm the
    reload; a refused config fails with the log. A signal, not ``POST /-/reload``: only the
    owner of the process can send it, while any local process could reach the endpoint."""
    before = reload_metrics(service, url)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_SECONDS
    while time.monotonic() < deadline:
        succeeded, at = reload_metrics(service, url)
        if succeeded == 1 and at > before[1]:
            return
        if succeeded == 0 and before[0] == 1:
            break
        time.sleep(0.05)
    raise ServiceStartError(
        service,
        [],
        f"config reload (SIGHUP) not confirmed within {RELOAD_SECONDS:.0f} s: the new config "
        "was refused or never read",
        tail(log_path),
    )


def reload_metrics(service: str, url: str) -> tuple[float, float]:
    """``(<service>_config_last_reload_successful, ..._success_timestamp_seconds)``, or
    ``(-1, -1)`` while the metrics cannot be read."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        f"{service}_config_last_reload_successful": 0,
        f"{service}_config_last_reload_success_timestamp_seconds": 1,
    }
    values = [-1.0, -1.0]
    try:
        text = httpx.get(f"{url}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return -1.0, -1.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                values[wanted[sample.name]] = float(sample.value)
    return values[0], values[1]
