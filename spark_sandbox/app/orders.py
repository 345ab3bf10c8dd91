"""Order submission: Idempotency-Key handling around one atomic order transaction.

The order, its fill, the position update, the completed idempotency record and the
``order.accepted`` outbox event commit together, with ``pg_notify('outbox_events', id)`` so
the publisher wakes at commit. Checks that need no database (body, tick grid, price band,
stale data, notional) run before the key is claimed and are not stored: the operation never
started, so the client may fix and resend under the same key. Everything after the claim,
including a position-limit refusal, is stored and replayed byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from spark_sandbox.app import idempotency, metrics, order_rules
from spark_sandbox.app.context import DB_WORK_TIMEOUT_S, AppContext, database_errors, db_work
from spark_sandbox.app.money import CENT, exact
from spark_sandbox.app.order_json import ORDER_COLUMNS, encode, iso8601, order_document
from spark_sandbox.app.order_rules import OrderTicket
from spark_sandbox.app.positions import PositionState, apply_fill
from spark_sandbox.app.problems import Problem, service_unavailable


@dataclass(frozen=True)
class Answer:
    """An HTTP answer to an order submission: what was (or is now) stored under the key."""

    status: int
    body: bytes
    replayed: bool = False


# Only on the duplicate_order_under_concurrency path; see _submit_unclaimed.
UNCLAIMED_RACE_WINDOW_S = 0.2
# Orders of one account and symbol that close its position under a concurrent order make
# that order open it again; after this many closes in a row it answers 503 (retry).
POSITION_LOCK_ATTEMPTS = 5
# The canary-track defects. slow_canary_orders: every submission waits this long first, which
# puts it in the (0.3 s, 0.4 s] bucket: far above S1's 200 ms, under T01's 400 ms.
SLOW_ORDER_S = 0.3
# canary_5xx_every_50th: a 2 % share of orders, twice S2's 1 %, under T02's 3 %.
SERVER_ERROR_EVERY = 50
# spurious_risk_blocks: one submission in this many is blocked as if its market data were stale.
SPURIOUS_RISK_BLOCK_EVERY = 20


class LeaseLost(Exception):
    """A retry took over this request's lapsed claim; the retry owns the key now."""


async def submit(ctx: AppContext, key_headers: Sequence[str], raw_body: bytes) -> Answer:
    """``key_headers``: every ``Idempotency-Key`` line of the request, as received."""
    number = ctx.next_order_number()
    if ctx.defect("slow_canary_orders") or ctx.defect("slow_stable_orders"):
        await asyncio.sleep(SLOW_ORDER_S)
    if ctx.defect("canary_5xx_every_50th") and number % SERVER_ERROR_EVERY == 0:
        raise Problem(500, "internal_error", "unexpected server error")
    try:
        key = idempotency.key_from_headers(key_headers)
    except Problem:
        metrics.IDEMPOTENCY_REQUESTS.labels(outcome="missing").inc()
        raise
    try:
        payload = json.loads(raw_body, parse_float=Decimal)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise Problem(400, "invalid_order", "the body is not valid UTF-8 JSON") from None
    if (where := order_rules.unstorable_text(payload)) is not None:
        raise Problem(
            400,
            "invalid_order",
            f"{where} holds a NUL character or an unpaired surrogate, which no order field "
            "may contain",
        )
    ticket = order_rules.parse_ticket(payload)
    order_rules.check_market_rules(
        ticket,
        skip_tick_check=ctx.defect("tick_misaligned_accepted"),
        outward_band=ctx.defect("band_rounded_outward"),
    )
    # spurious_risk_blocks: a fresh price taken for a stale one, with a real block's answer.
    spurious = ctx.defect("spurious_risk_blocks") and number % SPURIOUS_RISK_BLOCK_EVERY == 0
    try:
        order_rules.check_pre_trade_risk(
            ticket, stale=spurious or ctx.market.is_stale(ticket.symbol)
        )
    except Problem as blocked:
        metrics.RISK_BLOCKS.labels(reason=blocked.extra["reason"]).inc()
        raise
    print_ = idempotency.fingerprint(payload)
    if ctx.defect("duplicate_order_under_concurrency"):
        return await _submit_unclaimed(ctx, key, print_, ticket)
    return await _submit_claimed(ctx, key, print_, ticket)


