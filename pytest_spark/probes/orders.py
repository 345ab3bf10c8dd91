"""Orders against the target: tickets, Idempotency-Key submissions, concurrent bursts, and what
the database booked for them (M1–M4, G03).

The money oracle itself (ticks, bands, banker's rounding, the strict wire parser) lives in
:mod:`pytest_spark.probes.money`; this module adds what the order checks grade on top of it:
realised P&L, reconciliation of positions and commissions with fills, money columns stored as
floats, the open-position partial unique index, and the precision-error counter. Pure logic
comes first; the I/O below talks only to the endpoints the target names, with a timeout on
every call. Not imported by ``pytest_spark.plugin`` (loading the plugin must not import httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tomllib
import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from pytest_spark.probes import money

# Column names that hold money or prices; a float type on any of them loses cents.
_MONEY_COLUMN = re.compile(
    r"(^|_)(price|prices|commission|commissions|pnl|notional|amount|fee|fees|cost|balance"
    r"|cash|lower|upper|tick)($|_)"
)
FLOAT_TYPES = frozenset({"real", "double precision"})
PRECISION_ERRORS = "spark_decimal_precision_errors_total"


# --- settings -----------------------------------------------------------------------------------


def load_settings(path: Path) -> dict[str, dict[str, Any]]:
    """``ops/money.toml``: tables of numbers, except ``[market] symbols`` (a list of names)."""
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    settings: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        if not isinstance(table, Mapping):
            raise ValueError(f"{path}: {name} must be a table such as [M1], not a value")
        for key, value in table.items():
            is_symbols = name == "market" and key == "symbols"
            if is_symbols and not (
                isinstance(value, list) and all(isinstance(s, str) for s in value)
            ):
                raise ValueError(f"{path}: [market] symbols must be a list of symbol names")
            if not is_symbols and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"{path}: [{name}] {key} = {value!r} must be a number")
        settings[name] = dict(table)
    return settings


# --- tickets and answers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    """One limit order as the client sends it."""

    account_id: str
    symbol: str
    side: str
    quantity: int
    price: Decimal

    def body(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "price": str(self.price),
        }

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "buy" else -self.quantity

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity

    def describe(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} @ {self.price} ({self.account_id})"


@dataclass(frozen=True)
class Reply:
    """The API's answer to one submission, its body bytes kept for byte-for-byte comparison."""

    status: int
    content: bytes
    replayed: bool = False
    content_type: str = ""

    @cached_property
    def body(self) -> Any:
        try:
            return money.loads_exact(self.content.decode())
        except ValueError:
            return None

    @property
    def code(self) -> str | None:
        code = self.body.get("code") if isinstance(self.body, Mapping) else None
        return None if code is None else str(code)

    def field(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, Mapping) else None

    def describe(self) -> str:
        if self.status in (200, 201):
            return f"{self.status}{' replayed' if self.replayed else ''}"
        detail = self.field("detail") or self.content[:160].decode(errors="replace")
        return f"{self.status} {self.code}: {detail}"


def new_key() -> str:
    return str(uuid.uuid4())


def new_account(purpose: str) -> str:
    """A fresh account per run and purpose, so a rerun never joins an earlier position."""
    return f"{purpose}-{uuid.uuid4().hex[:12]}"


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


# --- metrics ------------------------------------------------------------------------------------


def counter_total(exposition: str, sample_name: str) -> float | None:
    """Sum of a counter's samples over all label sets; None when the metric is not exported."""
    values = [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == sample_name
    ]
    return sum(values) if values else None


# --- I/O: the API -------------------------------------------------------------------------------


def _reply(answer: httpx.Response) -> Reply:
    return Reply(
        answer.status_code,
        answer.content,
        answer.headers.get("idempotent-replayed", "").lower() == "true",
        answer.headers.get("content-type", ""),
    )


