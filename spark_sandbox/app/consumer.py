"""The outbox consumer: receives order events over HTTP and applies each one exactly once.

The publisher delivers at least once, so the same event can arrive again after a lost reply,
a publisher restart or two publishers racing. Dedupe is a row per ``event_id`` in
``consumed_events`` (``INSERT … ON CONFLICT DO NOTHING``), and the effect (an ``order_ledger``
row) is written in the same transaction, so an event is either consumed with its effect or
not at all. A duplicate still answers 200, or the publisher would retry it forever.

Starlette on uvicorn rather than the stdlib server: it is the stack the reference API runs on,
so the sandbox has one HTTP server to understand, and uvicorn gives a graceful SIGTERM (it
finishes in-flight requests) for free.

Run: ``python -m spark_sandbox.app.consumer --host 127.0.0.1 --port P`` with
``SPARK_CONSUMER_DSN`` (libpq conninfo; PgBouncer's transaction pool is fine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from spark_sandbox.defects import switches

ORDER_ACCEPTED = "order.accepted"
DB_CONNECT_TIMEOUT_SECONDS = 5


class EventRejected(ValueError):
    """The delivered event is malformed; retrying the same bytes cannot help."""


@dataclass(frozen=True)
class OrderEntry:
    """The ledger's view of an accepted order; fields the event lacks stay NULL."""

    order_id: int
    account_id: str | None
    symbol: str | None
    side: str | None
    quantity: int | None
    price: Decimal | None


@dataclass(frozen=True)
class DeliveredEvent:
    event_id: uuid.UUID
    event_type: str
    aggregate_id: int | None
    created_at: datetime | None
    order: OrderEntry | None


@dataclass(frozen=True)
class Receipt:
    event_id: uuid.UUID
    duplicate: bool
    deliveries: int


def parse_event(body: Mapping[str, Any]) -> DeliveredEvent:
    """Validate one delivery as the publisher sends it; EventRejected says what is wrong."""
    try:
        event_id = uuid.UUID(str(body["event_id"]))
    except (KeyError, ValueError) as exc:
        raise EventRejected("event_id must be a UUID string") from exc
    event_type = body.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise EventRejected("event_type must be a non-empty string")
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise EventRejected("payload must be a JSON object")
    aggregate_id = optional_int(body.get("aggregate_id"), "aggregate_id")
    created_at = None
    if body.get("created_at") is not None:
        try:
            created_at = datetime.fromisoformat(str(body["created_at"]))
        except ValueError as exc:
            raise EventRejected("created_at must be an ISO 8601 timestamp") from exc
    order = None
    if event_type == ORDER_ACCEPTED:
        order = parse_order(payload, aggregate_id)
    return DeliveredEvent(event_id, event_type, aggregate_id, created_at, order)


def parse_order(payload: Mapping[str, Any], aggregate_id: int | None) -> OrderEntry:
    order_id = optional_int(payload.get("order_id", aggregate_id), "payload.order_id")
    if order_id is None:
        raise EventRejected("an order.accepted event needs payload.order_id or aggregate_id")
    price = payload.get("price")
    if price is not None:
        try:
            # A float would already have lost precision upstream; Decimal(str(...)) at least
            # does not add binary noise of its own.
            price = Decimal(str(price))
        except InvalidOperation as exc:
            raise EventRejected("payload.price must be a decimal string") from exc
    return OrderEntry(
        order_id=order_id,
        account_id=optional_str(payload.get("account_id")),
        symbol=optional_str(payload.get("symbol")),
        side=optional_str(payload.get("side")),
        quantity=optional_int(payload.get("quantity"), "payload.quantity"),
        price=price,
    )


def optional_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise EventRejected(f"{field} must be an integer")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise EventRejected(f"{field} must be an integer") from exc
    if number != number.to_integral_value():
        raise EventRejected(f"{field} must be an integer")
    return int(number)


def optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


RECORD_EVENT = """
INSERT INTO consumed_events (event_id, event_type, aggregate_id, event_created_at)
VALUES (%s, %s, %s, %s)
ON CONFLICT (event_id) DO NOTHING
RETURNING deliveries
"""

COUNT_REDELIVERY = """
UPDATE consumed_events
   SET deliveries = deliveries + 1, last_received_at = clock_timestamp()
 WHERE event_id = %s
RETURNING deliveries
"""

# ON CONFLICT counts instead of failing: a second effect for one order must be visible in the
# data (applied_count > 1), not turned into a 500 that the publisher would retry forever.
APPLY_ORDER = """
INSERT INTO order_ledger (order_id, event_id, account_id, symbol, side, quantity, price)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (order_id) DO UPDATE SET applied_count = order_ledger.applied_count + 1
"""

LOOKUP_EVENT = """
SELECT event_type, deliveries, received_at, last_received_at
  FROM consumed_events WHERE event_id = %s
"""


