"""B4 money oracle: BIST ticks and bands, banker's rounding, the strict parser, the cases."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_spark.probes import money

D = Decimal


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("0.01", "0.01"),
        ("19.99", "0.01"),
        ("20.00", "0.02"),
        ("49.98", "0.02"),
        ("50.00", "0.05"),
        ("99.95", "0.05"),
        ("100.00", "0.10"),
        ("249.90", "0.10"),
        ("250.00", "0.25"),
        ("499.75", "0.25"),
        ("500.00", "0.50"),
        ("999.50", "0.50"),
        ("1000.00", "1.00"),
        ("2499.00", "1.00"),
        ("2500.00", "2.50"),
        ("99999.00", "2.50"),
    ],
)
def test_tick_size_per_band(price: str, tick: str) -> None:
    assert money.tick_size(D(price)) == D(tick)


def test_no_tick_below_the_minimum_price() -> None:
    with pytest.raises(ValueError, match="below the minimum"):
        money.tick_size(D("0.00"))


@pytest.mark.parametrize(
    ("price", "aligned"),
    [
        ("20.01", False),  # on the old 0.01 grid, not on 0.02
        ("20.02", True),
        ("49.99", False),
        ("50.02", False),
        ("250.10", False),
        ("2501.00", False),
        ("2502.50", True),
        ("0.00", False),
    ],
)
def test_tick_alignment(price: str, aligned: bool) -> None:
    assert money.is_tick_aligned(D(price)) is aligned


def test_band_edges_pair_the_tick_below_with_the_tick_from_the_edge() -> None:
    edges = money.band_edges()
    assert len(edges) == 7
    assert edges[0] == (D("20"), D("0.01"), D("0.02"))
    assert edges[-1] == (D("2500"), D("1.00"), D("2.50"))


@pytest.mark.parametrize(
    ("base", "lower", "upper"),
    [
        ("62.15", "49.72", "74.55"),  # 74.58 rounds down to the 0.05 grid
        ("285.25", "228.20", "342.25"),  # 342.30 rounds down to the 0.25 grid
        ("128.40", "102.80", "154.00"),  # 102.72 rounds up to the 0.10 grid
        ("2750.00", "2200.00", "3300.00"),
    ],
)
def test_price_band_rounds_inward(base: str, lower: str, upper: str) -> None:
    assert money.price_band(D(base)) == (D(lower), D(upper))


@given(st.integers(min_value=100, max_value=1_000_000))
def test_price_band_limits_are_the_nearest_aligned_prices_inside(cents: int) -> None:
    base = D(cents).scaleb(-2)
    lower, upper = money.price_band(base)
    assert money.is_tick_aligned(lower) and money.is_tick_aligned(upper)
    assert base * D("0.8") <= lower and upper <= base * D("1.2")
    # Inward by less than one tick: the next grid point out would be outside the margin.
    assert lower - money.tick_size(lower - D("0.01")) < base * D("0.8")
    assert upper + money.tick_size(upper) > base * D("1.2")


@pytest.mark.parametrize(
    ("notional", "fee"),
    [
        ("10.00", "0.00"),  # 0.005: even neighbour 0, stays down (half-up says 0.01)
        ("30.00", "0.02"),  # 0.015: odd neighbour 1, goes up to the even 2
        ("50.00", "0.02"),  # 0.025
        ("1230.00", "0.62"),  # 0.615
        ("1250.00", "0.62"),  # 0.625
        ("2770.00", "1.38"),  # 1.385
        ("285.25", "0.14"),  # 0.142625: not half-way, ordinary rounding
    ],
)
def test_commission_is_five_bps_rounded_half_even(notional: str, fee: str) -> None:
    assert money.commission(D(notional)) == D(fee)


def test_average_price_rounds_half_even_to_four_places() -> None:
    assert money.average_price(D("36.65"), 8) == D("4.5812")  # 4.58125
    assert money.average_price(D("36.67"), 8) == D("4.5838")  # 4.58375
    with pytest.raises(ValueError):
        money.average_price(D("1"), 0)


def test_half_way_and_neighbour_parity() -> None:
    assert money.is_half_way(D("0.005"), 2) and money.even_neighbour_below(D("0.005"), 2)
    assert money.is_half_way(D("0.015"), 2) and not money.even_neighbour_below(D("0.015"), 2)
    assert not money.is_half_way(D("0.0051"), 2)
    assert not money.is_half_way(D("0.01"), 2)


@pytest.mark.parametrize("text", ["285.25", "0", "10.5", "2500"])
def test_parser_accepts_plain_decimal_strings(text: str) -> None:
    assert money.parse_money(text) == D(text)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (285.25, "decimal string"),
        (1, "decimal string"),
        (D("1.00"), "decimal string"),
        ("1e3", "plain decimal"),
        ("NaN", "plain decimal"),
        ("Infinity", "plain decimal"),
        ("+1", "plain decimal"),
        (" 1", "plain decimal"),
        ("01", "plain decimal"),
        ("1.", "plain decimal"),
        (".5", "plain decimal"),
        ("285.255", "more than 2"),
        ("-1.00", "negative"),
    ],
)
def test_parser_refuses_what_can_lose_digits(value: object, why: str) -> None:
    with pytest.raises(money.MoneyFormatError, match=why):
        money.parse_money(value)


def test_parser_places_and_sign_options() -> None:
    assert money.parse_money("4.5812", places=4) == D("4.5812")
    assert money.parse_money("-12.50", signed=True) == D("-12.50")


def test_exact_json_keeps_the_written_digits() -> None:
    body = money.loads_exact('{"price": 1.10, "quantity": 3}')
    assert body["price"] == D("1.10") and str(body["price"]) == "1.10"
    assert body["quantity"] == 3


def test_walker_finds_money_carried_as_numbers() -> None:
    document = money.loads_exact(
        '{"price": "285.25", "commission": 0.14, "quantity": 2, "ok": true,'
        ' "positions": [{"average_price": 4.5812, "realised_pnl": "0.00"}],'
        ' "band": {"lower": 49.72, "upper": "74.55"}}'
    )
    assert list(money.money_numbers(document)) == [
        "$.commission",
        "$.positions[0].average_price",
        "$.band.lower",
    ]
    assert list(money.money_numbers({"price": True})) == []


def test_as_decimal_compares_strings_and_exact_numbers() -> None:
    assert money.as_decimal("0.14") == D("0.14")
    assert money.as_decimal(D("0.14")) == D("0.14")
    assert money.as_decimal(True) is None
    assert money.as_decimal("abc") is None
    assert money.as_decimal(None) is None


SANDBOX_LIKE = [
    money.Instrument("SASA", D("4.58"), D("0.01")),
    money.Instrument("KOZAL", D("24.50"), D("0.02")),
    money.Instrument("AKBNK", D("62.15"), D("0.05")),
    money.Instrument("GARAN", D("128.40"), D("0.10")),
    money.Instrument("FROTO", D("2750.00"), D("2.50")),
]


def test_commission_cases_are_half_way_with_both_neighbours() -> None:
    cases = money.commission_cases(SANDBOX_LIKE)
    for instrument in SANDBOX_LIKE:
        mine = [c for c in cases if c.symbol == instrument.symbol]
        assert {c.neighbour for c in mine} == {"even", "odd"}, instrument.symbol
        for case in mine:
            assert money.is_half_way(case.raw_commission, 2)
            assert money.is_tick_aligned(case.price) and instrument.within_band(case.price)
    # An even neighbour is exactly where half-up and half-even disagree.
    for case in cases:
        half_up = case.raw_commission.quantize(money.CENT, rounding=ROUND_HALF_UP)
        assert (half_up != case.expected) == (case.neighbour == "even")


def test_average_price_cases_are_half_way_and_tradable() -> None:
    for instrument in SANDBOX_LIKE:
        cases = money.average_price_cases(instrument)
        assert {c.neighbour for c in cases} == {"even", "odd"}, instrument.symbol
        for case in cases:
            assert money.is_half_way(case.raw_average, money.AVERAGE_PRICE_PLACES)
            for price, quantity in case.fills:
                assert quantity > 0 and money.is_tick_aligned(price)
                assert instrument.within_band(price)


def test_band_edge_cases_and_unreachable_edges() -> None:
    cases, unreachable = money.band_edge_cases(SANDBOX_LIKE)
    prices = {(c.symbol, str(c.price)): c for c in cases}
    assert prices[("KOZAL", "19.99")].aligned and prices[("KOZAL", "20.00")].aligned
    assert not prices[("KOZAL", "20.01")].aligned and prices[("KOZAL", "20.01")].tick == D("0.02")
    assert not prices[("AKBNK", "49.99")].aligned
    assert prices[("FROTO", "2501.00")].tick == D("2.50")
    # No listed instrument's ±20 % band spans 100, 250, 500 or 1000.
    assert unreachable == [D("100"), D("250"), D("500"), D("1000")]
    assert money.band_edge_cases([]) == ([], [edge for edge, _, _ in money.band_edges()])


def test_table_lines_up_columns() -> None:
    text = money.table(("a", "long"), [(1, 2), ("xyz", "")])
    assert text.splitlines() == ["a    long", "---  ----", "1    2", "xyz"]