async def _submit_claimed(ctx: AppContext, key: str, print_: str, ticket: OrderTicket) -> Answer:
    async with db_work(ctx, "claiming the Idempotency-Key") as conn:
        token = await idempotency.claim(conn, key, print_)
        stored = None if token else await idempotency.lookup(conn, key)
    if token is None:
        return _answer_taken_key(ctx, stored, print_)
    try:
        await _hold_if_asked(ctx, key)
        async with database_errors("placing the order", ctx):
            answer = await _place(ctx, ticket, key, print_, token)
    except LeaseLost:
        metrics.IDEMPOTENCY_REQUESTS.labels(outcome="in_use").inc()
        metrics.IDEMPOTENCY_CONFLICTS.labels(status="409").inc()
        raise _in_use() from None
    except BaseException:
        await _release_quietly(ctx, key, token)
        raise
    metrics.IDEMPOTENCY_REQUESTS.labels(outcome="created").inc()
    return answer


def _answer_taken_key(ctx: AppContext, stored: idempotency.StoredKey | None, print_: str) -> Answer:
    if stored is None:
        # Claimed and gone in between (released after a failure, or collected): ask for a retry.
        raise Problem(503, "service_unavailable", "the Idempotency-Key changed hands; retry")
    if stored.fingerprint != print_:
        if ctx.defect("idempotency_replay_mismatch_200") and stored.response_body is not None:
            return Answer(200, stored.response_body.encode(), replayed=True)
        metrics.IDEMPOTENCY_REQUESTS.labels(outcome="reused").inc()
        metrics.IDEMPOTENCY_CONFLICTS.labels(status="422").inc()
        raise Problem(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new order",
        )
    # replay_answers_409: a completed key is answered as if its first request were in flight.
    replay_refused = ctx.defect("replay_answers_409")
    if replay_refused or stored.status != "completed" or stored.response_status is None:
        metrics.IDEMPOTENCY_REQUESTS.labels(outcome="in_use").inc()
        metrics.IDEMPOTENCY_CONFLICTS.labels(status="409").inc()
        raise _in_use()
    metrics.IDEMPOTENCY_REQUESTS.labels(outcome="replayed").inc()
    return Answer(stored.response_status, (stored.response_body or "").encode(), replayed=True)


def _in_use() -> Problem:
    return Problem(
        409,
        "idempotency_key_in_use",
        "a request with this Idempotency-Key is still being processed; retry after it completes",
    )


async def _submit_unclaimed(ctx: AppContext, key: str, print_: str, ticket: OrderTicket) -> Answer:
    """The duplicate_order_under_concurrency defect: look, then act, with no claim between.

    A completed key is still replayed, so sequential retries look right; concurrent ones all
    find nothing and each places its own order.
    """
    async with db_work(ctx, "reading the Idempotency-Key") as conn:
        stored = await idempotency.lookup(conn, key)
    if stored is not None and stored.status == "completed":
        return _answer_taken_key(ctx, stored, print_)
    await _hold_if_asked(ctx, key)
    # Between the look and the act a real order router calls out (pre-trade risk, routing);
    # this stands in for that round trip so the race shows reliably, not only under load.
    await asyncio.sleep(UNCLAIMED_RACE_WINDOW_S)
    async with database_errors("placing the order", ctx):
        return await _place(ctx, ticket, key, print_, None)


async def _hold_if_asked(ctx: AppContext, key: str) -> None:
    """Sandbox only: the point where a request is in flight under its key (claimed, order not
    yet placed), held there while a check submits the key again (holds.py)."""
    if ctx.settings.sandbox:
        await ctx.holds.pause(key)


async def _release_quietly(ctx: AppContext, key: str, token: uuid.UUID) -> None:
    # Best effort: when the database is the thing that failed, the lease lapses on its own.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0), ctx.pool.connection() as conn:
            await idempotency.release(conn, key, token)


async def _place(
    ctx: AppContext, ticket: OrderTicket, key: str, print_: str, token: uuid.UUID | None
) -> Answer:
    async with asyncio.timeout(DB_WORK_TIMEOUT_S), ctx.pool.connection() as conn:
        try:
            async with conn.transaction():
                if token is not None and not await idempotency.lock_lease(conn, key, token):
                    raise LeaseLost
                answer = await _order_transaction(ctx, conn, ticket, key)
                if token is None:
                    await idempotency.store_unclaimed(conn, key, print_, answer.status, answer.body)
                else:
                    await idempotency.complete(conn, key, answer.status, answer.body)
                return answer
        except Problem as blocked:
            # A refusal decided inside the transaction is rolled back, then stored on its own.
            body = blocked.body()
            async with conn.transaction():
                if token is None:
                    await idempotency.store_unclaimed(conn, key, print_, blocked.status, body)
                elif await idempotency.lock_lease(conn, key, token):
                    await idempotency.complete(conn, key, blocked.status, body)
            return Answer(blocked.status, body)