def submit(
    client: httpx.Client,
    api_url: str,
    ticket: Ticket,
    key: str | None,
    *,
    content: bytes | None = None,
) -> Reply:
    """``POST /api/orders`` with the key as an sf-string (no header when ``key`` is None);
    ``content`` sends these exact body bytes instead of the ticket's canonical JSON."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = f'"{key}"'
    answer = client.post(
        f"{api_url.rstrip('/')}/api/orders",
        headers=headers,
        content=content if content is not None else json.dumps(ticket.body()).encode(),
    )
    return _reply(answer)


def submit_burst(
    api_url: str, submissions: Sequence[tuple[Ticket, str]], timeout_s: float
) -> list[Reply]:
    """All ``(ticket, key)`` submissions at once, each on its own connection, so that they
    overlap on the server; answers in submission order. The whole burst is bounded by
    ``timeout_s`` (an overrun raises ``TimeoutError``)."""

    async def burst() -> list[Reply]:
        limits = httpx.Limits(max_connections=len(submissions))
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(timeout=timeout_s, limits=limits) as client,
        ):
            # Connections first, so the orders leave together rather than staggered by handshakes.
            await asyncio.gather(
                *(client.get(f"{api_url.rstrip('/')}/health") for _ in submissions)
            )
            answers = await asyncio.gather(
                *(
                    client.post(
                        f"{api_url.rstrip('/')}/api/orders",
                        headers={"Idempotency-Key": f'"{key}"'},
                        json=ticket.body(),
                    )
                    for ticket, key in submissions
                )
            )
        return [_reply(a) for a in answers]

    return asyncio.run(burst())


# The sandbox's test-only hook that holds a keyed order in flight (spark_sandbox/app/holds.py).
HOLDS_PATH = "/_sandbox/holds"
# The sandbox holds a request at most this long, well inside the key's lease.
HOLD_TIMEOUT_S = 5.0
# Answers of a target that has no hold hook (a real deployment).
NO_HOOK_STATUSES = frozenset({401, 403, 404, 405})


@dataclass(frozen=True)
class HeldSubmission:
    """One key submitted twice with a certain overlap: ``first`` was held in flight (key
    claimed, order not yet placed) while ``during`` was submitted under the same key.
    ``during`` is None when the first never reached the hold (refused before its claim)."""

    first: Reply
    during: Reply | None

    @property
    def refused_in_flight(self) -> bool:
        return self.during is not None and is_in_flight_refusal(self.during)


def is_in_flight_refusal(reply: Reply) -> bool:
    return reply.status == 409 and reply.code == "idempotency_key_in_use"


def classify_burst(replies: Sequence[Reply]) -> str:
    """What a burst of one key showed about the in-flight answer:

    - ``refused``: some submission was answered 409 while another was in flight;
    - ``placed_again``: more than one submission placed an order (none was refused in flight);
    - ``no_overlap``: one order, every other answer a replay of it: each later submission
      arrived after the first had completed, so the in-flight answer was never exercised.
    """
    if any(is_in_flight_refusal(r) for r in replies):
        return "refused"
    if sum(r.status in (200, 201) and not r.replayed for r in replies) > 1:
        return "placed_again"
    return "no_overlap"


def submit_while_held(
    api_url: str, ticket: Ticket, key: str, timeout_s: float
) -> HeldSubmission | None:
    """Submit ``key`` while an earlier submission of it is held in flight by the sandbox's
    hold hook; deterministic, unlike a burst. None when the target has no such hook."""
    base = api_url.rstrip("/")
    hold = {"key": key, "timeout_s": HOLD_TIMEOUT_S}

    async def post_order(client: httpx.AsyncClient) -> Reply:
        answer = await client.post(
            f"{base}/api/orders", headers={"Idempotency-Key": f'"{key}"'}, json=ticket.body()
        )
        return _reply(answer)

    async def held() -> HeldSubmission | None:
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=4)) as client,
        ):
            armed = await client.post(f"{base}{HOLDS_PATH}", json=hold)
            if armed.status_code in NO_HOOK_STATUSES:
                return None
            armed.raise_for_status()
            first = asyncio.create_task(post_order(client))
            during = None
            try:
                waited = await client.post(f"{base}{HOLDS_PATH}/await", json=hold)
                if waited.status_code == 200 and waited.json().get("held") is True:
                    during = await post_order(client)
            finally:
                # Released in every case, so the held order completes now rather than later.
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(f"{base}{HOLDS_PATH}/release", json={"key": key})
                first_reply = await first
            return HeldSubmission(first_reply, during)

    return asyncio.run(held())


def get_json(client: httpx.Client, url: str) -> tuple[Any, bytes]:
    """A document with exact decimals, and its raw bytes; a non-2xx answer raises."""
    answer = client.get(url)
    answer.raise_for_status()
    return money.loads_exact(answer.text), answer.content


def read_order(client: httpx.Client, api_url: str, order_id: object) -> Any:
    return get_json(client, f"{api_url.rstrip('/')}/api/orders/{order_id}")[0]


def read_positions(client: httpx.Client, api_url: str, account_id: str) -> list[Any]:
    """``GET /api/positions``: the account's open positions as listed (one per symbol)."""
    answer = client.get(f"{api_url.rstrip('/')}/api/positions", params={"account_id": account_id})
    answer.raise_for_status()
    positions = money.loads_exact(answer.text).get("positions", [])
    return list(positions)


def read_market(client: httpx.Client, api_url: str, symbol: str) -> Any:
    return get_json(client, f"{api_url.rstrip('/')}/api/market/{symbol}")[0]


def read_precision_errors(client: httpx.Client, api_url: str) -> float | None:
    answer = client.get(f"{api_url.rstrip('/')}/metrics")
    answer.raise_for_status()
    return counter_total(answer.text, PRECISION_ERRORS)


