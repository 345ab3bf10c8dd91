"""What the order checks grade on top of the money oracle (M1–M4, G03): realised P&L, the
scale of money on the wire, reconciliation of positions and commissions with fills, money
columns stored as floats, the open-position partial unique index, and a bounded budget of
orders for property-based checks.

Pure logic only: the oracle itself (ticks, bands, banker's rounding, the strict wire parser)
is :mod:`pytest_spark.probes.money`, orders are placed through
:mod:`pytest_spark.probes.spark_api`, and what the database booked is read through
:mod:`pytest_spark.probes.postgres`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from pytest_spark.probes import money
from pytest_spark.probes.spark_api import Answer

# The sandbox's own tests still reach the order submissions through this module.
from pytest_spark.probes.spark_api import Ticket as Ticket
from pytest_spark.probes.spark_api import new_key as new_key
from pytest_spark.probes.spark_api import submit_while_held as submit_while_held

# Column names that hold money or prices; a float type on any of them loses cents.
_MONEY_COLUMN = re.compile(
    r"(^|_)(price|prices|commission|commissions|pnl|notional|amount|fee|fees|cost|balance"
    r"|cash|lower|upper|tick)($|_)"
)
FLOAT_TYPES = frozenset({"real", "double precision"})


# --- oracle additions ---------------------------------------------------------------------------


def realised_pnl(average: Decimal, price: Decimal, closed: int, direction: int) -> Decimal:
    """P&L of closing ``closed`` shares of a position (``direction`` +1 long, -1 short) at
    ``price`` against its average, banker's rounding to 0.01 TRY."""
    return ((price - average) * closed * direction).quantize(money.CENT, ROUND_HALF_EVEN)


def scale_finding(where: str, value: object, places: int, *, signed: bool = False) -> str | None:
    """None when ``value`` is a plain decimal string with exactly ``places`` decimals (the
    column's scale: a different scale means the amount went through another type on the way)."""
    try:
        money.parse_money(value, places, signed=signed)
    except money.MoneyFormatError as exc:
        return f"{where}: {exc}"
    decimals = len(str(value).partition(".")[2])
    if decimals != places:
        return f"{where}: {value!r} has {decimals} decimals, the amount's scale is {places}"
    return None


def tick_rejection_finding(case: money.TickCase, answer: Answer) -> str | None:
    """None when a misaligned price was refused clearly: 400 ``tick_misaligned`` whose ``tick``
    field and text name the step of the price's band; otherwise what is wrong."""
    expected = case.tick
    if answer.status != 400 or answer.code != "tick_misaligned":
        return (
            f"{case.price} ({case.where}) answered {answer.describe()}, "
            "expected 400 tick_misaligned"
        )
    named = money.as_decimal(answer.field("tick"))
    if named != expected:
        return f"{case.price} was refused naming tick {answer.field('tick')!r}, expected {expected}"
    if str(expected) not in str(answer.field("detail") or ""):
        return f"{case.price} was refused, but the message does not name the tick {expected}"
    return None


# --- bounded properties -------------------------------------------------------------------------


class BudgetSpent(Exception):
    """The property has placed all the orders it may; the example must be rejected."""


@dataclass
class OrderBudget:
    """Results of property examples by their case, and the orders they cost.

    A case seen before is answered from memory (shrinking replays cases; the target is not
    asked twice). A new case once the budget is spent raises :class:`BudgetSpent`.
    """

    max_orders: int
    placed: int = 0
    results: dict[Hashable, str | None] = field(default_factory=dict)

    def run(self, case: Hashable, cost: int, check: Callable[[], str | None]) -> str | None:
        if case in self.results:
            return self.results[case]
        if self.placed + cost > self.max_orders:
            raise BudgetSpent(f"{self.placed} orders placed; the budget is {self.max_orders}")
        self.placed += cost
        finding = check()
        self.results[case] = finding
        return finding

    def findings(self) -> dict[Hashable, str]:
        return {case: f for case, f in self.results.items() if f is not None}


# --- reconciliation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    symbol: str
    side: str
    quantity: int
    price: Decimal
    commission: Decimal

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "buy" else -self.quantity


def net_quantities(fills: Iterable[Fill]) -> dict[str, int]:
    """Signed shares per symbol: buys minus sells."""
    net: dict[str, int] = defaultdict(int)
    for fill in fills:
        net[fill.symbol] += fill.signed_quantity
    return dict(net)


def position_findings(
    expected: Mapping[str, int], positions: Mapping[str, int], source: str
) -> list[str]:
    """Symbols whose open position (``source``: where it was read) is not the net of fills; a
    flat net needs no open position, any other net exactly one."""
    findings = []
    for symbol in sorted(set(expected) | set(positions)):
        net, held = expected.get(symbol, 0), positions.get(symbol, 0)
        if net != held:
            findings.append(f"{symbol}: {source} position {held} shares, fills net {net}")
    return findings


def sum_amounts(amounts: Iterable[Decimal]) -> Decimal:
    return sum(amounts, Decimal("0.00"))


# --- database catalog ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    schema: str
    table: str
    name: str
    data_type: str

    def describe(self) -> str:
        return f"{self.schema}.{self.table}.{self.name} {self.data_type}"


def is_money_column(name: str) -> bool:
    return _MONEY_COLUMN.search(name.lower()) is not None


def float_money_columns(columns: Iterable[Column]) -> list[Column]:
    """Money columns stored as binary floating point (``real`` / ``double precision``)."""
    return [c for c in columns if is_money_column(c.name) and c.data_type in FLOAT_TYPES]


_INDEX = re.compile(
    r"CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?P<name>\S+)\s+ON\s+(?:ONLY\s+)?(?P<table>\S+)"
    r"(?:\s+USING\s+\w+)?\s*\((?P<columns>[^)]*)\)(?:\s+WHERE\s+(?P<predicate>.*))?$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class IndexDef:
    name: str
    unique: bool
    columns: tuple[str, ...]
    predicate: str


def parse_index(indexdef: str) -> IndexDef | None:
    """The parts of a ``pg_indexes.indexdef`` the open-position rule depends on."""
    match = _INDEX.match(indexdef.strip())
    if match is None:
        return None
    columns = tuple(c.strip().strip('"').lower() for c in match["columns"].split(","))
    return IndexDef(match["name"], bool(match["unique"]), columns, match["predicate"] or "")


def is_open_position_index(index: IndexDef) -> bool:
    """UNIQUE on exactly (account_id, symbol), partial on the open status."""
    predicate = re.sub(r"[()\s]|::\w+", "", index.predicate.lower())
    return (
        index.unique
        and set(index.columns) == {"account_id", "symbol"}
        and ("status='open'" in predicate or "'open'=status" in predicate)
    )


def open_position_index_finding(indexdefs: Sequence[str]) -> str | None:
    """None when ``positions`` has the partial unique index; else what the catalog shows."""
    parsed = [p for p in (parse_index(d) for d in indexdefs) if p is not None]
    if any(is_open_position_index(p) for p in parsed):
        return None
    shown = "; ".join(indexdefs) or "no indexes"
    return (
        "positions has no UNIQUE index on (account_id, symbol) WHERE status = 'open' "
        f"(pg_indexes: {shown})"
    )
