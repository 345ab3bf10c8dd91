"""Validation of an order ticket against BIST rules and the per-account risk limits.

Pure functions over the request and the current market; the database-dependent position
limit is checked inside the order transaction (``orders.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from spark_sandbox.app import market_rules
from spark_sandbox.app.instruments import INSTRUMENTS, PRICE_MARGIN
from spark_sandbox.app.money import InvalidMoney, parse_money
from spark_sandbox.app.problems import Problem

# Risk limits per account (TRY and shares), the sandbox's stand-ins for a broker's settings.
MAX_ORDER_NOTIONAL = Decimal("2000000.00")
MAX_POSITION_QUANTITY = 100_000
MAX_ACCOUNT_ID_LENGTH = 64
# orders.id is a bigint: a larger id names no order and must not reach the database as one.
MAX_ORDER_ID = 2**63 - 1


@dataclass(frozen=True)
class OrderTicket:
    account_id: str
    symbol: str
    side: str
    quantity: int
    price: Decimal

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "buy" else -self.quantity


def band(symbol: str, *, outward: bool = False) -> tuple[Decimal, Decimal]:
    """The symbol's price limits; ``outward`` is the band_rounded_outward defect."""
    base = INSTRUMENTS[symbol]
    if outward:
        lower = market_rules.round_to_tick(base * (1 - PRICE_MARGIN), ROUND_FLOOR)
        upper = market_rules.round_to_tick(base * (1 + PRICE_MARGIN), ROUND_CEILING)
        return lower, upper
    return market_rules.price_band(base, PRICE_MARGIN)


def unstorable_text(doc: Any) -> str | None:
    """Where in a decoded JSON document a string (value or member name) holds a NUL or an
    unpaired surrogate, or None. PostgreSQL text cannot store NUL and UTF-8 cannot encode a
    lone surrogate: caught here they are a 400, not a database error after the key is claimed.
    """
    pending: list[tuple[str, Any]] = [("$", doc)]
    while pending:  # iterative: the parser already bounds the depth, this keeps no stack
        where, value = pending.pop()
        if isinstance(value, str):
            if not _storable(value):
                return where
        elif isinstance(value, dict):
            for name, member in value.items():
                if not _storable(name):
                    return f"{where} (a member name)"
                pending.append((f"{where}.{name}", member))
        elif isinstance(value, list):
            pending.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_ticket(doc: Any) -> OrderTicket:
    """The order from a decoded JSON body; every malformed field is a 400 naming it."""
    if not isinstance(doc, dict):
        raise Problem(400, "invalid_order", "the order must be a JSON object")
    account_id = doc.get("account_id")
    if not isinstance(account_id, str) or not 0 < len(account_id) <= MAX_ACCOUNT_ID_LENGTH:
        raise Problem(400, "invalid_order", "account_id must be a string of 1 to 64 characters")
    if not _storable(account_id):
        raise Problem(
            400, "invalid_order", "account_id must not hold a NUL or an unpaired surrogate"
        )
    symbol = doc.get("symbol")
    if not isinstance(symbol, str) or symbol not in INSTRUMENTS:
        raise Problem(
            400,
            "unknown_symbol",
            f"{symbol!r} is not a listed instrument; listed: {', '.join(sorted(INSTRUMENTS))}",
        )
    side = doc.get("side")
    if side not in ("buy", "sell"):
        raise Problem(400, "invalid_order", 'side must be "buy" or "sell"')
    quantity = doc.get("quantity")
    # bool is an int in Python; a lot is one share, so any positive whole number is valid.
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise Problem(400, "invalid_order", "quantity must be a positive whole number of shares")
    try:
        price = parse_money(doc.get("price"))
    except InvalidMoney as exc:
        raise Problem(400, "invalid_money", f"price: {exc}") from None
    return OrderTicket(account_id, symbol, side, quantity, price)


def check_market_rules(
    ticket: OrderTicket, *, skip_tick_check: bool = False, outward_band: bool = False
) -> None:
    """BIST tick grid and the inward-rounded price band; a violation is a 400."""
    if ticket.price < market_rules.MIN_PRICE:
        raise Problem(400, "invalid_money", f"price must be at least {market_rules.MIN_PRICE}")
    if not skip_tick_check and not market_rules.is_tick_aligned(ticket.price):
        tick = market_rules.tick_size(ticket.price)
        raise Problem(
            400,
            "tick_misaligned",
            f"price {ticket.price} is not on the BIST tick grid: prices in its band move in "
            f"steps of {tick}",
            tick=str(tick),
        )
    lower, upper = band(ticket.symbol, outward=outward_band)
    if not lower <= ticket.price <= upper:
        raise Problem(
            400,
            "price_out_of_band",
            f"price {ticket.price} is outside {ticket.symbol}'s band {lower}–{upper} "
            f"(±{PRICE_MARGIN * 100:.0f} % of base {INSTRUMENTS[ticket.symbol]}, rounded inward)",
            lower=str(lower),
            upper=str(upper),
        )


def risk_block(reason: str, detail: str) -> Problem:
    return Problem(422, "risk_blocked", detail, reason=reason)


def check_pre_trade_risk(ticket: OrderTicket, *, stale: bool) -> None:
    """Risk checks that need no database: market-data freshness and order notional."""
    if stale:
        raise risk_block(
            "stale_market_data",
            f"no market-data tick for {ticket.symbol} in the last 5 s; orders are blocked "
            "until the feed recovers",
        )
    if ticket.notional > MAX_ORDER_NOTIONAL:
        raise risk_block(
            "notional_limit",
            f"order notional {ticket.notional} TRY exceeds the per-order limit "
            f"{MAX_ORDER_NOTIONAL} TRY",
        )


def check_position_limit(current: int, ticket: OrderTicket) -> None:
    after = current + ticket.signed_quantity
    if abs(after) > MAX_POSITION_QUANTITY:
        raise risk_block(
            "position_limit",
            f"the position in {ticket.symbol} would be {after} shares; the limit is "
            f"±{MAX_POSITION_QUANTITY}",
        )
