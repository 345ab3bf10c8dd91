"""BIST equity market rules as the reference API applies them.

Tick bands in force from 06.11.2023; price limits are rounded inward to the tick grid
(upper limit down, lower limit up). Money is Decimal throughout; a float never enters.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

# (lower bound inclusive, tick) from the highest band down, so the first match wins.
TICK_BANDS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal("2500"), Decimal("2.50")),
    (Decimal("1000"), Decimal("1.00")),
    (Decimal("500"), Decimal("0.50")),
    (Decimal("250"), Decimal("0.25")),
    (Decimal("100"), Decimal("0.10")),
    (Decimal("50"), Decimal("0.05")),
    (Decimal("20"), Decimal("0.02")),
    (Decimal("0.01"), Decimal("0.01")),
)

MIN_PRICE = Decimal("0.01")


def tick_size(price: Decimal) -> Decimal:
    """The tick of the band ``price`` falls in; prices below 0.01 have no band."""
    for lower, tick in TICK_BANDS:
        if price >= lower:
            return tick
    raise ValueError(f"price {price} is below the minimum {MIN_PRICE}")


def is_tick_aligned(price: Decimal) -> bool:
    return price >= MIN_PRICE and price % tick_size(price) == 0


def round_to_tick(price: Decimal, rounding: str) -> Decimal:
    """``price`` on the tick grid of its band, rounded with the given decimal rounding mode."""
    tick = tick_size(price)
    return (price / tick).to_integral_value(rounding=rounding) * tick


def price_band(base: Decimal, margin: Decimal) -> tuple[Decimal, Decimal]:
    """(lower, upper) limits around ``base`` for a fractional ``margin``, rounded inward."""
    lower = round_to_tick(base * (1 - margin), ROUND_CEILING)
    upper = round_to_tick(base * (1 + margin), ROUND_FLOOR)
    return lower, upper
