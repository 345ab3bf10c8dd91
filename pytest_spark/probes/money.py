"""B4 decimal behaviour: an independent money oracle and the order cases that exercise it.

The oracle is written from the exchange's and the language's rules, not from the target's code,
so that a check built on it can catch the target (DOMAIN-FACTS §1):

- BIST tick bands in force from 06.11.2023 (eight bands, 0.01 ... 2.50 TRY);
- price limits: base ± margin, rounded *inward* to the tick grid (upper down, lower up);
- commission: notional × 5 bps, rounded half-even (banker's rounding) to 0.01 TRY;
- average price: cost / quantity, rounded half-even to 0.0001;
- money on the wire is a decimal string (I-JSON); a JSON number loses digits.

Pure logic only (oracle, strict parser, case generation); orders are placed through
:mod:`pytest_spark.probes.spark_api` and their answers graded in
:mod:`pytest_spark.probes.orders`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")
AVERAGE_PRICE_PLACES = 4
COMMISSION_RATE = Decimal("0.0005")  # 5 bps of notional
PRICE_MARGIN = Decimal("0.20")  # Yıldız Pazar / Ana Pazar Grup 1
MIN_PRICE = Decimal("0.01")

# (first price of the band, tick), lowest band first.
BIST_TICK_BANDS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal("0.01"), Decimal("0.01")),
    (Decimal("20"), Decimal("0.02")),
    (Decimal("50"), Decimal("0.05")),
    (Decimal("100"), Decimal("0.10")),
    (Decimal("250"), Decimal("0.25")),
    (Decimal("500"), Decimal("0.50")),
    (Decimal("1000"), Decimal("1.00")),
    (Decimal("2500"), Decimal("2.50")),
)

# JSON keys that carry money or prices in the reference API's documents.
MONEY_FIELDS = frozenset(
    {
        "price",
        "commission",
        "average_price",
        "realised_pnl",
        "base_price",
        "last_price",
        "lower",
        "upper",
        "tick",
        "notional",
    }
)

_DECIMAL_TEXT = re.compile(r"(?P<sign>-)?(?:0|[1-9][0-9]*)(?:\.(?P<fraction>[0-9]+))?")


class MoneyFormatError(ValueError):
    """A value that is not money as the wire format allows it."""


# --- the oracle --------------------------------------------------------------------------------


def tick_size(price: Decimal) -> Decimal:
    """The tick of the BIST band ``price`` falls in (the tick follows the price)."""
    if price < MIN_PRICE:
        raise ValueError(f"price {price} is below the minimum {MIN_PRICE} TRY")
    tick = BIST_TICK_BANDS[0][1]
    for first_price, band_tick in BIST_TICK_BANDS:
        if price >= first_price:
            tick = band_tick
    return tick


def is_tick_aligned(price: Decimal) -> bool:
    return price >= MIN_PRICE and price % tick_size(price) == 0


def band_edges() -> list[tuple[Decimal, Decimal, Decimal]]:
    """``(edge, tick below, tick from the edge up)`` for every band boundary."""
    return [
        (first, below_tick, tick)
        for (_, below_tick), (first, tick) in itertools.pairwise(BIST_TICK_BANDS)
    ]


def _to_grid(price: Decimal, rounding: str) -> Decimal:
    tick = tick_size(max(price, MIN_PRICE))
    return (price / tick).to_integral_value(rounding=rounding) * tick


def price_band(base: Decimal, margin: Decimal = PRICE_MARGIN) -> tuple[Decimal, Decimal]:
    """BIST price limits around ``base``: the upper limit rounds down to the nearest tick, the
    lower limit up, so both limits are tradable prices inside ± margin."""
    return (
        _to_grid(base * (1 - margin), ROUND_CEILING),
        _to_grid(base * (1 + margin), ROUND_FLOOR),
    )


def commission(notional: Decimal) -> Decimal:
    """Notional × 5 bps, banker's rounding to 0.01 TRY."""
    return (notional * COMMISSION_RATE).quantize(CENT, rounding=ROUND_HALF_EVEN)


def average_price(cost: Decimal, quantity: int) -> Decimal:
    """Cost / shares, banker's rounding to four places."""
    if quantity <= 0:
        raise ValueError(f"average price of {quantity} shares")
    return (cost / quantity).quantize(Decimal(1).scaleb(-AVERAGE_PRICE_PLACES), ROUND_HALF_EVEN)


