"""Provider states for contract verification: put the data a pact interaction expects in place.

Enabled only in the sandbox (``SPARK_SANDBOX=1``). A state is matched by its text, with its
parameters either in ``params`` or in the text itself ("an order 42 exists"). Parameters are
checked as an order's fields are (ids in range, listed symbol, a price in the band, a bounded
quantity) before any of them reaches the database: a malformed one is a 400, never a 5xx.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from spark_sandbox.app import order_rules
from spark_sandbox.app.context import AppContext, db_work
from spark_sandbox.app.instruments import INSTRUMENTS
from spark_sandbox.app.marketdata import Tick
from spark_sandbox.app.order_rules import MAX_ORDER_ID, OrderTicket
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
        order_id = _order_id(params.get("order_id") or params.get("id") or match["order_id"] or 42)
        ticket = _ticket(
            account_id=params.get("account_id", "acct-contract"),
            symbol=params.get("symbol", "THYAO"),
            side=params.get("side", "buy"),
            quantity=params.get("quantity", 10),
            price=params.get("price", "285.25"),
        )
        await _with_db(ctx, lambda conn: _order_exists(ctx, conn, order_id, ticket))
        return {"state": state, "order_id": order_id}
    if match := _POSITION.fullmatch(state.strip()):
        symbol = _text(params.get("symbol") or match["symbol"], "symbol").upper()
        if symbol not in INSTRUMENTS:
            raise Problem(400, "unknown_symbol", f"{symbol!r} is not a listed instrument")
        ticket = _ticket(
            account_id=params.get("account_id") or match["account_id"],
            symbol=symbol,
            side="buy",
            quantity=params.get("quantity", 100),
            price=params.get("average_price", str(INSTRUMENTS[symbol])),
        )
        await _with_db(ctx, lambda conn: _position_exists(ctx, conn, ticket))
        return {"state": state, "account_id": ticket.account_id, "symbol": symbol}
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


def _text(value: Any, name: str) -> str:
    """A text parameter; a number is taken as its digits (pact parameters may be numbers)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _bad_param(name, value, "a string")


def _whole(value: Any) -> Any:
    """A digit string as its number (pact parameters may arrive as text); else unchanged."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return value


def _order_id(value: Any) -> int:
    value = _whole(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ORDER_ID:
        raise _bad_param("order_id", value, f"a whole number from 1 to {MAX_ORDER_ID}")
    return value


def _ticket(**fields: Any) -> OrderTicket:
    """The order a state books, checked as a submitted order is (400 or 422 naming the field):
    no value the database would refuse (and answer with an error) gets that far."""
    quantity = _whole(fields["quantity"])
    price = fields["price"]
    if isinstance(price, int | float) and not isinstance(price, bool):
        price = str(price)
    doc = {
        "account_id": _text(fields["account_id"], "account_id"),
        "symbol": _text(fields["symbol"], "symbol"),
        "side": fields["side"],
        "quantity": quantity,
        "price": price,
    }
    ticket = order_rules.parse_ticket(doc)
    order_rules.check_market_rules(ticket)
    order_rules.check_pre_trade_risk(ticket, stale=False)
    order_rules.check_position_limit(0, ticket)
    return ticket


def _bad_param(name: str, value: Any, wanted: str) -> Problem:
    return Problem(
        400,
        "invalid_provider_state",
        f"provider state parameter {name} must be {wanted}, got {repr(value)[:80]}",
    )


async def _with_db(
    ctx: AppContext, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]
) -> None:
    async with db_work(ctx, "setting up the provider state") as conn, conn.transaction():
        await work(conn)


async def _order_exists(
    ctx: AppContext, conn: psycopg.AsyncConnection[Any], order_id: int, ticket: OrderTicket
) -> None:
    cur = await conn.execute("SELECT 1 FROM orders WHERE id = %s", (order_id,))
    if await cur.fetchone() is not None:
        return
    await _book(ctx, conn, ticket, order_id)
    # An explicit id must not leave orders_id_seq behind max(id): the next real order would
    # collide, and the B1 sequence check would rightly flag it.
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence('orders', 'id'),"
        " greatest((SELECT max(id) FROM orders), (SELECT last_value FROM orders_id_seq)))"
    )


async def _position_exists(
    ctx: AppContext, conn: psycopg.AsyncConnection[Any], ticket: OrderTicket
) -> None:
    cur = await conn.execute(
        "SELECT 1 FROM positions WHERE account_id = %s AND symbol = %s AND status = 'open'",
        (ticket.account_id, ticket.symbol),
    )
    if await cur.fetchone() is not None:
        return
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
