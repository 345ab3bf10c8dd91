"""The outbox publisher: moves committed outbox rows to the consumer, at least once.

The API writes an order and its ``outbox_events`` row in one transaction and NOTIFYs channel
``outbox_events`` in it. This publisher LISTENs through PgBouncer's *session* pool (a
transaction pool hands each statement to whichever server connection is free, so a LISTEN
there would be lost) and also polls every 0.5 s, so a lost notification delays an event by
half a second at most instead of forever.

Each cycle claims up to 100 unpublished rows with ``FOR UPDATE SKIP LOCKED`` in a transaction
over the *transaction* pool, POSTs them one by one to ``$SPARK_CONSUMER_URL/events`` and sets
``published_at`` only after a 2xx. Row locks are held until commit, so two publishers never
claim the same row; a reply lost after the consumer applied an event means the event is
sent again later, which the consumer's dedupe absorbs. When the consumer is unreachable the
row's ``attempts`` goes up and the publisher backs off with jitter, never crashing.

Run: ``python -m spark_sandbox.app.outbox --metrics-port P`` with ``SPARK_APP_DSN``,
``SPARK_LISTEN_DSN`` and ``SPARK_CONSUMER_URL``. ``/metrics`` and ``/health`` are served on
the metrics port. SIGTERM finishes the batch in flight (bounded by ``DRAIN_SECONDS``) and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Any

import httpx
import psycopg

from spark_sandbox.app.outbox_metrics import Health, OutboxMetrics, metrics_server
from spark_sandbox.defects import switches

CHANNEL = "outbox_events"
BATCH_SIZE = 100
POLL_SECONDS = 0.5
# A batch holds its row locks (and a server connection) while it posts; past this budget it
# commits what it has, so a slow consumer never leaves a session idle in transaction for long.
BATCH_BUDGET_SECONDS = 5.0
DRAIN_SECONDS = 3.0
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 4.0
DB_CONNECT_TIMEOUT_SECONDS = 5
HTTP_TIMEOUT = httpx.Timeout(5.0, connect=2.0)

CLAIM_BATCH = """
SELECT id, event_id, aggregate_id, event_type, payload::text, created_at
  FROM outbox_events
 WHERE published_at IS NULL
 ORDER BY id
   FOR UPDATE SKIP LOCKED
 LIMIT %s
"""

# The lag is measured on the database clock at both ends, so host clock skew cannot bend it.
MARK_PUBLISHED = """
UPDATE outbox_events SET published_at = clock_timestamp()
 WHERE id = %s
RETURNING extract(epoch FROM published_at - created_at)::float8
"""

COUNT_ATTEMPT = "UPDATE outbox_events SET attempts = attempts + 1 WHERE id = %s"

PENDING = """
SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8
  FROM outbox_events WHERE published_at IS NULL
"""


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    event_id: str
    aggregate_id: int
    event_type: str
    payload_json: str
    created_at: datetime


def delivery_body(event: OutboxEvent) -> bytes:
    """The JSON the consumer receives; the payload is spliced in as stored, byte for byte.

    Decoding ``jsonb`` into Python and encoding it again would turn any JSON number into a
    float on the way; money must reach the consumer exactly as the API wrote it.
    """
    envelope = json.dumps(
        {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "aggregate_id": event.aggregate_id,
            "created_at": event.created_at.isoformat(),
        }
    )
    return (envelope[:-1] + ', "payload": ' + event.payload_json + "}").encode()


class Backoff:
    """Exponential backoff with jitter, capped so a recovered consumer is noticed quickly."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        # "Equal jitter": never less than half the step, so retries still spread out.
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True)
class BatchResult:
    claimed: int
    published: int
    consumer_down: bool