async def _order_transaction(
    ctx: AppContext, conn: psycopg.AsyncConnection[Any], ticket: OrderTicket, key: str
) -> Answer:
    before, position_id = await lock_position(conn, ticket)
    try:
        order_rules.check_position_limit(before.quantity, ticket)
    except Problem:
        metrics.RISK_BLOCKS.labels(reason="position_limit").inc()
        raise

    notional = exact(ticket.notional, CENT, "notional")
    commission = ctx.rounding.commission(notional)
    cur = await conn.execute(
        "INSERT INTO orders (account_id, symbol, side, quantity, price, commission, status,"
        " idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, 'filled', %s)"
        f" RETURNING {ORDER_COLUMNS}",
        (
            ticket.account_id,
            ticket.symbol,
            ticket.side,
            ticket.quantity,
            ticket.price,
            commission,
            key,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    order_id, created_at = row[0], row[8]
    await conn.execute(
        "INSERT INTO fills (order_id, account_id, symbol, side, quantity, price, commission)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            order_id,
            ticket.account_id,
            ticket.symbol,
            ticket.side,
            ticket.quantity,
            ticket.price,
            commission,
        ),
    )

    after = apply_fill(before, ticket.signed_quantity, ticket.price, ctx.rounding)
    quantity = after.quantity
    if ctx.defect("reconciliation_drift") and before.is_flat:
        quantity += 1  # the opening fill books one share more than was traded
    await conn.execute(
        "UPDATE positions SET quantity = %s, average_price = %s, realised_pnl = %s,"
        " status = %s, updated_at = clock_timestamp(),"
        " closed_at = CASE WHEN %s = 0 THEN clock_timestamp() END WHERE id = %s",
        (
            quantity,
            after.average_price,
            after.realised_pnl,
            "closed" if quantity == 0 else "open",
            quantity,
            position_id,
        ),
    )

    event = {
        "event_id": str(uuid.uuid4()),
        "order_id": order_id,
        "account_id": ticket.account_id,
        "symbol": ticket.symbol,
        "side": ticket.side,
        "quantity": ticket.quantity,
        "price": str(ticket.price),
        "commission": str(commission),
        "created_at": iso8601(created_at),
    }
    if ctx.defect("order_event_schema_changed"):
        del event["account_id"]
    cur = await conn.execute(
        "INSERT INTO outbox_events (event_id, aggregate_id, event_type, payload)"
        " VALUES (%s, %s, 'order.accepted', %s) RETURNING id",
        (event["event_id"], order_id, json.dumps(event)),
    )
    outbox_row = await cur.fetchone()
    assert outbox_row is not None
    await conn.execute("SELECT pg_notify('outbox_events', %s)", (str(outbox_row[0]),))

    metrics.ORDERS_ACCEPTED.labels(symbol=ticket.symbol, side=ticket.side).inc()
    doc = order_document(
        row,
        float_money=ctx.defect("float_money"),
        price_field="px" if ctx.defect("contract_field_renamed") else "price",
    )
    return Answer(201, encode(doc))


async def lock_position(
    conn: psycopg.AsyncConnection[Any], ticket: OrderTicket
) -> tuple[PositionState, int]:
    """The account's open position in the symbol, row-locked; created flat when there is none.

    The insert races safely: open_position_index makes a concurrent second insert a no-op,
    and FOR UPDATE then waits for the first transaction's row. When that transaction closes
    the position (its fill brought it to zero), FOR UPDATE re-reads the row as closed and
    finds nothing: the position is opened again, as if this order had come a moment later.
    """
    for _ in range(POSITION_LOCK_ATTEMPTS):
        await conn.execute(
            "INSERT INTO positions (account_id, symbol, status) VALUES (%s, %s, 'open')"
            " ON CONFLICT (account_id, symbol) WHERE status = 'open' DO NOTHING",
            (ticket.account_id, ticket.symbol),
        )
        cur = await conn.execute(
            "SELECT id, quantity, average_price, realised_pnl FROM positions"
            " WHERE account_id = %s AND symbol = %s AND status = 'open' FOR UPDATE",
            (ticket.account_id, ticket.symbol),
        )
        row = await cur.fetchone()
        if row is not None:
            return PositionState(row[1], row[2], row[3]), row[0]
    raise service_unavailable(
        f"{ticket.account_id}'s {ticket.symbol} position was closed under this order "
        f"{POSITION_LOCK_ATTEMPTS} times in a row; retry"
    )
