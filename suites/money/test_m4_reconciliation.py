"""M4 Reconciliation: positions equal the sum of fills, commissions sum exactly.

Hypothesis draws small order books (buys and sells, one or two symbols) for a fresh account
each; after the book is placed, the positions the API lists and the ones the database holds
must equal the net of the account's fills, and the commissions the API answered must sum to
exactly what the fills and orders tables hold, to the cent.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st

from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.probes import money, orders

Reach = Callable[..., AbstractContextManager[list[str]]]
Settings = dict[str, dict[str, Any]]
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


def place_book(
    client: httpx.Client, api_url: str, account: str, book: Book
) -> tuple[list[orders.Reply], list[str]]:
    replies, refused = [], []
    for symbol, side, quantity, price in book:
        ticket = orders.Ticket(account, symbol, side, quantity, price)
        reply = orders.submit(client, api_url, ticket, orders.new_key())
        replies.append(reply)
        if reply.status != 201:
            refused.append(f"{ticket.describe()} answered {reply.describe()}")
    return replies, refused


def describe_book(book: Book) -> str:
    return "[" + ", ".join(f"{s} {q} {sym} @ {p}" for sym, s, q, p in book) + "]"


def _run_books(
    run_property: Callable[..., Any],
    instruments: list[money.Instrument],
    limits: dict[str, Any],
    check: Callable[[Book], str | None],
) -> Any:
    return run_property(
        order_books(instruments, int(limits["book_orders"]), int(limits["book_symbols"])),
        check,
        examples=int(limits["book_examples"]),
        cost=len,
        describe=describe_book,
    )


def test_positions_equal_the_sum_of_fills(
    reach: Reach,
    api_client: httpx.Client,
    instruments: list[money.Instrument],
    run_property: Callable[..., Any],
    spark_evidence: CheckEvidence,
    money_settings: Settings,
) -> None:
    limits = money_settings["M4"]
    timeout = float(money_settings["market"]["db_connect_timeout_s"])
    with reach("api_url", "postgres_dsn") as [api_url, dsn]:

        def check(book: Book) -> str | None:
            account = orders.new_account("m4-positions")
            replies, refused = place_book(api_client, api_url, account, book)
            fills = orders.booked_fills(dsn, account, timeout)
            accepted = [line for line, r in zip(book, replies, strict=True) if r.status == 201]
            net = orders.net_quantities(fills)
            listed = {
                str(p.get("symbol")): int(p.get("quantity"))
                for p in orders.read_positions(api_client, api_url, account)
            }
            rows = orders.open_position_rows(dsn, account, timeout)
            found = refused + orders.position_findings(net, listed, "API")
            found += orders.position_findings(net, dict(rows), "database")
            if len(rows) != len({symbol for symbol, _ in rows}):
                found.append(f"several open positions for one symbol: {rows}")
            if len(fills) != len(accepted):
                found.append(f"{len(accepted)} accepted orders but {len(fills)} fills booked")
            return f"account {account}: " + "; ".join(found) if found else None

        result = _run_books(run_property, instruments, limits, check)
    limit = limits["position_drift_findings"]
    spark_evidence.measure(
        "position_drift_findings", len(result.findings), unit="order books", limit=limit
    )
    assert len(result.findings) < limit, (
        f"{len(result.findings)} of {result.examples} order books left positions that are not "
        f"the net of their fills (limit {limit:g}); {result.failure(describe_book)} "
        "(see attachment failing_cases)"
    )


def test_commissions_sum_exactly(
    reach: Reach,
    api_client: httpx.Client,
    instruments: list[money.Instrument],
    run_property: Callable[..., Any],
    spark_evidence: CheckEvidence,
    money_settings: Settings,
) -> None:
    limits = money_settings["M4"]
    timeout = float(money_settings["market"]["db_connect_timeout_s"])
    with reach("api_url", "postgres_dsn") as [api_url, dsn]:

        def check(book: Book) -> str | None:
            account = orders.new_account("m4-commission")
            replies, refused = place_book(api_client, api_url, account, book)
            answered = [money.as_decimal(r.field("commission")) for r in replies if r.status == 201]
            if None in answered:
                return f"account {account}: an accepted order has no readable commission"
            api_total = orders.sum_amounts(a for a in answered if a is not None)
            fills_total = orders.sum_amounts(
                f.commission for f in orders.booked_fills(dsn, account, timeout)
            )
            orders_total = orders.sum_amounts(
                o.commission for o in orders.booked_orders(dsn, account, timeout)
            )
            found = list(refused)
            if not api_total == fills_total == orders_total:
                found.append(
                    f"commissions sum to {api_total} in the API's answers, {fills_total} in "
                    f"fills, {orders_total} in orders"
                )
            return f"account {account}: " + "; ".join(found) if found else None

        result = _run_books(run_property, instruments, limits, check)
    limit = limits["commission_sum_findings"]
    spark_evidence.measure(
        "commission_sum_findings", len(result.findings), unit="order books", limit=limit
    )
    assert len(result.findings) < limit, (
        f"{len(result.findings)} of {result.examples} order books have commissions that do not "
        f"sum exactly across the API, fills and orders (limit {limit:g}); "
        f"{result.failure(describe_book)} (see attachment failing_cases)"
    )