class Listener:
    """The LISTEN connection on the session pool; reopened lazily after it breaks."""

    RECONNECT_SECONDS = 1.0

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.Connection[Any] | None = None
        self.next_attempt = 0.0
        # Log the first failure of an outage only, not every reconnect attempt.
        self.outage_logged = False

    def ensure(self) -> psycopg.Connection[Any] | None:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        now = time.monotonic()
        if now < self.next_attempt:
            return None
        self.next_attempt = now + self.RECONNECT_SECONDS
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=DB_CONNECT_TIMEOUT_SECONDS,
            )
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            if not self.outage_logged:
                print(f"outbox publisher: LISTEN connection unavailable: {exc}", flush=True)
                self.outage_logged = True
            return None
        if self.outage_logged:
            print("outbox publisher: LISTEN connection restored", flush=True)
            self.outage_logged = False
        self.conn = conn
        return conn

    def wait(self, timeout: float, stopping: threading.Event) -> None:
        """Return on a notification, or after ``timeout`` (the polling safety net)."""
        conn = self.ensure()
        if conn is None:
            stopping.wait(timeout)
            return
        try:
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                pass
            # One cycle drains everything, so notifications already queued are redundant.
            for _ in conn.notifies(timeout=0):
                pass
        except psycopg.Error as exc:
            print(f"outbox publisher: LISTEN connection lost: {exc}", flush=True)
            self.close()
            stopping.wait(timeout)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


class Publisher:
    def __init__(
        self,
        app_dsn: str,
        listen_dsn: str,
        consumer_url: str,
        metrics: OutboxMetrics,
        health: Health,
        defects: frozenset[str] = frozenset(),
    ) -> None:
        self.app_dsn = app_dsn
        self.defects = defects  # the sandbox's seeded switches; none in production
        self.events_url = consumer_url.rstrip("/") + "/events"
        self.metrics = metrics
        self.health = health
        self.listener = Listener(listen_dsn)
        self.conn: psycopg.Connection[Any] | None = None
        # trust_env=False: an HTTP(S)_PROXY in the environment must not divert loopback calls.
        self.http = httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False)
        self.stopping = threading.Event()
        self.stop_deadline = float("inf")

    def request_stop(self) -> None:
        self.stop_deadline = time.monotonic() + DRAIN_SECONDS
        self.stopping.set()

    def app_connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            # prepare_threshold=None: the transaction pool loses prepared statements.
            self.conn = psycopg.connect(
                self.app_dsn,
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=DB_CONNECT_TIMEOUT_SECONDS,
            )
        return self.conn

    def deliver(self, event: OutboxEvent) -> str:
        """``"ok"``, ``"rejected"`` (4xx: this event) or ``"unavailable"`` (the consumer)."""
        try:
            response = self.http.post(
                self.events_url,
                content=delivery_body(event),
                headers={"content-type": "application/json", "x-event-id": event.event_id},
            )
        except httpx.HTTPError:
            return "unavailable"
        if response.is_success:
            return "ok"
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            return "unavailable"
        return "rejected"

    def publish_batch(self) -> BatchResult:
        conn = self.app_connection()
        lags: list[float] = []
        failures = 0
        consumer_down = False
        budget_ends = time.monotonic() + BATCH_BUDGET_SECONDS
        with conn.transaction():
            rows = conn.execute(CLAIM_BATCH, (BATCH_SIZE,)).fetchall()
            for row in rows:
                now = time.monotonic()
                if now >= budget_ends or now >= self.stop_deadline:
                    break
                event = OutboxEvent(row[0], str(row[1]), row[2], row[3], row[4], row[5])
                outcome = self.deliver(event)
                # Defect: a failed delivery is marked published all the same, so the event
                # is never sent again and the consumer never applies it (G09 events_missing).
                # Defect (C4): while the consumer is unreachable, events are marked published
                # and dropped instead of waiting for it to come back.
                dropped = (
                    outcome == "unavailable" and "publisher_drops_events_in_outage" in self.defects
                )
                if outcome == "ok" or "publisher_acks_failed_delivery" in self.defects or dropped:
                    lag = conn.execute(MARK_PUBLISHED, (event.id,)).fetchone()
                    lags.append(float(lag[0]) if lag else 0.0)
                    continue
                failures += 1
                conn.execute(COUNT_ATTEMPT, (event.id,))
                if outcome == "unavailable":
                    # The rest of the batch would fail the same way; keep order and back off.
                    consumer_down = True
                    break
            pending = conn.execute(PENDING).fetchone()
        # Counted only once committed: a rolled-back batch published nothing.
        self.metrics.published.inc(len(lags))
        for lag_seconds in lags:
            self.metrics.lag.observe(lag_seconds)
        if failures:
            self.metrics.failures.inc(failures)
        if pending is not None:
            self.metrics.pending.set(pending[0])
            self.metrics.oldest_pending_age.set(pending[1])
        return BatchResult(len(rows), len(lags), consumer_down)

    def run(self) -> None:
        backoff = Backoff(BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS)
        while not self.stopping.is_set():
            try:
                result = self.publish_batch()
            except psycopg.Error as exc:
                self.close_app_connection()
                self.note(db_ok=False, consumer_ok=self.health.consumer_ok, error=exc)
                self.stopping.wait(backoff.next_delay())
                continue
            self.note(db_ok=True, consumer_ok=not result.consumer_down)
            if result.consumer_down:
                self.stopping.wait(backoff.next_delay())
                continue
            backoff.reset()
            if result.claimed == BATCH_SIZE:
                continue  # a full batch means more is probably waiting
            self.listener.wait(POLL_SECONDS, self.stopping)

    def note(self, *, db_ok: bool, consumer_ok: bool, error: Exception | None = None) -> None:
        with self.health.lock:
            if consumer_ok != self.health.consumer_ok:
                state = "reachable again" if consumer_ok else "unavailable, backing off"
                print(f"outbox publisher: consumer {state}", flush=True)
            if error is not None and self.health.last_error != self.describe(error):
                print(f"outbox publisher: database unavailable: {error}", flush=True)
            self.health.db_ok = db_ok
            self.health.consumer_ok = consumer_ok
            if error is not None:
                self.health.last_error = self.describe(error)
            elif db_ok and consumer_ok:
                self.health.last_error = ""

    @staticmethod
    def describe(error: Exception) -> str:
        return f"{type(error).__name__}: {error}".strip()

    def close_app_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        self.close_app_connection()
        self.listener.close()
        self.http.close()


