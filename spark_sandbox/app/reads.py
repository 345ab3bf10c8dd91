"""Read-side queries: orders, positions, and the database gauges refreshed at each scrape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from spark_sandbox.app import idempotency, metrics
from spark_sandbox.app.context import DB_WORK_TIMEOUT_S, AppContext, db_work
from spark_sandbox.app.money import render
from spark_sandbox.app.order_json import ORDER_COLUMNS, iso8601, order_document

log = logging.getLogger("spark.reads")
# How long a scrape waits for the database gauges: well inside a 1 s scrape timeout (the
# sandbox scrapes every second). Past it the scrape answers with the previous values. The
# read is not cancelled on the scrape's clock: psycopg then waits for the server to confirm
# the cancel, which is seconds when the database is slow or gone; with a 1 s timeout around
# it, scrapes took over 1 s, Prometheus marked the API down, and every rollback trigger that
# reads the API went blind exactly while the database failed (the rollback drill's T01/T02).
SCRAPE_DB_BUDGET_S = 0.5
# The gauges' read in flight: at most one; a scrape that finds it running waits for that one.
_gauge_read: asyncio.Task[None] | None = None


async def get_order(ctx: AppContext, order_id: int) -> dict[str, Any] | None:
    async with db_work(ctx, "reading the order") as conn:
        cur = await conn.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = %s", (order_id,))
        row = await cur.fetchone()
    if row is None:
        return None
    return order_document(
        row,
        float_money=ctx.defect("float_money"),
        price_field="px" if ctx.defect("contract_field_renamed") else "price",
    )


async def open_positions(ctx: AppContext, account_id: str) -> list[dict[str, Any]]:
    async with db_work(ctx, "reading positions") as conn:
        cur = await conn.execute(
            "SELECT symbol, quantity, average_price, realised_pnl, opened_at, updated_at"
            " FROM positions WHERE account_id = %s AND status = 'open' ORDER BY symbol",
            (account_id,),
        )
        rows = await cur.fetchall()
    as_float = ctx.defect("float_money")
    return [
        {
            "symbol": symbol,
            "quantity": quantity,
            "average_price": render(average, as_float=as_float),
            "realised_pnl": render(realised, as_float=as_float),
            "opened_at": iso8601(opened),
            "updated_at": iso8601(updated),
        }
        for symbol, quantity, average, realised, opened, updated in rows
    ]


async def refresh_database_gauges(ctx: AppContext) -> None:
    """Outbox backlog and idempotency key counts, read at scrape time within
    SCRAPE_DB_BUDGET_S; a read that fails or overruns leaves the old values."""
    global _gauge_read
    metrics.DB_POOL_IN_USE.set(ctx.pool.in_use)
    metrics.DB_POOL_SIZE.set(ctx.pool.size)
    if _gauge_read is None or _gauge_read.done():
        _gauge_read = asyncio.create_task(read_database_gauges(ctx), name="scrape-time-gauges")
    # shield: an overrun stops the wait, not the read, which sets the gauges when it ends.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(_gauge_read), SCRAPE_DB_BUDGET_S)


async def read_database_gauges(ctx: AppContext) -> None:
    try:
        async with asyncio.timeout(DB_WORK_TIMEOUT_S), ctx.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM outbox_events WHERE published_at IS NULL),"
                " (SELECT coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)"
                "    FROM outbox_events WHERE published_at IS NULL),"
                " (SELECT count(*) FROM idempotency_keys WHERE expires_at >= clock_timestamp()),"
                " (SELECT count(*) FROM idempotency_keys WHERE expires_at < clock_timestamp())"
            )
            row = await cur.fetchone()
    except Exception as exc:  # a scrape must still answer when the database is down
        log.warning("scrape-time database gauges not refreshed: %s", exc)
        return
    assert row is not None
    pending, oldest_age, live, expired = row
    metrics.OUTBOX_PENDING.set(pending)
    metrics.OUTBOX_OLDEST_AGE.set(float(oldest_age))
    metrics.IDEMPOTENCY_KEYS_LIVE.set(live)
    metrics.IDEMPOTENCY_KEYS_EXPIRED.set(expired)


async def collect_expired_keys(ctx: AppContext) -> None:
    """The idempotency-key GC: runs until cancelled, one bounded sweep per interval."""
    interval = ctx.settings.idempotency_gc_interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            # A sweep is at most 20 batches so that one run never monopolises a connection.
            for _ in range(20):
                async with asyncio.timeout(DB_WORK_TIMEOUT_S), ctx.pool.connection() as conn:
                    deleted = await idempotency.collect_expired(conn)
                metrics.IDEMPOTENCY_GC_DELETED.inc(deleted)
                if deleted < 1000:
                    break
        except Exception as exc:
            log.warning("idempotency key GC sweep failed, retrying next interval: %s", exc)
