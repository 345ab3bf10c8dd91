"""Money and BIST rules through the API: tick edges, inward bands, half-even, strings, risk."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from api_harness import Api, place, ticket

# (symbol, aligned price at a band edge, misaligned neighbour, its band's tick)
BAND_EDGES = [
    ("SASA", "4.58", None, "0.01"),
    ("KOZAL", "19.99", "20.01", "0.02"),
    ("KOZAL", "20.00", "20.03", "0.02"),
    ("AKBNK", "49.98", "49.99", "0.02"),
    ("AKBNK", "50.00", "50.01", "0.05"),
    ("GARAN", "249.90", None, "0.10"),
    ("THYAO", "249.90", "249.95", "0.10"),
    ("THYAO", "250.00", "250.10", "0.25"),
    ("BIMAS", "499.75", "499.80", "0.25"),
    ("BIMAS", "500.00", "500.25", "0.50"),
    ("ASELS", "999.50", "999.75", "0.50"),
    ("ASELS", "1000.00", "1000.50", "1.00"),
    ("FROTO", "2499.00", "2499.50", "1.00"),
    ("FROTO", "2500.00", "2501.00", "2.50"),
]


@pytest.mark.parametrize(("symbol", "aligned", "misaligned", "tick"), BAND_EDGES)
def test_tick_alignment_at_each_band_edge(
    api: Api, account: str, symbol: str, aligned: str, misaligned: str | None, tick: str
) -> None:
    with api.client() as client:
        if symbol == "GARAN":
            # GARAN's band (102.72–154.08) cannot reach 249.90: only the band check answers.
            assert place(client, ticket(account, symbol, aligned, 1)).json()["code"] == (
                "price_out_of_band"
            )
            return
        accepted = place(client, ticket(account, symbol, aligned, 1))
        assert accepted.status_code == 201, accepted.text
        if misaligned is None:
            return
        refused = place(client, ticket(account, symbol, misaligned, 1))
    assert refused.status_code == 400
    problem = refused.json()
    assert problem["code"] == "tick_misaligned"
    assert problem["tick"] == tick
    assert tick in problem["detail"]


def test_the_100_edge_rejects_misaligned_prices_before_the_band(api: Api, account: str) -> None:
    # No listed instrument's band straddles 100 TRY; the tick check still answers first.
    with api.client() as client:
        answer = place(client, ticket(account, "GARAN", "99.97", 1))
    assert answer.json()["code"] == "tick_misaligned"


@pytest.mark.parametrize(
    ("symbol", "inside", "outside"),
    [
        # THYAO 285.25 ± 20 %: 228.20 … 342.30; 342.30 is off the 0.25 grid, so 342.25 inward.
        ("THYAO", "342.25", "342.50"),
        ("THYAO", "228.20", "228.10"),
        # SASA 4.58 ± 20 %: 3.664 … 5.496 → 3.67 … 5.49.
        ("SASA", "5.49", "5.50"),
        ("SASA", "3.67", "3.66"),
    ],
)
def test_price_band_is_rounded_inward(
    api: Api, account: str, symbol: str, inside: str, outside: str
) -> None:
    with api.client() as client:
        assert place(client, ticket(account, symbol, inside, 1)).status_code == 201
        refused = place(client, ticket(account, symbol, outside, 1))
        market = client.get(f"/api/market/{symbol}").json()
    assert refused.status_code == 400
    assert refused.json()["code"] == "price_out_of_band"
    assert Decimal(market["band"]["lower"]) <= Decimal(inside) <= Decimal(market["band"]["upper"])


@pytest.mark.parametrize(
    ("price", "quantity", "commission"),
    [
        ("5.00", 2, "0.00"),  # 10.00 × 5 bps = 0.005 → even 0.00 (half-up would give 0.01)
        ("5.00", 10, "0.02"),  # 0.025 → 0.02
        ("5.00", 30, "0.08"),  # 0.075 → 0.08
        ("5.00", 6, "0.02"),  # 0.015 → 0.02
        ("4.58", 3, "0.01"),  # 0.00687 → 0.01, not a half-way case
    ],
)
def test_commission_half_way_cases_round_half_even(
    api: Api, account: str, price: str, quantity: int, commission: str
) -> None:
    with api.client() as client:
        answer = place(client, ticket(account, "SASA", price, quantity))
    assert answer.status_code == 201, answer.text
    assert answer.json()["commission"] == commission


def test_average_price_half_way_case_rounds_half_even(api: Api, account: str) -> None:
    with api.client() as client:
        assert place(client, ticket(account, "SASA", "5.00", 7)).status_code == 201
        assert place(client, ticket(account, "SASA", "5.01", 1)).status_code == 201
        [position] = client.get("/api/positions", params={"account_id": account}).json()[
            "positions"
        ]
    # 40.01 / 8 = 5.00125 → 5.0012 (half-up would give 5.0013)
    assert position["average_price"] == "5.0012"


@pytest.mark.parametrize(
    "price", ["1e2", "285.255", "NaN", "-285.25", " 285.25", "285,25", "", "0285.25", 285.25, 285]
)
def test_money_is_parsed_strictly(api: Api, account: str, price: object) -> None:
    with api.client() as client:
        answer = place(client, {**ticket(account), "price": price})
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_money"


@pytest.mark.parametrize("quantity", [0, -1, 1.5, "10", True])
def test_quantity_is_a_positive_whole_number_of_shares(
    api: Api, account: str, quantity: object
) -> None:
    with api.client() as client:
        answer = place(client, {**ticket(account), "quantity": quantity})
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_order"


def test_unknown_symbol(api: Api, account: str) -> None:
    with api.client() as client:
        answer = place(client, ticket(account, "XXXXX", "10.00", 1))
    assert answer.status_code == 400
    assert answer.json()["code"] == "unknown_symbol"


def _is_money_string(value: object) -> bool:
    return isinstance(value, str) and Decimal(value) == Decimal(value)


def test_money_is_a_string_everywhere(
    api: Api, account: str, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    with api.client() as client:
        order = place(client, ticket(account)).json()
        fetched = client.get(f"/api/orders/{order['id']}").json()
        positions = client.get("/api/positions", params={"account_id": account}).json()
        market = client.get("/api/market/THYAO").json()
    for doc in (order, fetched):
        assert _is_money_string(doc["price"]) and _is_money_string(doc["commission"])
    for position in positions["positions"]:
        assert _is_money_string(position["average_price"])
        assert _is_money_string(position["realised_pnl"])
    for value in (market["base_price"], market["last_price"], *market["band"].values()):
        assert _is_money_string(value)
    payload = db.execute(
        "SELECT payload FROM outbox_events WHERE aggregate_id = %s", (order["id"],)
    ).fetchone()[0]  # type: ignore[index]
    assert _is_money_string(payload["price"]) and _is_money_string(payload["commission"])
    column_types = db.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND column_name IN"
        " ('price', 'commission', 'average_price', 'realised_pnl', 'base_price')"
    ).fetchall()
    assert column_types and {t for _, _, t in column_types} == {"numeric"}


def test_stale_market_data_blocks_orders(
    api_factory: object, account: str, database: object
) -> None:
    # An API whose feed never answers: every symbol is stale.
    stale = api_factory(feed_addr="127.0.0.1:9", wait_for_market=False)  # type: ignore[operator]
    with stale.client() as client:
        answer = place(client, ticket(account))
        metrics = client.get("/metrics").text
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["code"] == "risk_blocked" and problem["reason"] == "stale_market_data"
    assert 'spark_risk_blocks_total{reason="stale_market_data"} 1.0' in metrics


def test_notional_and_position_limits_block_orders(api: Api, account: str) -> None:
    with api.client() as client:
        notional = place(client, ticket(account, "FROTO", "2750.00", 1000))
        assert place(client, ticket(account, "SASA", "4.58", 60_000)).status_code == 201
        position = place(client, ticket(account, "SASA", "4.58", 60_000))
    assert notional.status_code == 422 and notional.json()["reason"] == "notional_limit"
    assert position.status_code == 422 and position.json()["reason"] == "position_limit"


def test_positions_reconcile_with_fills(
    api: Api, account: str, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    with api.client() as client:
        # Open, close flat, reopen, cross through zero to short, reduce the short.
        for side, qty in (("buy", 10), ("sell", 10), ("buy", 5), ("sell", 8), ("buy", 1)):
            answer = place(client, ticket(account, "AKBNK", "62.15", qty, side))
            assert answer.status_code == 201, answer.text
    net = db.execute(
        "SELECT sum(CASE side WHEN 'buy' THEN quantity ELSE -quantity END) FROM fills"
        " WHERE account_id = %s",
        (account,),
    ).fetchone()
    open_qty = db.execute(
        "SELECT coalesce(sum(quantity), 0) FROM positions"
        " WHERE account_id = %s AND status = 'open'",
        (account,),
    ).fetchone()
    assert net == open_qty == (-2,)
    closed = db.execute(
        "SELECT quantity FROM positions WHERE account_id = %s AND status = 'closed'", (account,)
    ).fetchall()
    assert closed == [(0,)]