def is_half_way(raw: Decimal, places: int) -> bool:
    """True when ``raw`` lies exactly between two neighbours at ``places`` decimals."""
    scaled = raw.scaleb(places)
    return scaled - scaled.to_integral_value(rounding=ROUND_FLOOR) == Decimal("0.5")


def even_neighbour_below(raw: Decimal, places: int) -> bool:
    """For a half-way ``raw``: is the lower neighbour even (half-even rounds it down, so
    half-up and half-even disagree)?"""
    return int(raw.scaleb(places).to_integral_value(rounding=ROUND_FLOOR)) % 2 == 0


# --- the wire format ----------------------------------------------------------------------------


def parse_money(value: object, places: int = 2, *, signed: bool = False) -> Decimal:
    """A money amount as the wire carries it: a plain decimal string with at most ``places``
    decimals. Floats, JSON numbers, exponents, NaN/Infinity, spaces and (unless ``signed``)
    a minus sign are refused, since each of them means digits were or can be lost."""
    if not isinstance(value, str):
        raise MoneyFormatError(
            f'money must be a decimal string such as "285.25", got {type(value).__name__} {value!r}'
        )
    match = _DECIMAL_TEXT.fullmatch(value)
    if match is None:
        raise MoneyFormatError(
            f"{value!r} is not a plain decimal (digits, optional point; no exponent, NaN, "
            "spaces or plus sign)"
        )
    if match["sign"] and not signed:
        raise MoneyFormatError(f"{value!r}: a negative amount where none is allowed")
    if len(match["fraction"] or "") > places:
        raise MoneyFormatError(f"{value!r} has more than {places} decimal places")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # the pattern admits only valid literals; kept for safety
        raise MoneyFormatError(f"{value!r}: {exc}") from None


def loads_exact(text: str) -> Any:
    """JSON with every non-integer number kept as the exact Decimal literal it was written as."""
    return json.loads(text, parse_float=Decimal)


def money_numbers(document: object, path: str = "$") -> Iterator[str]:
    """JSON paths of money fields carried as JSON numbers instead of decimal strings."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            where = f"{path}.{key}"
            if (
                key in MONEY_FIELDS
                and isinstance(value, int | float | Decimal)
                and not isinstance(value, bool)
            ):
                yield where
            else:
                yield from money_numbers(value, where)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from money_numbers(value, f"{path}[{index}]")


def as_decimal(value: object) -> Decimal | None:
    """A response's money value for comparison: decimal strings and exact JSON numbers both
    count (another check, M3, judges the wire type); anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal | int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


# --- instruments and cases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instrument:
    """A listed symbol as its market endpoint reports it."""

    symbol: str
    base_price: Decimal
    tick: Decimal

    @property
    def band(self) -> tuple[Decimal, Decimal]:
        return price_band(self.base_price)

    def within_band(self, price: Decimal) -> bool:
        lower, upper = self.band
        return lower <= price <= upper


def aligned_prices_near(base: Decimal, band: tuple[Decimal, Decimal], limit: int) -> list[Decimal]:
    """Up to ``limit`` tick-aligned prices inside ``band``, nearest to ``base`` first."""
    lower, upper = band
    start = _to_grid(base, ROUND_FLOOR)
    found: list[Decimal] = []
    below, above = start, start
    while len(found) < limit and (below >= lower or above <= upper):
        if above <= upper and is_tick_aligned(above) and above not in found:
            found.append(above)
        if below >= lower and below != above and is_tick_aligned(below) and below not in found:
            found.append(below)
        above += tick_size(above)
        below -= tick_size(max(below - CENT, MIN_PRICE))
    return found[:limit]


@dataclass(frozen=True)
class CommissionCase:
    """One order whose raw commission lies exactly half-way between two cents."""

    symbol: str
    price: Decimal
    quantity: int

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity

    @property
    def raw_commission(self) -> Decimal:
        return self.notional * COMMISSION_RATE

    @property
    def expected(self) -> Decimal:
        return commission(self.notional)

    @property
    def neighbour(self) -> str:
        return "even" if even_neighbour_below(self.raw_commission, 2) else "odd"