@contextlib.contextmanager
def stop_on_signals(publisher: Publisher) -> Iterator[None]:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        publisher.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def required_env(parser: argparse.ArgumentParser, name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        parser.error(f"{name} is not set ({what})")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m spark_sandbox.app.outbox", description="Spark outbox publisher"
    )
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args(argv)
    app_dsn = required_env(parser, "SPARK_APP_DSN", "conninfo of the transaction pool")
    listen_dsn = required_env(parser, "SPARK_LISTEN_DSN", "conninfo of the session pool")
    consumer_url = required_env(parser, "SPARK_CONSUMER_URL", "base URL of the consumer")
    if httpx.URL(consumer_url).scheme not in ("http", "https"):
        parser.error(f"SPARK_CONSUMER_URL must be an http(s) URL, got {consumer_url!r}")

    metrics = OutboxMetrics()
    health = Health()
    defects = switches(os.environ.get("SPARK_DEFECTS", ""), "outbox")
    publisher = Publisher(app_dsn, listen_dsn, consumer_url, metrics, health, defects)
    server = metrics_server(args.metrics_port, metrics, health)
    print(f"outbox publisher: metrics on 127.0.0.1:{args.metrics_port}", flush=True)
    try:
        with stop_on_signals(publisher):
            publisher.run()
    finally:
        server.shutdown()
        server.server_close()
        publisher.close()
    print("outbox publisher stopped", flush=True)


if __name__ == "__main__":
    main()
