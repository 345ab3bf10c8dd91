"""M4 Reconciliation: positions equal the sum of fills, commissions sum exactly.

Hypothesis draws small order books (buys and sells, one or two symbols) for a fresh account
each; after the book is placed, the positions the API lists and the ones the database holds
must equal the net of the account's fills, and the commissions the API answered must sum to
exactly what the fills and orders tables hold, to the cent.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import strategies as st

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import money, orders
from pytest_spark.probes.postgres import Postgres
from pytest_spark.probes.spark_api import Answer, SparkApi, Ticket, new_account, new_key
from suites.limits import Limits, M4Limits

Line = tuple[str, str, int, Decimal]  # symbol, side, quantity, price
Book = tuple[Line, ...]

pytestmark = pytest.mark.money("M4")


def order_books(
    instruments: list[money.Instrument], max_orders: int, max_symbols: int
) -> st.SearchStrategy[Book]:
    def lines(chosen: list[money.Instrument]) -> st.SearchStrategy[Book]:
        line = st.sampled_from(chosen).flatmap(
            lambda i: st.tuples(
                st.just(i.symbol),
                st.sampled_from(["buy", "sell"]),
                st.integers(1, 200),
                st.sampled_from(money.aligned_prices_near(i.base_price, i.band, 10_000)),
            )
        )
        return st.lists(line, min_size=1, max_size=max_orders).map(tuple)

    symbols = st.lists(
        st.sampled_from(instruments), min_size=1, max_size=max_symbols, unique_by=lambda i: i.symbol
    )
    return symbols.flatmap(lines)


def place_book(api: SparkApi, account: str, book: Book) -> tuple[list[Answer], list[str]]:
    replies, refused = [], []
    for symbol, side, quantity, price in book:
        ticket = Ticket(account, symbol, side, quantity, price)
        reply = api.submit(ticket, new_key())
        replies.append(reply)
        if reply.status != 201:
            refused.append(f"{ticket.describe()} answered {reply.describe()}")
    return replies, refused


def describe_book(book: Book) -> str:
    return "[" + ", ".join(f"{s} {q} {sym} @ {p}" for sym, s, q, p in book) + "]"


def _run_books(
    run_property: Callable[..., Any],
    instruments: list[money.Instrument],
    limits: M4Limits,
    check: Callable[[Book], str | None],
) -> Any:
    return run_property(
        order_books(instruments, limits.book_orders, limits.book_symbols),
        check,
        examples=limits.book_examples,
        cost=len,
        describe=describe_book,
    )


def test_positions_equal_the_sum_of_fills(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    run_property: Callable[..., Any],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    with (
        reach("api_url", "postgres_dsn") as [_, dsn],
        Postgres(dsn, limits.market.db_connect_timeout_s) as db,
    ):

        def check(book: Book) -> str | None:
            account = new_account("m4-positions")
            replies, refused = place_book(spark_api, account, book)
            fills = db.booked_fills(account)
            accepted = [line for line, r in zip(book, replies, strict=True) if r.status == 201]
            net = orders.net_quantities(fills)
            listed = {
                str(p.get("symbol")): int(p.get("quantity")) for p in spark_api.positions(account)
            }
            rows = db.open_position_rows(account)
            found = refused + orders.position_findings(net, listed, "API")
            found += orders.position_findings(net, dict(rows), "database")
            if len(rows) != len({symbol for symbol, _ in rows}):
                found.append(f"several open positions for one symbol: {rows}")
            if len(fills) != len(accepted):
                found.append(f"{len(accepted)} accepted orders but {len(fills)} fills booked")
            return f"account {account}: " + "; ".join(found) if found else None

        result = _run_books(run_property, instruments, limits.m4, check)
    spark_evidence.check(
        "position_drift_findings",
        len(result.findings),
        limit=limits.m4.position_drift_findings,
        unit="order books",
        why=f"{len(result.findings)} of {result.examples} order books left positions that are "
        "not the net of their fills, so risk and P&L run on wrong holdings; "
        f"{result.failure(describe_book)} (see attachment failing_cases)",
    )


def test_commissions_sum_exactly(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    run_property: Callable[..., Any],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    with (
        reach("api_url", "postgres_dsn") as [_, dsn],
        Postgres(dsn, limits.market.db_connect_timeout_s) as db,
    ):

        def check(book: Book) -> str | None:
            account = new_account("m4-commission")
            replies, refused = place_book(spark_api, account, book)
            answered = [money.as_decimal(r.field("commission")) for r in replies if r.status == 201]
            if None in answered:
                return f"account {account}: an accepted order has no readable commission"
            api_total = orders.sum_amounts(a for a in answered if a is not None)
            fills_total = orders.sum_amounts(f.commission for f in db.booked_fills(account))
            orders_total = orders.sum_amounts(o.commission for o in db.booked_orders(account))
            found = list(refused)
            if not api_total == fills_total == orders_total:
                found.append(
                    f"commissions sum to {api_total} in the API's answers, {fills_total} in "
                    f"fills, {orders_total} in orders"
                )
            return f"account {account}: " + "; ".join(found) if found else None

        result = _run_books(run_property, instruments, limits.m4, check)
    spark_evidence.check(
        "commission_sum_findings",
        len(result.findings),
        limit=limits.m4.commission_sum_findings,
        unit="order books",
        why=f"{len(result.findings)} of {result.examples} order books have commissions that do "
        "not sum exactly across the API, fills and orders, so the fee ledger does not "
        f"reconcile; {result.failure(describe_book)} (see attachment failing_cases)",
    )
