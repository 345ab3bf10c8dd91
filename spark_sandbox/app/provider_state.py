"""Provider states for contract verification: put the data a pact interaction expects in place.

Enabled only in the sandbox (``SPARK_SANDBOX=1``). A state is matched by its text, with its
parameters either in ``params`` or in the text itself ("an order 42 exists").
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from spark_sandbox.app.context import AppContext, db_work
from spark_sandbox.app.instruments import INSTRUMENTS
from spark_sandbox.app.marketdata import Tick
from spark_sandbox.app.money import parse_money
from spark_sandbox.app.order_rules import OrderTicket
from spark_sandbox.app.orders import lock_position
from spark_sandbox.app.positions import apply_fill
from spark_sandbox.app.problems import Problem

STATES = (
    "an order {order_id} exists",
    "account {account_id} has an open position in {symbol}",
    "market data is fresh",
)
_ORDER = re.compile(r"an order (?P<order_id>\d+)? ?exists", re.IGNORECASE)
_POSITION = re.compile(
    r"account (?P<account_id>\S+) has an open position in (?P<symbol>[A-Z]+)", re.IGNORECASE
)
_FRESH = re.compile(r"(market data is fresh|the market is open)", re.IGNORECASE)


async def apply(ctx: AppContext, state: str, params: dict[str, Any], action: str) -> dict[str, Any]:
    if action == "teardown":
        # Data set up for one interaction stays: every state's setup is idempotent.
        return {"state": state, "action": action}
    if match := _ORDER.fullmatch(state.strip()):
        order_id = int(params.get("order_id") or params.get("id") or match["order_id"] or 42)
        await _with_db(ctx, lambda conn: _order_exists(ctx, conn, order_id, params))
        return {"state": state, "order_id": order_id}
    if match := _POSITION.fullmatch(state.strip()):
        account_id = str(params.get("account_id") or match["account_id"])
        symbol = str(params.get("symbol") or match["symbol"]).upper()
        if symbol not in INSTRUMENTS:
            raise Problem(400, "unknown_symbol", f"{symbol!r} is not a listed instrument")
        await _with_db(ctx, lambda conn: _position_exists(ctx, conn, account_id, symbol, params))
        return {"state": state, "account_id": account_id, "symbol": symbol}
    if _FRESH.fullmatch(state.strip()):
        now = time.monotonic()
        for symbol, base in INSTRUMENTS.items():
            ctx.market.publish(Tick(symbol, base, int(time.time() * 1000), now))
        return {"state": state}
    raise Problem(
        400,
        "unknown_provider_state",
        f"unknown provider state {state!r}; known states: {'; '.join(STATES)}",
    )


async def _with_db(
    ctx: AppContext, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]
) -> None:
    async with db_work(ctx, "setting up the provider state") as conn, conn.transaction():
        await work(conn)


async def _order_exists(
    ctx: AppContext, conn: psycopg.AsyncConnection[Any], order_id: int, params: dict[str, Any]
) -> None:
    cur = await conn.execute("SELECT 1 FROM orders WHERE id = %s", (order_id,))
    if await cur.fetchone() is not None:
        return
    ticket = OrderTicket(
        account_id=str(params.get("account_id", "acct-contract")),
        symbol=str(params.get("symbol", "THYAO")),
        side=str(params.get("side", "buy")),
        quantity=int(params.get("quantity", 10)),
        price=parse_money(str(params.get("price", "285.25"))),
    )
    await _book(ctx, conn, ticket, order_id)
    # An explicit id must not leave orders_id_seq behind max(id): the next real order would
    # collide, and the B1 sequence check would rightly flag it.
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence('orders', 'id'),"
        " greatest((SELECT max(id) FROM orders), (SELECT last_value FROM orders_id_seq)))"
    )


async def _position_exists(
    ctx: AppContext,
    conn: psycopg.AsyncConnection[Any],
    account_id: str,
    symbol: str,
    params: dict[str, Any],
) -> None:
    cur = await conn.execute(
        "SELECT 1 FROM positions WHERE account_id = %s AND symbol = %s AND status = 'open'",
        (account_id, symbol),
    )
    if await cur.fetchone() is not None:
        return
    ticket = OrderTicket(
        account_id=account_id,
        symbol=symbol,
        side="buy",
        quantity=int(params.get("quantity", 100)),
        price=parse_money(str(params.get("average_price", INSTRUMENTS[symbol]))),
    )
    await _book(ctx, conn, ticket, None)


async def _book(
    ctx: AppContext, conn: psycopg.AsyncConnection[Any], ticket: OrderTicket, order_id: int | None
) -> None:
    """A filled order with its fill and position update, so reconciliation still holds."""
    commission = ctx.rounding.commission(ticket.notional)
    cur = await conn.execute(
        "INSERT INTO orders (id, account_id, symbol, side, quantity, price, commission, status)"
        " VALUES (coalesce(%s, nextval(pg_get_serial_sequence('orders', 'id'))),"
        " %s, %s, %s, %s, %s, %s, 'filled') RETURNING id",
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
    row = await cur.fetchone()
    assert row is not None
    await conn.execute(
        "INSERT INTO fills (order_id, account_id, symbol, side, quantity, price, commission)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            row[0],
            ticket.account_id,
            ticket.symbol,
            ticket.side,
            ticket.quantity,
            ticket.price,
            commission,
        ),
    )
    before, position_id = await lock_position(conn, ticket)
    after = apply_fill(before, ticket.signed_quantity, ticket.price, ctx.rounding)
    await conn.execute(
        "UPDATE positions SET quantity = %s, average_price = %s, realised_pnl = %s,"
        " status = %s, updated_at = clock_timestamp() WHERE id = %s",
        (
            after.quantity,
            after.average_price,
            after.realised_pnl,
            "closed" if after.is_flat else "open",
            position_id,
        ),
    )
