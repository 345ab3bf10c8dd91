"""Order-grading logic: realised P&L, money scale on the wire, bounded properties,
reconciliation, money columns, the open-position index, and tick refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pytest_spark.probes import money, orders
from pytest_spark.probes.spark_api import Answer


@pytest.mark.parametrize(
    ("average", "price", "closed", "direction", "expected"),
    [
        (Decimal("285.3750"), Decimal("285.25"), 1, 1, Decimal("-0.12")),  # -0.125: even is -0.12
        (Decimal("285.3650"), Decimal("285.25"), 1, 1, Decimal("-0.12")),  # -0.115: even is -0.12
        (Decimal("10.0050"), Decimal("10.00"), 1, -1, Decimal("0.00")),  # short: +0.005 -> 0.00
        (Decimal("10.0000"), Decimal("10.50"), 4, 1, Decimal("2.00")),
    ],
)
def test_realised_pnl_rounds_half_even(
    average: Decimal, price: Decimal, closed: int, direction: int, expected: Decimal
) -> None:
    assert orders.realised_pnl(average, price, closed, direction) == expected


@pytest.mark.parametrize(
    ("value", "places", "signed", "problem"),
    [
        ("285.2500", 4, False, None),
        ("-0.12", 2, True, None),
        ("285.25", 4, False, "has 2 decimals"),
        (285.25, 2, False, "decimal string"),
        ("1e2", 2, False, "not a plain decimal"),
        ("-0.12", 2, False, "negative"),
    ],
)
def test_scale_finding(value: object, places: int, signed: bool, problem: str | None) -> None:
    finding = orders.scale_finding("price", value, places, signed=signed)
    if problem is None:
        assert finding is None
    else:
        assert finding is not None and problem in finding


def test_budget_answers_replays_from_memory_and_stops_at_its_limit() -> None:
    budget = orders.OrderBudget(max_orders=3)
    asked: list[str] = []

    def check(case: str) -> str | None:
        asked.append(case)
        return "wrong" if case == "b" else None

    assert budget.run("a", 2, lambda: check("a")) is None
    assert budget.run("a", 2, lambda: check("a")) is None  # a replay costs nothing
    with pytest.raises(orders.BudgetSpent):
        budget.run("b", 2, lambda: check("b"))
    assert budget.run("b", 1, lambda: check("b")) == "wrong"
    assert asked == ["a", "b"] and budget.placed == 3
    assert budget.findings() == {"b": "wrong"}


def test_positions_reconcile_with_the_net_of_fills() -> None:
    fills = [
        orders.Fill("THYAO", "buy", 10, Decimal("285.25"), Decimal("1.43")),
        orders.Fill("THYAO", "sell", 4, Decimal("285.50"), Decimal("0.57")),
        orders.Fill("SASA", "sell", 3, Decimal("4.58"), Decimal("0.01")),
        orders.Fill("GARAN", "buy", 2, Decimal("128.40"), Decimal("0.13")),
        orders.Fill("GARAN", "sell", 2, Decimal("128.40"), Decimal("0.13")),
    ]
    net = orders.net_quantities(fills)
    assert net == {"THYAO": 6, "SASA": -3, "GARAN": 0}
    assert orders.position_findings(net, {"THYAO": 6, "SASA": -3}, "API") == []
    assert orders.position_findings(net, {"THYAO": 7, "SASA": -3}, "API") == [
        "THYAO: API position 7 shares, fills net 6"
    ]
    assert orders.position_findings(net, {"THYAO": 6}, "database") == [
        "SASA: database position 0 shares, fills net -3"
    ]
    assert orders.sum_amounts(f.commission for f in fills) == Decimal("2.27")
    assert str(orders.sum_amounts([])) == "0.00"


def test_float_money_columns_are_found_by_name_and_type() -> None:
    columns = [
        orders.Column("public", "orders", "price", "numeric"),
        orders.Column("public", "fills", "commission", "double precision"),
        orders.Column("public", "positions", "average_price", "real"),
        orders.Column("public", "metrics", "latency_seconds", "double precision"),
        orders.Column("public", "positions", "realised_pnl", "numeric"),
    ]
    assert [c.name for c in orders.float_money_columns(columns)] == ["commission", "average_price"]
    assert orders.is_money_column("base_price") and orders.is_money_column("realised_pnl")
    assert not orders.is_money_column("quantity") and not orders.is_money_column("priceless")


OPEN_INDEX = (
    "CREATE UNIQUE INDEX open_position_index ON public.positions USING btree "
    "(account_id, symbol) WHERE (status = 'open'::text)"
)


def test_open_position_index_is_recognised_from_pg_indexes() -> None:
    parsed = orders.parse_index(OPEN_INDEX)
    assert parsed == orders.IndexDef(
        "open_position_index", True, ("account_id", "symbol"), "(status = 'open'::text)"
    )
    primary = "CREATE UNIQUE INDEX positions_pkey ON public.positions USING btree (id)"
    assert orders.open_position_index_finding([primary, OPEN_INDEX]) is None


@pytest.mark.parametrize(
    "indexdef",
    [
        OPEN_INDEX.replace("UNIQUE ", ""),
        OPEN_INDEX.split(" WHERE")[0],
        OPEN_INDEX.replace("'open'", "'closed'"),
        OPEN_INDEX.replace("(account_id, symbol)", "(account_id)"),
    ],
    ids=["not-unique", "not-partial", "other-status", "account-only"],
)
def test_near_misses_are_not_the_open_position_index(indexdef: str) -> None:
    finding = orders.open_position_index_finding([indexdef])
    assert finding is not None and indexdef in finding


def problem(status: int, body: dict[str, object]) -> Answer:
    import json

    return Answer(status, json.dumps(body).encode())


def test_tick_rejection_must_be_a_400_naming_the_tick() -> None:
    case = money.TickCase("KOZAL", Decimal("20.01"), "edge")
    ok = problem(400, {"code": "tick_misaligned", "tick": "0.02", "detail": "step 0.02"})
    assert orders.tick_rejection_finding(case, ok) is None
    accepted = problem(201, {"id": 1})
    assert "expected 400" in str(orders.tick_rejection_finding(case, accepted))
    wrong = problem(400, {"code": "tick_misaligned", "tick": "0.01", "detail": "0.01"})
    assert "expected 0.02" in str(orders.tick_rejection_finding(case, wrong))
    vague = problem(400, {"code": "tick_misaligned", "tick": "0.02", "detail": "bad"})
    assert "does not name" in str(orders.tick_rejection_finding(case, vague))
