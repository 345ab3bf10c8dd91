"""Read-side queries: orders, positions, and the database gauges refreshed at each scrape."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from spark_sandbox.app import idempotency, metrics
from spark_sandbox.app.context import DB_WORK_TIMEOUT_S, AppContext, db_work
from spark_sandbox.app.money import render
from spark_sandbox.app.order_json import ORDER_COLUMNS, iso8601, order_document

log = logging.getLogger("spark.reads")


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
    """Outbox backlog and idempotency key counts, read at scrape time; errors leave old values."""
    metrics.DB_POOL_IN_USE.set(ctx.pool.in_use)
    metrics.DB_POOL_SIZE.set(ctx.pool.size)
    try:
        async with asyncio.timeout(1.0), ctx.pool.connection() as conn:
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