# --- I/O: the database --------------------------------------------------------------------------


@dataclass(frozen=True)
class BookedOrder:
    id: int
    symbol: str
    side: str
    quantity: int
    price: Decimal
    commission: Decimal


def _connect(dsn: str, timeout_s: float) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s)), autocommit=True)


def booked_orders(dsn: str, account_id: str, timeout_s: float = 5) -> list[BookedOrder]:
    with _connect(dsn, timeout_s) as conn:
        rows = conn.execute(
            "SELECT id, symbol, side, quantity, price, commission FROM orders"
            " WHERE account_id = %s ORDER BY id",
            (account_id,),
        ).fetchall()
    return [BookedOrder(*row) for row in rows]


def outbox_events_per_order(
    dsn: str, order_ids: Sequence[int], timeout_s: float = 5
) -> dict[int, int]:
    """``order.accepted`` events in ``outbox_events`` per order id (0 for an order with none)."""
    with _connect(dsn, timeout_s) as conn:
        rows = conn.execute(
            "SELECT aggregate_id, count(*) FROM outbox_events"
            " WHERE event_type = 'order.accepted' AND aggregate_id = ANY(%s)"
            " GROUP BY aggregate_id",
            (list(order_ids),),
        ).fetchall()
    counts = {int(order_id): 0 for order_id in order_ids}
    counts.update({int(order_id): int(n) for order_id, n in rows})
    return counts


def booked_fills(dsn: str, account_id: str, timeout_s: float = 5) -> list[Fill]:
    with _connect(dsn, timeout_s) as conn:
        rows = conn.execute(
            "SELECT symbol, side, quantity, price, commission FROM fills"
            " WHERE account_id = %s ORDER BY id",
            (account_id,),
        ).fetchall()
    return [Fill(*row) for row in rows]


def open_position_rows(dsn: str, account_id: str, timeout_s: float = 5) -> list[tuple[str, int]]:
    """``(symbol, quantity)`` of every open position row of the account (duplicates kept)."""
    with _connect(dsn, timeout_s) as conn:
        rows = conn.execute(
            "SELECT symbol, quantity FROM positions"
            " WHERE account_id = %s AND status = 'open' ORDER BY id",
            (account_id,),
        ).fetchall()
    return [(str(symbol), int(quantity)) for symbol, quantity in rows]


def position_amounts(dsn: str, account_id: str, timeout_s: float = 5) -> dict[str, tuple[str, str]]:
    """Open positions' ``(average_price, realised_pnl)`` as the database renders the numerics."""
    with _connect(dsn, timeout_s) as conn:
        rows = conn.execute(
            "SELECT symbol, average_price::text, realised_pnl::text FROM positions"
            " WHERE account_id = %s AND status = 'open'",
            (account_id,),
        ).fetchall()
    return {str(symbol): (str(avg), str(pnl)) for symbol, avg, pnl in rows}


def order_amounts(dsn: str, order_id: int, timeout_s: float = 5) -> tuple[str, str] | None:
    """``(price, commission)`` of one order as the database renders the numerics."""
    with _connect(dsn, timeout_s) as conn:
        row = conn.execute(
            "SELECT price::text, commission::text FROM orders WHERE id = %s", (order_id,)
        ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def application_columns(dsn: str, timeout_s: float = 5) -> list[Column]:
    """Every column of the application's tables (system schemas left out)."""
    with _connect(dsn, timeout_s) as conn:
        rows = conn.execute(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type"
            " FROM information_schema.columns c JOIN information_schema.tables t"
            " USING (table_schema, table_name)"
            " WHERE t.table_type = 'BASE TABLE'"
            " AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND c.table_schema NOT LIKE 'pg_toast%%'"
            " ORDER BY 1, 2, c.ordinal_position"
        ).fetchall()
    return [Column(*row) for row in rows]


def position_indexes(dsn: str, timeout_s: float = 5) -> list[str]:
    """``pg_indexes.indexdef`` of every index on ``positions``."""
    with _connect(dsn, timeout_s) as conn:
        rows = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'positions' ORDER BY indexname"
        ).fetchall()
    return [str(row[0]) for row in rows]


def second_open_position_error(
    dsn: str, account_id: str, symbol: str, timeout_s: float = 5
) -> str | None:
    """Insert two open positions for one account and symbol in a transaction that is always
    rolled back; the SQLSTATE and message the second insert raised, or None if both went in."""
    with _connect(dsn, timeout_s) as conn:
        try:
            with conn.transaction(force_rollback=True):
                for _ in range(2):
                    conn.execute(
                        "INSERT INTO positions (account_id, symbol, status)"
                        " VALUES (%s, %s, 'open')",
                        (account_id, symbol),
                    )
        except psycopg.errors.UniqueViolation as exc:
            return f"{exc.sqlstate} unique_violation: {' '.join(str(exc).split())}"
    return None
