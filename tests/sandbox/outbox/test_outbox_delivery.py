"""Publisher and consumer as real children over PgBouncer: every order event lands exactly once."""

from __future__ import annotations

import json
import random
import sys
import uuid
from datetime import UTC, datetime

import httpx
from outbox_harness import (
    REPO_ROOT,
    OutboxDatabase,
    Services,
    base_env,
    metric_value,
    place_orders,
    scrape,
    wait_until,
)

from spark_sandbox.app.outbox import Backoff, OutboxEvent, delivery_body
from spark_sandbox.services.ports import free_port, is_listening
from spark_sandbox.services.process import ServiceProcess

PENDING = "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
LISTENING = "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN outbox_events'"


def assert_effect_exactly_once(db: OutboxDatabase, event_ids: list[str]) -> None:
    """Every event consumed, one ledger row per order, none applied twice."""
    consumed = dict(db.query("SELECT event_id::text, deliveries FROM consumed_events"))
    assert set(consumed) == set(event_ids), "events missing or unexpected at the consumer"
    ledger = db.query("SELECT event_id::text, applied_count FROM order_ledger")
    assert sorted(e for e, _ in ledger) == sorted(event_ids)
    assert {count for _, count in ledger} == {1}, f"double effect: {ledger}"
    orders_without_entry = db.scalar(
        "SELECT count(*) FROM orders o LEFT JOIN order_ledger l ON l.order_id = o.id"
        " WHERE l.order_id IS NULL"
    )
    assert orders_without_entry == 0


def test_each_event_is_delivered_exactly_once(services: Services) -> None:
    db = services.database()
    _, consumer_url = services.consumer()
    _, metrics_url = services.publisher(consumer_url)
    # PgBouncer pins the session pool's server connection, so PostgreSQL shows one session
    # whose last statement was the LISTEN; through the transaction pool it would be reassigned.
    wait_until(lambda: db.scalar(LISTENING) == 1, "the publisher's LISTEN outbox_events session")

    event_ids = place_orders(db, 25)

    wait_until(lambda: db.scalar(PENDING) == 0, "all 25 outbox events published")
    assert_effect_exactly_once(db, event_ids)
    assert db.query("SELECT DISTINCT deliveries FROM consumed_events") == [(1,)]
    assert db.query("SELECT DISTINCT attempts FROM outbox_events") == [(0,)]

    def drained_metrics() -> str | None:
        text = scrape(metrics_url)
        return text if metric_value(text, "spark_outbox_pending_events") == 0 else None

    metrics = wait_until(drained_metrics, "the pending gauge falling to 0")
    assert metric_value(metrics, "spark_outbox_published_total") == 25
    assert metric_value(metrics, "spark_outbox_publish_lag_seconds_count") == 25
    assert metric_value(metrics, "spark_outbox_publish_failures_total") == 0


def test_consumer_outage_keeps_events_pending_then_drains_once(services: Services) -> None:
    db = services.database()
    consumer_port = free_port()
    consumer_url = f"http://127.0.0.1:{consumer_port}"
    publisher, metrics_url = services.publisher(consumer_url)

    event_ids = place_orders(db, 12)
    wait_until(
        lambda: db.scalar("SELECT max(attempts) FROM outbox_events") >= 2,
        "the publisher retrying while the consumer is down",
    )
    assert db.scalar(PENDING) == 12
    assert publisher.proc is not None and publisher.proc.poll() is None, "publisher crashed"
    assert metric_value(scrape(metrics_url), "spark_outbox_publish_failures_total") >= 2

    services.consumer(consumer_port)
    wait_until(lambda: db.scalar(PENDING) == 0, "the backlog draining after the consumer returns")
    assert_effect_exactly_once(db, event_ids)


def test_publisher_drops_events_in_outage_defect_loses_the_outage(services: Services) -> None:
    """The C4 defect: with the consumer unreachable, events are marked published anyway."""
    db = services.database()
    services.publisher(
        f"http://127.0.0.1:{free_port()}", defects="publisher_drops_events_in_outage"
    )
    place_orders(db, 5)
    wait_until(lambda: db.scalar(PENDING) == 0, "the outage's events marked published")
    assert db.scalar("SELECT count(*) FROM consumed_events") == 0
    assert db.scalar("SELECT count(*) FROM order_ledger") == 0


def test_lost_acknowledgement_is_redelivered_and_deduped(services: Services) -> None:
    db = services.database()
    _, consumer_url = services.consumer()
    _, metrics_url = services.publisher(consumer_url)
    event_ids = place_orders(db, 3)
    wait_until(lambda: db.scalar(PENDING) == 0, "the first publication")

    # As if the publisher's commit had been lost after the consumer applied the event.
    db.query("UPDATE outbox_events SET published_at = NULL WHERE id = 2 RETURNING id")
    wait_until(lambda: db.scalar(PENDING) == 0, "the redelivery")

    assert db.query("SELECT deliveries FROM consumed_events ORDER BY received_at") == [
        (1,),
        (2,),
        (1,),
    ]
    assert_effect_exactly_once(db, event_ids)
    assert metric_value(scrape(metrics_url), "spark_outbox_published_total") == 4


