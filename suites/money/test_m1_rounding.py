"""M1 Banker's rounding of every computed amount: commission, average price, realised P&L.

Hypothesis draws orders across every listed instrument (so every tick band), with the amounts
that lie exactly half-way between two cents first; each is a real order whose answer must equal
the independent oracle (:mod:`pytest_spark.probes.money`). Amounts of a position are checked
against the position as the API itself reports it, so a quantity error (M4's business) cannot
pass for a rounding error here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import strategies as st

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import money, orders
from pytest_spark.probes.spark_api import SparkApi, Ticket, new_account, new_key
from suites.limits import Limits

pytestmark = pytest.mark.money("M1")

MAX_QUANTITY = 400


def aligned_prices(instrument: money.Instrument) -> list[Decimal]:
    """Every tradable price of the instrument's band, nearest to its base price first."""
    return money.aligned_prices_near(instrument.base_price, instrument.band, 10_000)


def drawn_tickets(instrument: money.Instrument, account: str) -> st.SearchStrategy[Ticket]:
    return st.builds(
        Ticket,
        st.just(account),
        st.just(instrument.symbol),
        st.sampled_from(["buy", "sell"]),
        st.integers(1, MAX_QUANTITY),
        st.sampled_from(aligned_prices(instrument)),
    )


def test_commission_rounds_half_even(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    run_property: Callable[..., Any],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    account = new_account("m1-commission")
    # The cases where half-even and half-up disagree (even lower neighbour) go first.
    half_way = sorted(money.commission_cases(instruments), key=lambda c: c.neighbour != "even")
    tickets = st.one_of(
        st.sampled_from([Ticket(account, c.symbol, "buy", c.quantity, c.price) for c in half_way]),
        st.sampled_from(instruments).flatmap(lambda i: drawn_tickets(i, account)),
    )
    with reach("api_url"):

        def check(ticket: Ticket) -> str | None:
            reply = spark_api.submit(ticket, new_key())
            if reply.status != 201:
                return f"{ticket.describe()} answered {reply.describe()}, expected 201"
            got = money.as_decimal(reply.field("commission"))
            expected = money.commission(ticket.notional)
            if got != expected:
                raw = (ticket.notional * money.COMMISSION_RATE).normalize()
                return f"commission of {raw} came back {got}, half-even to 0.01 is {expected}"
            return None

        result = run_property(
            tickets, check, examples=limits.m1.commission_examples, describe=_ticket
        )
    spark_evidence.note(
        f"{len(half_way)} half-way commissions among the candidates (account {account})"
    )
    spark_evidence.check(
        "commission_mismatches",
        len(result.findings),
        limit=limits.m1.commission_mismatches,
        unit="orders",
        why=f"{len(result.findings)} of {result.examples} orders have a commission that is not "
        "notional × 5 bps rounded half-even to 0.01, so fees drift by a cent; "
        f"{result.failure(_ticket)} (see attachment failing_cases)",
    )


@dataclass(frozen=True)
class PositionCase:
    """Two buys into a new position, then one sell out of it."""

    symbol: str
    buys: tuple[tuple[Decimal, int], tuple[Decimal, int]]
    sell: tuple[Decimal, int]

    def describe(self) -> str:
        buys = " + ".join(f"buy {q} @ {p}" for p, q in self.buys)
        return f"{self.symbol}: {buys}, then sell {self.sell[1]} @ {self.sell[0]}"


def drawn_positions(instrument: money.Instrument) -> st.SearchStrategy[PositionCase]:
    prices = st.sampled_from(aligned_prices(instrument))
    buys = st.tuples(st.tuples(prices, st.integers(1, 50)), st.tuples(prices, st.integers(1, 50)))
    return buys.flatmap(
        lambda b: st.builds(
            PositionCase,
            st.just(instrument.symbol),
            st.just(b),
            # One share stays, so the position stays open and its P&L readable.
            st.tuples(prices, st.integers(1, b[0][1] + b[1][1] - 1)),
        )
    )


def half_way_positions(instruments: list[money.Instrument]) -> list[PositionCase]:
    """Average prices exactly half-way at four places (the oracle's cases), closed one share
    at the first buy's price."""
    return [
        PositionCase(c.symbol, c.fills, (c.fills[0][0], 1))
        for i in instruments[:2]
        for c in money.average_price_cases(i)
    ]


def test_position_amounts_round_half_even(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    run_property: Callable[..., Any],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    cases = st.one_of(
        st.sampled_from(half_way_positions(instruments)),
        st.sampled_from(instruments).flatmap(drawn_positions),
    )
    with reach("api_url"):

        def check(case: PositionCase) -> str | None:
            return position_finding(spark_api, case)

        result = run_property(
            cases,
            check,
            examples=limits.m1.position_examples,
            cost=lambda _: 3,
            describe=PositionCase.describe,
        )
    spark_evidence.check(
        "position_amount_mismatches",
        len(result.findings),
        limit=limits.m1.position_amount_mismatches,
        unit="positions",
        why=f"{len(result.findings)} of {result.examples} positions have an average price "
        "(0.0001) or realised P&L (0.01) that is not half-even, so P&L statements are off; "
        f"{result.failure(PositionCase.describe)} (see attachment failing_cases)",
    )


def position_finding(api: SparkApi, case: PositionCase) -> str | None:
    """Each step's amount against the oracle applied to the position the API reported before."""
    account = new_account("m1-position")
    (p1, q1), (p2, q2) = case.buys
    steps = [("buy", p1, q1), ("buy", p2, q2), ("sell", *case.sell)]
    held: dict[str, Any] = {}
    for step, (side, price, quantity) in enumerate(steps):
        ticket = Ticket(account, case.symbol, side, quantity, price)
        reply = api.submit(ticket, new_key())
        if reply.status != 201:
            return f"{ticket.describe()} answered {reply.describe()}, expected 201"
        before, held = held, api.position(account, case.symbol)
        avg, pnl = (
            money.as_decimal(held.get("average_price")),
            money.as_decimal(held.get("realised_pnl")),
        )
        if step < 2:
            shares = int(before.get("quantity", 0))
            cost = shares * (money.as_decimal(before.get("average_price")) or Decimal(0))
            expected = money.average_price(cost + price * quantity, shares + quantity)
            if avg != expected:
                return (
                    f"after {ticket.describe()} on {shares} shares at "
                    f"{before.get('average_price', '-')}: average price {avg}, half-even to "
                    f"0.0001 is {expected}"
                )
        else:
            reported_avg = money.as_decimal(before.get("average_price")) or Decimal(0)
            expected = orders.realised_pnl(reported_avg, price, quantity, 1)
            if pnl != expected:
                return (
                    f"selling {quantity} @ {price} from average {reported_avg}: realised P&L "
                    f"{pnl}, half-even to 0.01 is {expected}"
                )
    return None


def _ticket(ticket: Ticket) -> str:
    return ticket.describe()
