"""B4 Decimal behaviour: banker's rounding at every half-way case the API computes, and the
BIST tick grid at each band edge, measured with real orders against an independent oracle.

Each order has its own Idempotency-Key and each run its own accounts, so a rerun against the
same deployment never replays or joins an earlier position. The order count stays near 40.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest

from pytest_spark.config import Target
from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.probes import money

Limits = dict[str, dict[str, float]]
Reach = Callable[..., AbstractContextManager[list[str]]]

pytestmark = pytest.mark.blind_spot("B4")

# The instruments Spark lists; one per tick band, so every band edge within ±20 % of a base
# price is reachable. A target lists its own as `market_symbols = "SASA,KOZAL,..."`.
LISTED_SYMBOLS = ("SASA", "KOZAL", "AKBNK", "THYAO", "GARAN", "BIMAS", "ASELS", "FROTO")
# Positions opened to test the average price: two instruments, an even and an odd case each.
AVERAGE_PRICE_INSTRUMENTS = 2


def _symbols(target: Target) -> list[str]:
    listed = target.endpoints.get("market_symbols", "")
    return [s.strip() for s in listed.split(",") if s.strip()] or list(LISTED_SYMBOLS)


def _client(limits: Limits) -> httpx.Client:
    return httpx.Client(timeout=limits["B4"]["http_timeout_s"])


def _instruments(client: httpx.Client, api_url: str, target: Target) -> list[money.Instrument]:
    return [money.read_instrument(client, api_url, symbol) for symbol in _symbols(target)]


def _account(purpose: str) -> str:
    return f"b4-{purpose}-{uuid.uuid4().hex[:12]}"


def _half_up(raw: Decimal, places: int) -> Decimal:
    return raw.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def test_commission_rounds_half_even(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    account = _account("commission")
    rows, findings = [], []
    with reach("api_url") as [api_url], _client(blind_spot_limits) as client:
        cases = money.commission_cases(_instruments(client, api_url, spark_target))
        for case in cases:
            answer = money.place_order(
                client, api_url, account, case.symbol, case.price, case.quantity
            )
            got = money.as_decimal(answer.field("commission")) if answer.status == 201 else None
            if answer.status != 201:
                findings.append(
                    f"{case.symbol} {case.quantity} @ {case.price}: {answer.describe()}"
                )
            elif got != case.expected:
                findings.append(
                    f"{case.symbol} {case.quantity} @ {case.price}: commission of "
                    f"{case.raw_commission.normalize()} came back {got}, half-even is "
                    f"{case.expected}"
                )
            rows.append(
                (
                    case.symbol,
                    case.price,
                    case.quantity,
                    case.notional,
                    case.raw_commission.normalize(),
                    case.neighbour,
                    case.expected,
                    _half_up(case.raw_commission, 2),
                    got if got is not None else answer.describe(),
                )
            )
    header = ("symbol", "price", "qty", "notional", "raw", "neighbour", "half-even", "half-up")
    header += ("api",)
    spark_evidence.attach("b4_commission_cases", money.table(header, rows))
    even = sum(1 for c in cases if c.neighbour == "even")
    spark_evidence.note(
        f"{len(cases)} orders (account {account}) whose commission (notional × 5 bps) is exactly "
        f"half a cent: {even} with an even lower neighbour (half-even rounds down, half-up "
        f"would not), {len(cases) - even} with an odd one; {len(findings)} disagree"
    )
    if not cases:
        spark_evidence.inconclusive("no half-way commission case found for the listed symbols")
    limit = blind_spot_limits["B4"]["commission_mismatches"]
    spark_evidence.measure("commission_mismatches", len(findings), unit="orders", limit=limit)
    assert len(findings) < limit, (
        f"{len(findings)} of {len(cases)} half-way commissions are not banker's rounding "
        f"(limit {limit:g}): " + "; ".join(findings) + " (see attachment b4_commission_cases)"
    )


def test_average_price_rounds_half_even(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    rows, findings = [], []
    with reach("api_url") as [api_url], _client(blind_spot_limits) as client:
        instruments = _instruments(client, api_url, spark_target)[:AVERAGE_PRICE_INSTRUMENTS]
        cases = [c for i in instruments for c in money.average_price_cases(i)]
        for case in cases:
            account = _account("average")
            refused = [
                f"{case.symbol} {quantity} @ {price}: {answer.describe()}"
                for price, quantity in case.fills
                if (
                    answer := money.place_order(
                        client, api_url, account, case.symbol, price, quantity
                    )
                ).status
                != 201
            ]
            position = money.read_positions(client, api_url, account).get(case.symbol, {})
            got = money.as_decimal(position.get("average_price"))
            if refused:
                findings.extend(refused)
            elif got != case.expected or position.get("quantity") != case.quantity:
                findings.append(
                    f"{account} {case.symbol}: {position.get('quantity')} shares at average "
                    f"{got}, expected {case.quantity} at {case.expected} (raw "
                    f"{case.raw_average.normalize()}, half-even to 4 places)"
                )
            fills = " + ".join(f"{q} @ {p}" for p, q in case.fills)
            rows.append(
                (
                    case.symbol,
                    fills,
                    case.raw_average.normalize(),
                    case.neighbour,
                    case.expected,
                    _half_up(case.raw_average, money.AVERAGE_PRICE_PLACES),
                    got if not refused else "refused",
                )
            )
    header = ("symbol", "buys", "raw average", "neighbour", "half-even", "half-up", "api")
    spark_evidence.attach("b4_average_price_cases", money.table(header, rows))
    spark_evidence.note(
        f"{len(cases)} positions opened by two buys whose average price is exactly half-way at "
        f"4 places ({2 * len(cases)} orders); {len(findings)} disagree"
    )
    if not cases:
        spark_evidence.inconclusive("no half-way average-price case found for the symbols")
    limit = blind_spot_limits["B4"]["average_price_mismatches"]
    spark_evidence.measure("average_price_mismatches", len(findings), unit="positions", limit=limit)
    assert len(findings) < limit, (
        f"{len(findings)} of {len(cases)} half-way average prices are not banker's rounding "
        f"(limit {limit:g}): " + "; ".join(findings) + " (see attachment b4_average_price_cases)"
    )


def _band_edge_cases(
    client: httpx.Client, api_url: str, target: Target, evidence: CheckEvidence
) -> list[money.TickCase]:
    cases, unreachable = money.band_edge_cases(_instruments(client, api_url, target))
    if unreachable:
        evidence.note(
            "band edges outside every listed instrument's ±20 % price band (not testable "
            "today): " + ", ".join(str(e) for e in unreachable)
        )
    if not cases:
        evidence.inconclusive("no BIST band edge lies inside a listed instrument's price band")
    return cases


def test_aligned_prices_accepted_at_band_edges(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    account = _account("tick")
    rows, findings = [], []
    with reach("api_url") as [api_url], _client(blind_spot_limits) as client:
        cases = [
            c for c in _band_edge_cases(client, api_url, spark_target, spark_evidence) if c.aligned
        ]
        for case in cases:
            answer = money.place_order(client, api_url, account, case.symbol, case.price, 1)
            if answer.status != 201:
                findings.append(f"{case.symbol} @ {case.price} ({case.where}): {answer.describe()}")
            rows.append((case.symbol, case.price, case.tick, case.where, answer.describe()))
    spark_evidence.attach(
        "b4_aligned_tick_cases", money.table(("symbol", "price", "tick", "case", "api"), rows)
    )
    spark_evidence.note(f"{len(cases)} aligned prices at band edges; {len(findings)} refused")
    limit = blind_spot_limits["B4"]["aligned_prices_refused"]
    spark_evidence.measure("aligned_prices_refused", len(findings), unit="orders", limit=limit)
    assert len(findings) < limit, (
        f"{len(findings)} of {len(cases)} prices on the BIST tick grid were refused (limit "
        f"{limit:g}): " + "; ".join(findings) + " (see attachment b4_aligned_tick_cases)"
    )


def test_misaligned_prices_rejected_naming_the_tick(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    account = _account("offtick")
    rows, findings = [], []
    with reach("api_url") as [api_url], _client(blind_spot_limits) as client:
        cases = [
            c
            for c in _band_edge_cases(client, api_url, spark_target, spark_evidence)
            if not c.aligned
        ]
        for case in cases:
            answer = money.place_order(client, api_url, account, case.symbol, case.price, 1)
            finding = money.tick_rejection_finding(case, answer)
            if finding:
                findings.append(f"{case.symbol} {finding}")
            rows.append((case.symbol, case.price, case.tick, case.where, answer.describe()))
    spark_evidence.attach(
        "b4_misaligned_tick_cases", money.table(("symbol", "price", "tick", "case", "api"), rows)
    )
    spark_evidence.note(
        f"{len(cases)} prices off the grid at band edges; {len(findings)} not refused clearly"
    )
    limit = blind_spot_limits["B4"]["misaligned_prices_not_refused"]
    spark_evidence.measure(
        "misaligned_prices_not_refused", len(findings), unit="orders", limit=limit
    )
    assert len(findings) < limit, (
        f"{len(findings)} of {len(cases)} prices off the BIST tick grid were not refused with "
        f"400 tick_misaligned naming the tick (limit {limit:g}): "
        + "; ".join(findings)
        + " (see attachment b4_misaligned_tick_cases)"
    )
