"""The outbox publisher's own HTTP side: its Prometheus metrics and ``/health``, served on the
metrics port from a thread beside the publishing loop (:mod:`spark_sandbox.app.outbox`)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class OutboxMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter(
            "spark_outbox_published",
            "Outbox events delivered with a 2xx and marked published",
            registry=self.registry,
        )
        self.failures = Counter(
            "spark_outbox_publish_failures",
            "Delivery attempts that got no 2xx (consumer down, timeout, error status)",
            registry=self.registry,
        )
        self.lag = Histogram(
            "spark_outbox_publish_lag_seconds",
            "From the outbox row's created_at to its published_at (database clock)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.pending = Gauge(
            "spark_outbox_pending_events",
            "Outbox rows not yet published",
            registry=self.registry,
        )
        self.oldest_pending_age = Gauge(
            "spark_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none); a stuck event shows here",
            registry=self.registry,
        )


@dataclass
class Health:
    """What /health reports; written by the publishing loop, read by the HTTP thread."""

    db_ok: bool = False
    consumer_ok: bool = True
    last_error: str = "no publishing cycle yet"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "status": "ok" if self.db_ok else "degraded",
                "database": self.db_ok,
                "consumer": self.consumer_ok,
                "last_error": self.last_error,
            }


def metrics_server(port: int, metrics: OutboxMetrics, health: Health) -> ThreadingHTTPServer:
    """``/metrics`` for Prometheus and ``/health`` (503 while the database is unreachable)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self.reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/health":
                state = health.snapshot()
                code = 200 if state["database"] else 503
                self.reply(code, json.dumps(state).encode(), "application/json")
            else:
                self.reply(404, b'{"error": "not found"}', "application/json")

        def reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per scrape would drown the service log

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="outbox-metrics", daemon=True).start()
    return server
