"""Pure logic of the API, without services: keys, money, positions, bands, flags."""

from __future__ import annotations

from decimal import Decimal

import pytest

from spark_sandbox.app.flags import load_flags
from spark_sandbox.app.idempotency import fingerprint, parse_key
from spark_sandbox.app.money import InvalidMoney, Rounding, parse_money
from spark_sandbox.app.order_rules import band
from spark_sandbox.app.positions import PositionState, apply_fill
from spark_sandbox.app.problems import Problem
from spark_sandbox.app.settings import DEFAULT_FLAGS_FILE


@pytest.mark.parametrize(
    ("header", "key"),
    [('"abc"', "abc"), ("abc", "abc"), (' "a\\"b" ', 'a"b'), ('"a\\\\b"', "a\\b"),
     ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324")],
)  # fmt: skip
def test_idempotency_key_accepts_sf_strings_and_bare_tokens(header: str, key: str) -> None:
    assert parse_key(header) == key


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, "idempotency_key_missing"), ("  ", "idempotency_key_missing"),
     ('"', "idempotency_key_invalid"), ('"a"b"', "idempotency_key_invalid"),
     ('"\\n"', "idempotency_key_invalid"), ('"é"', "idempotency_key_invalid"),
     ('""', "idempotency_key_invalid")],
)  # fmt: skip
def test_idempotency_key_rejections(header: str | None, code: str) -> None:
    with pytest.raises(Problem) as caught:
        parse_key(header)
    assert caught.value.status == 400 and caught.value.code == code


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    a = {"symbol": "THYAO", "price": "285.25", "quantity": 1}
    b = {"quantity": 1, "price": "285.25", "symbol": "THYAO"}
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint({**a, "price": "285.50"})


@pytest.mark.parametrize("text", ["0.01", "285.25", "285.2", "2500", "0"])
def test_parse_money_keeps_exact_decimals(text: str) -> None:
    assert parse_money(text) == Decimal(text)
    assert str(parse_money(text)) == text


@pytest.mark.parametrize("value", ["1e3", "1.005", "NaN", "Infinity", "+1", "-1", "1.", ".5",
                                   "01", 1.5, 2, None])  # fmt: skip
def test_parse_money_refuses_anything_else(value: object) -> None:
    with pytest.raises(InvalidMoney):
        parse_money(value)


@pytest.mark.parametrize(
    ("notional", "even", "up"),
    [("10.00", "0.00", "0.01"), ("30.00", "0.02", "0.02"), ("50.00", "0.02", "0.03"),
     ("70.00", "0.04", "0.04"), ("2852.50", "1.43", "1.43")],
)  # fmt: skip
def test_commission_rounding_modes(notional: str, even: str, up: str) -> None:
    assert Rounding().commission(Decimal(notional)) == Decimal(even)
    assert Rounding(half_up=True).commission(Decimal(notional)) == Decimal(up)


def test_fills_move_a_position_through_zero() -> None:
    r = Rounding()
    flat = PositionState(0, Decimal("0"), Decimal("0"))
    long = apply_fill(flat, 10, Decimal("100.00"), r)
    assert long == PositionState(10, Decimal("100.0000"), Decimal("0"))
    added = apply_fill(long, 10, Decimal("101.00"), r)
    assert added.average_price == Decimal("100.5000")
    reduced = apply_fill(added, -5, Decimal("102.00"), r)
    assert reduced == PositionState(15, Decimal("100.5000"), Decimal("7.50"))
    short = apply_fill(reduced, -20, Decimal("99.00"), r)
    assert short == PositionState(-5, Decimal("99.0000"), Decimal("-15.00"))
    closed = apply_fill(short, 5, Decimal("98.00"), r)
    assert closed.is_flat and closed.realised_pnl == Decimal("-10.00")


def test_band_inward_and_outward() -> None:
    assert band("THYAO") == (Decimal("228.20"), Decimal("342.25"))
    assert band("THYAO", outward=True) == (Decimal("228.20"), Decimal("342.50"))
    assert band("SASA") == (Decimal("3.67"), Decimal("5.49"))
    assert band("SASA", outward=True) == (Decimal("3.66"), Decimal("5.50"))


def test_flags_file_and_its_two_defects() -> None:
    healthy = load_flags(DEFAULT_FLAGS_FILE)["flags"]
    assert len(healthy) >= 6 and all("default" in f for f in healthy)
    assert all(not f["default"] and f["rollout_percent"] == 0 for f in healthy if f["risky"])
    implicit = load_flags(DEFAULT_FLAGS_FILE, frozenset({"implicit_flag_default"}))["flags"]
    assert sum("default" not in f for f in implicit) == 1
    risky_on = load_flags(DEFAULT_FLAGS_FILE, frozenset({"risky_flag_on"}))["flags"]
    assert sum(f["risky"] and f["default"] and f["rollout_percent"] == 100 for f in risky_on) == 1