def commission_cases(
    instruments: Iterable[Instrument], max_quantity: int = 400, prices_tried: int = 40
) -> list[CommissionCase]:
    """Per instrument, the smallest order whose raw commission is half-way with an even lower
    neighbour (half-even rounds down, half-up would not) and one with an odd neighbour."""
    cases: list[CommissionCase] = []
    for instrument in instruments:
        wanted = {"even", "odd"}
        prices = aligned_prices_near(instrument.base_price, instrument.band, prices_tried)
        for quantity in range(1, max_quantity + 1):
            for price in prices:
                case = CommissionCase(instrument.symbol, price, quantity)
                if is_half_way(case.raw_commission, 2) and case.neighbour in wanted:
                    wanted.discard(case.neighbour)
                    cases.append(case)
            if not wanted:
                break
    return cases


@dataclass(frozen=True)
class AveragePriceCase:
    """Two buys into one new position whose raw average price is half-way at 4 places."""

    symbol: str
    fills: tuple[tuple[Decimal, int], tuple[Decimal, int]]

    @property
    def quantity(self) -> int:
        return sum(q for _, q in self.fills)

    @property
    def raw_average(self) -> Decimal:
        return sum((p * q for p, q in self.fills), Decimal(0)) / self.quantity

    @property
    def expected(self) -> Decimal:
        return average_price(sum((p * q for p, q in self.fills), Decimal(0)), self.quantity)

    @property
    def neighbour(self) -> str:
        return "even" if even_neighbour_below(self.raw_average, AVERAGE_PRICE_PLACES) else "odd"


def average_price_cases(instrument: Instrument, max_quantity: int = 16) -> list[AveragePriceCase]:
    """Two positions in ``instrument`` (an even- and an odd-neighbour half-way average), each
    opened by a buy at a price and a buy one tick higher."""
    price = _to_grid(instrument.base_price, ROUND_FLOOR)
    higher = price + tick_size(price)
    if not instrument.within_band(higher):
        higher, price = price, price - tick_size(price - CENT)
    wanted = {"even", "odd"}
    cases: list[AveragePriceCase] = []
    for total in range(2, max_quantity + 1):
        for at_higher in range(1, total):
            case = AveragePriceCase(
                instrument.symbol, ((price, total - at_higher), (higher, at_higher))
            )
            if is_half_way(case.raw_average, AVERAGE_PRICE_PLACES) and case.neighbour in wanted:
                wanted.discard(case.neighbour)
                cases.append(case)
        if not wanted:
            break
    return cases


@dataclass(frozen=True)
class TickCase:
    """A price at a band edge and what the exchange's grid says about it."""

    symbol: str
    price: Decimal
    where: str  # e.g. "last price below 50" / "first price of the 50 band"

    @property
    def aligned(self) -> bool:
        return is_tick_aligned(self.price)

    @property
    def tick(self) -> Decimal:
        return tick_size(self.price)


def band_edge_cases(
    instruments: Sequence[Instrument],
) -> tuple[list[TickCase], list[Decimal]]:
    """At each band edge E that some instrument's price band spans: the last aligned price
    below E and E itself (accepted), E + the lower band's tick (on the old grid, off the new
    one) and, where the lower tick allows it, a price half a tick below E (rejected).

    Returns the cases and the edges no listed instrument can reach.
    """
    cases: list[TickCase] = []
    unreachable: list[Decimal] = []
    for edge, below_tick, tick in band_edges():
        edge = edge.quantize(CENT)  # prices go on the wire with two places
        candidates = [
            (edge - below_tick, f"last aligned price below {edge}"),
            (edge, f"first price of the {edge} band (tick {tick})"),
            (edge + below_tick, f"{edge} + {below_tick}: on the lower band's grid, not on {tick}"),
        ]
        half_below = edge - below_tick / 2
        if half_below == half_below.quantize(CENT):
            candidates.append((half_below, f"half a tick ({below_tick}) below {edge}"))
        spanning = [i for i in instruments if all(i.within_band(price) for price, _ in candidates)]
        if not spanning:
            unreachable.append(edge)
            continue
        symbol = spanning[0].symbol
        cases.extend(TickCase(symbol, price, where) for price, where in candidates)
    return cases, unreachable


# --- grading ------------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table for the evidence."""
    text_rows = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in text_rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in text_rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines) + "\n"