def test_two_publishers_never_double_apply(services: Services) -> None:
    db = services.database()
    _, consumer_url = services.consumer()
    # More than one batch (100), so the second publisher claims while the first is posting.
    event_ids = place_orders(db, 150)
    _, first_metrics = services.publisher(consumer_url)
    _, second_metrics = services.publisher(consumer_url)

    wait_until(lambda: db.scalar(PENDING) == 0, "150 events published by two publishers")

    assert_effect_exactly_once(db, event_ids)
    # SKIP LOCKED: no row was claimed by both, so no event was even delivered twice.
    assert db.query("SELECT DISTINCT deliveries FROM consumed_events") == [(1,)]
    published = sum(
        metric_value(scrape(url), "spark_outbox_published_total")
        for url in (first_metrics, second_metrics)
    )
    assert published == 150


def test_sigterm_finishes_the_batch_and_exits_cleanly(services: Services) -> None:
    db = services.database()
    _, consumer_url = services.consumer()
    place_orders(db, 150)
    publisher, _ = services.publisher(consumer_url)
    wait_until(lambda: db.scalar("SELECT count(*) FROM consumed_events") > 0, "a first delivery")
    child = publisher.proc
    assert child is not None
    child.terminate()
    assert child.wait(10) == 0
    # Whatever the consumer received was also marked published: the batch in flight was
    # finished and committed, not abandoned with delivered rows still pending.
    delivered_but_pending = db.scalar(
        "SELECT count(*) FROM consumed_events c JOIN outbox_events o USING (event_id)"
        " WHERE o.published_at IS NULL"
    )
    assert delivered_but_pending == 0


def test_terminated_database_sessions_are_reopened(services: Services) -> None:
    db = services.database()
    _, consumer_url = services.consumer()
    publisher, _ = services.publisher(consumer_url)
    first = place_orders(db, 10)
    wait_until(lambda: db.scalar(PENDING) == 0, "the first 10 events published")
    wait_until(lambda: db.scalar(LISTENING) == 1, "the publisher's LISTEN session")

    terminated = db.scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE usename = 'spark_app' AND pid <> pg_backend_pid()) AS killed"
    )
    assert terminated >= 1
    second = place_orders(db, 10)

    wait_until(lambda: db.scalar(PENDING) == 0, "events published after the sessions were reset")
    wait_until(lambda: db.scalar(LISTENING) == 1, "the LISTEN session re-established")
    assert_effect_exactly_once(db, first + second)
    assert publisher.proc is not None and publisher.proc.poll() is None, "publisher crashed"


def test_unreachable_database_degrades_health_without_crashing(services: Services) -> None:
    closed = f"host=127.0.0.1 port={free_port()} dbname=spark user=nobody connect_timeout=1"
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}"
    publisher = services.run(
        ServiceProcess(
            "outbox-publisher-without-db",
            [sys.executable, "-m", "spark_sandbox.app.outbox", "--metrics-port", str(metrics_port)],
            log_path=services.log_dir / "publisher-without-db.log",
            ready=lambda: is_listening(metrics_port),
            env=base_env(SPARK_APP_DSN=closed, SPARK_LISTEN_DSN=closed, SPARK_CONSUMER_URL=url),
            cwd=REPO_ROOT,
        )
    )

    def degraded() -> dict[str, object] | None:
        reply = httpx.get(url + "/health", timeout=2.0, trust_env=False)
        return reply.json() if reply.status_code == 503 else None

    health = wait_until(degraded, "/health answering 503 while the database is unreachable")
    assert health["database"] is False and "OperationalError" in str(health["last_error"])
    assert publisher.proc is not None and publisher.proc.poll() is None, "publisher crashed"


def test_delivery_body_keeps_the_stored_payload_verbatim() -> None:
    stored = '{"price": "1.10", "quantity": 3, "raw": 0.1000000000000000055511151231257827}'
    event = OutboxEvent(
        id=1,
        event_id=str(uuid.uuid4()),
        aggregate_id=9,
        event_type="order.accepted",
        payload_json=stored,
        created_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    )
    body = delivery_body(event).decode()
    assert body.endswith('"payload": ' + stored + "}")
    decoded = json.loads(body)
    assert decoded["event_id"] == event.event_id and decoded["aggregate_id"] == 9
    assert decoded["created_at"] == "2026-11-26T10:00:00+00:00"


def test_backoff_grows_with_jitter_and_stays_capped() -> None:
    backoff = Backoff(base=0.25, cap=4.0, rng=random.Random(5))
    delays = [backoff.next_delay() for _ in range(12)]
    for step, delay in enumerate(delays):
        ceiling = min(4.0, 0.25 * 2**step)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays), "no jitter"
    backoff.reset()
    assert backoff.next_delay() <= 0.25