class ConsumerStore:
    """One database connection, used by one request at a time, reopened after a failure.

    The consumer sees one delivery at a time from each publisher, so a single serialised
    connection is enough, and reconnecting lazily lets it ride out a database outage.
    """

    def __init__(self, dsn: str, defects: frozenset[str] = frozenset()) -> None:
        self.dsn = dsn
        self.defects = defects  # the sandbox's seeded switches; none in production
        self.lock = asyncio.Lock()
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def connection(self) -> psycopg.AsyncConnection[Any]:
        if self.conn is None or self.conn.closed:
            # prepare_threshold=None: PgBouncer's transaction pool loses prepared statements.
            # autocommit: every transaction is an explicit block, so the session never sits
            # idle in an implicit transaction between requests (the B3 check looks for that).
            self.conn = await psycopg.AsyncConnection.connect(
                self.dsn,
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=DB_CONNECT_TIMEOUT_SECONDS,
            )
        return self.conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.lock:
            try:
                conn = await self.connection()
                async with conn.transaction():
                    yield conn
            except psycopg.OperationalError:
                await self.close()
                raise

    async def consume(self, event: DeliveredEvent) -> Receipt:
        async with self.transaction() as conn:
            created = await conn.execute(
                RECORD_EVENT,
                (event.event_id, event.event_type, event.aggregate_id, event.created_at),
            )
            first = await created.fetchone()
            if first is not None:
                if event.order is not None:
                    o = event.order
                    entry = (o.order_id, event.event_id, o.account_id, o.symbol, o.side)
                    await conn.execute(APPLY_ORDER, (*entry, o.quantity, o.price))
                    # Defect: the effect is applied again inside the same transaction (a
                    # retried statement), which the ledger counts: applied_count 2.
                    if "consumer_applies_twice" in self.defects:
                        await conn.execute(APPLY_ORDER, (*entry, o.quantity, o.price))
                return Receipt(event.event_id, duplicate=False, deliveries=int(first[0]))
            again = await conn.execute(COUNT_REDELIVERY, (event.event_id,))
            row = await again.fetchone()
            return Receipt(event.event_id, duplicate=True, deliveries=int(row[0]) if row else 0)

    async def lookup(self, event_id: uuid.UUID) -> dict[str, Any] | None:
        async with self.transaction() as conn:
            cur = await conn.execute(LOOKUP_EVENT, (event_id,))
            row = await cur.fetchone()
        if row is None:
            return None
        return {
            "event_type": row[0],
            "deliveries": row[1],
            "received_at": row[2].isoformat(),
            "last_received_at": row[3].isoformat(),
        }

    async def ping(self) -> None:
        async with self.transaction() as conn:
            await conn.execute("SELECT 1")

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()


class ConsumerMetrics:
    def __init__(self) -> None:
        # A registry per app, so building the app twice in one process never collides.
        self.registry = CollectorRegistry()
        self.events = Counter(
            "spark_consumer_events",
            "Events consumed for the first time (their effect applied)",
            ["event_type"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "spark_consumer_duplicates",
            "Deliveries of an already consumed event, acknowledged without a second effect",
            registry=self.registry,
        )
        self.apply_seconds = Histogram(
            "spark_consumer_apply_seconds",
            "Time to dedupe and apply one delivery in its transaction",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )


def unavailable(exc: psycopg.Error) -> JSONResponse:
    # 503 tells the publisher to back off and retry; nothing was consumed.
    return JSONResponse(
        {"error": "database unavailable", "detail": type(exc).__name__},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def build_app(dsn: str, defects: frozenset[str] = frozenset()) -> Starlette:
    """The consumer; ``defects`` are the sandbox's seeded switches (none in production)."""
    store = ConsumerStore(dsn, defects)
    metrics = ConsumerMetrics()
    # Events whose first delivery a defect shed; a process-local memory is enough for it.
    shed: set[uuid.UUID] = set()

    async def receive_event(request: Request) -> Response:
        try:
            body = json.loads(await request.body(), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        try:
            event = parse_event(body)
        except EventRejected as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        # Defect: a consumer release that no longer understands sell orders; the publisher
        # retries the rejected event forever, so it sits in the outbox (G09 stuck_events).
        if "consumer_rejects_sells" in defects and event.order and event.order.side == "sell":
            return JSONResponse({"error": "unsupported side 'sell'"}, status_code=422)
        # Defect (half of publisher_acks_failed_delivery): the first delivery of each event is
        # shed as if overloaded, so that every event meets a failed delivery once.
        if "publisher_acks_failed_delivery" in defects and event.event_id not in shed:
            shed.add(event.event_id)
            return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "1"})
        started = time.perf_counter()
        try:
            receipt = await store.consume(event)
        except psycopg.Error as exc:
            return unavailable(exc)
        metrics.apply_seconds.observe(time.perf_counter() - started)
        if receipt.duplicate:
            metrics.duplicates.inc()
        else:
            metrics.events.labels(event.event_type).inc()
        return JSONResponse(
            {
                "event_id": str(receipt.event_id),
                "duplicate": receipt.duplicate,
                "deliveries": receipt.deliveries,
            }
        )

    async def event_status(request: Request) -> Response:
        try:
            event_id = uuid.UUID(request.path_params["event_id"])
        except ValueError:
            return JSONResponse({"error": "event_id must be a UUID"}, status_code=400)
        try:
            found = await store.lookup(event_id)
        except psycopg.Error as exc:
            return unavailable(exc)
        if found is None:
            return JSONResponse(
                {"event_id": str(event_id), "consumed": False, "deliveries": 0}, status_code=404
            )
        return JSONResponse({"event_id": str(event_id), "consumed": True, **found})

    async def health(request: Request) -> Response:
        try:
            await store.ping()
        except psycopg.Error as exc:
            return unavailable(exc)
        return JSONResponse({"status": "ok"})

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await store.close()

    return Starlette(
        routes=[
            Route("/events", receive_event, methods=["POST"]),
            Route("/events/{event_id}", event_status, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m spark_sandbox.app.consumer", description="Spark outbox consumer"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    dsn = os.environ.get("SPARK_CONSUMER_DSN")
    if not dsn:
        parser.error("SPARK_CONSUMER_DSN is not set (libpq conninfo of the consumer database)")
    defects = switches(os.environ.get("SPARK_DEFECTS", ""), "outbox")
    uvicorn.run(build_app(dsn, defects), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
