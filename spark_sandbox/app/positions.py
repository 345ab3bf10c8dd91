"""How a fill moves a position: signed quantity, average price and realised P&L."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from spark_sandbox.app.money import CENT, Rounding


@dataclass(frozen=True)
class PositionState:
    quantity: int
    average_price: Decimal
    realised_pnl: Decimal

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0


def apply_fill(
    before: PositionState, signed_quantity: int, price: Decimal, rounding: Rounding
) -> PositionState:
    """The position after filling ``signed_quantity`` (buy > 0, sell < 0) at ``price``."""
    q0, avg0 = before.quantity, before.average_price
    q1 = q0 + signed_quantity
    if q0 == 0 or (q0 > 0) == (signed_quantity > 0):
        cost = abs(q0) * avg0 + abs(signed_quantity) * price
        return PositionState(q1, rounding.average_price(cost, abs(q1)), before.realised_pnl)
    closed = min(abs(q0), abs(signed_quantity))
    direction = 1 if q0 > 0 else -1
    pnl = ((price - avg0) * closed * direction).quantize(CENT, rounding=rounding.mode)
    realised = before.realised_pnl + pnl
    if q1 == 0:
        return PositionState(0, avg0, realised)
    if (q1 > 0) == (q0 > 0):
        return PositionState(q1, avg0, realised)
    # The fill crossed zero: the remainder is a new position opened at this price.
    return PositionState(q1, price.quantize(Decimal("0.0001")), realised)
