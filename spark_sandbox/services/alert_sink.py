"""A webhook sink that records the alerts Alertmanager delivers, with their receive time.

Call::

    proc, sink = start_alert_sink(run_dir)
    alertmanager webhook url: sink.webhook_url              # http://127.0.0.1:P/alerts
    sink.received()                                          # [{"labels": ..., "receivedAt": ...}]

Run alone: ``python -m spark_sandbox.services.alert_sink --host 127.0.0.1 --port P``.
``POST /alerts`` takes an Alertmanager webhook payload and stores each of its alerts,
``GET /alerts`` lists them as JSON, ``DELETE /alerts`` forgets them, ``GET /health`` answers ok.
``POST /messages`` takes a Slack-compatible incoming-webhook message (``{"text": ...}``, what a
rollback notifies), ``GET /messages`` lists them.

The standard library's ``http.server`` is enough: the sink sees a handful of posts per run,
needs no ASGI stack, and starts in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from spark_sandbox.services.ports import free_port
from spark_sandbox.services.process import ServiceProcess

HOST = "127.0.0.1"
MAX_BODY_BYTES = 1 << 20
HTTP_TIMEOUT = 2.0


@dataclass(frozen=True)
class AlertSink:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The URL to give Alertmanager's ``webhook_configs``."""
        return f"{self.url}/alerts"

    def received(self) -> list[dict[str, Any]]:
        """Every alert delivered so far, oldest first."""
        with urllib.request.urlopen(self.webhook_url, timeout=HTTP_TIMEOUT) as response:
            alerts: list[dict[str, Any]] = json.load(response)
        return alerts

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=HTTP_TIMEOUT) as response:
            return bool(json.load(response).get("service") == "alert_sink")


class AlertLog:
    """Delivered alerts in arrival order; the HTTP server's threads share one instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: list[dict[str, Any]] = []
        # Chat messages posted to /messages (a rollback's notification), oldest first.
        self._messages: list[dict[str, Any]] = []

    def record(self, payload: dict[str, Any]) -> int:
        now = time.time()
        stamped = [
            {
                **alert,
                "receiver": payload.get("receiver"),
                "receivedAt": datetime.fromtimestamp(now, UTC).isoformat(),
                "receivedAtUnix": now,
            }
            for alert in payload.get("alerts", [])
            if isinstance(alert, dict)
        ]
        with self._lock:
            self._alerts.extend(stamped)
        return len(stamped)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._alerts)

    def record_message(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self._messages.append({**payload, "receivedAtUnix": time.time()})

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._alerts.clear()


class AlertSinkHandler(BaseHTTPRequestHandler):
    server: AlertSinkServer

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_json(200, {"status": "ok", "service": "alert_sink"})
        elif self.path == "/alerts":
            self.send_json(200, self.server.alert_log.all())
        elif self.path == "/messages":
            self.send_json(200, self.server.alert_log.messages())
        else:
            self.send_json(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        if self.path not in ("/alerts", "/messages"):
            self.send_json(404, {"error": f"no such path {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.send_json(413, {"error": "payload too large"})
            return
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            self.send_json(400, {"error": f"not JSON: {exc}"})
            return
        if self.path == "/messages":
            # A Slack-compatible incoming webhook: a JSON object with a non-empty "text".
            if not isinstance(payload, dict) or not str(payload.get("text") or "").strip():
                self.send_json(400, {"error": 'expected {"text": "..."}'})
                return
            self.server.alert_log.record_message(payload)
            self.send_json(200, {"ok": True})
            return
        if not isinstance(payload, dict):
            self.send_json(400, {"error": "expected an Alertmanager webhook object"})
            return
        self.send_json(200, {"recorded": self.server.alert_log.record(payload)})

    def do_DELETE(self) -> None:
        if self.path != "/alerts":
            self.send_json(404, {"error": f"no such path {self.path}"})
            return
        self.server.alert_log.clear()
        self.send_json(200, {"cleared": True})

    def send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class AlertSinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, AlertSinkHandler)
        self.alert_log = AlertLog()


def start_alert_sink(
    run_dir: Path, *, port: int | None = None, ready_timeout: float = 10.0
) -> tuple[ServiceProcess, AlertSink]:
    """Run the sink as its own process, logging to ``run_dir/logs/alert_sink.log``."""
    sink = AlertSink(HOST, port or free_port(HOST))
    proc = ServiceProcess(
        "alert_sink",
        [
            sys.executable,
            "-m",
            "spark_sandbox.services.alert_sink",
            "--host",
            sink.host,
            "--port",
            str(sink.port),
        ],
        log_path=run_dir / "logs" / "alert_sink.log",
        ready=sink.healthy,
        ready_timeout=ready_timeout,
    )
    proc.start()
    return proc, sink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_sandbox.services.alert_sink")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = AlertSinkServer((args.host, args.port))
    print(f"alert sink listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
