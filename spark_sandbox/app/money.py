"""Money as Decimal: strict parsing, banker's rounding, and JSON rendering as strings.

A float never enters: parsing accepts only plain decimal strings, and any float handed to
this module is counted as a decimal precision error (rollback trigger T14) before it is used.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from spark_sandbox.app import metrics

CENT = Decimal("0.01")
AVERAGE_PRICE_SCALE = Decimal("0.0001")
COMMISSION_RATE = Decimal("0.0005")  # 5 bps of notional

# Digits, an optional fraction of at most two places; no sign, exponent, NaN or spaces.
_MONEY = re.compile(r"(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,2})?")


class InvalidMoney(ValueError):
    pass


def parse_money(value: object) -> Decimal:
    """A price or amount from JSON; only a plain decimal string with ≤ 2 places is money."""
    if not isinstance(value, str):
        raise InvalidMoney(f'money must be a decimal string such as "285.25", got {value!r}')
    if not _MONEY.fullmatch(value):
        raise InvalidMoney(
            f"{value!r} is not a money amount: digits with at most two decimal places, "
            "no sign, exponent or NaN"
        )
    return Decimal(value)


class Rounding:
    """Where the API rounds computed amounts; one mode for all of them."""

    def __init__(self, half_up: bool = False) -> None:
        # The half_up_rounding defect: the common schoolbook mode, which biases sums upwards.
        self.mode = ROUND_HALF_UP if half_up else ROUND_HALF_EVEN

    def commission(self, notional: Decimal) -> Decimal:
        amount = to_decimal(notional, "commission") * COMMISSION_RATE
        return amount.quantize(CENT, rounding=self.mode)

    def average_price(self, cost: Decimal, quantity: int) -> Decimal:
        return (to_decimal(cost, "average_price") / quantity).quantize(
            AVERAGE_PRICE_SCALE, rounding=self.mode
        )


def exact(value: Decimal, scale: Decimal, site: str) -> Decimal:
    """``value`` at ``scale`` where no rounding should be needed; a lost digit is counted."""
    value = to_decimal(value, site)
    quantized = value.quantize(scale, rounding=ROUND_HALF_EVEN)
    if quantized != value:
        metrics.DECIMAL_PRECISION_ERRORS.labels(site=site).inc()
    return quantized


def to_decimal(value: Decimal | float | int, site: str) -> Decimal:
    if isinstance(value, float):
        metrics.DECIMAL_PRECISION_ERRORS.labels(site=site).inc()
        return Decimal(repr(value))
    return value if isinstance(value, Decimal) else Decimal(value)


def render(value: Decimal, *, as_float: bool = False) -> str | float:
    """Money for JSON: a decimal string (I-JSON); ``as_float`` is the float_money defect."""
    return float(value) if as_float else str(value)
