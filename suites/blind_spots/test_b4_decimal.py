"""B4 Decimal behaviour: banker's rounding at every half-way case the API computes, and the
BIST tick grid at each band edge, measured with real orders against an independent oracle.

Each order has its own Idempotency-Key and each run its own accounts, so a rerun against the
same deployment never replays or joins an earlier position. The order count stays near 40.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import money, orders
from pytest_spark.probes.spark_api import Answer, SparkApi, Ticket, new_account, new_key
from suites.limits import Limits

pytestmark = pytest.mark.blind_spot("B4")


def _buy(api: SparkApi, account: str, symbol: str, price: Decimal, quantity: int) -> Answer:
    return api.submit(Ticket(account, symbol, "buy", quantity, price), new_key())


def _half_up(raw: Decimal, places: int) -> Decimal:
    return raw.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def test_commission_rounds_half_even(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    account = new_account("b4-commission")
    rows, findings = [], []
    cases = money.commission_cases(instruments)
    with reach("api_url"):
        for case in cases:
            answer = _buy(spark_api, account, case.symbol, case.price, case.quantity)
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
    header = (
        "symbol",
        "price",
        "qty",
        "notional",
        "raw",
        "neighbour",
        "half-even",
        "half-up",
        "api",
    )
    spark_evidence.attach("b4_commission_cases", money.table(header, rows))
    even = sum(1 for c in cases if c.neighbour == "even")
    spark_evidence.note(
        f"{len(cases)} orders (account {account}) whose commission (notional × 5 bps) is exactly "
        f"half a cent: {even} with an even lower neighbour (half-even rounds down, half-up "
        f"would not), {len(cases) - even} with an odd one; {len(findings)} disagree"
    )
    if not cases:
        spark_evidence.inconclusive("no half-way commission case found for the listed symbols")
    spark_evidence.check(
        "commission_mismatches",
        len(findings),
        limit=limits.b4.commission_mismatches,
        unit="orders",
        why=f"{len(findings)} of {len(cases)} half-way commissions are not banker's rounding, "
        "so fees drift by a cent on every such order: "
        + "; ".join(findings)
        + " (see attachment b4_commission_cases)",
    )


def test_average_price_rounds_half_even(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    rows, findings = [], []
    chosen = instruments[: limits.b4.average_price_instruments]
    cases = [c for i in chosen for c in money.average_price_cases(i)]
    with reach("api_url"):
        for case in cases:
            account = new_account("b4-average")
            refused = [
                f"{case.symbol} {quantity} @ {price}: {answer.describe()}"
                for price, quantity in case.fills
                if (answer := _buy(spark_api, account, case.symbol, price, quantity)).status != 201
            ]
            position = spark_api.position(account, case.symbol)
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
    spark_evidence.check(
        "average_price_mismatches",
        len(findings),
        limit=limits.b4.average_price_mismatches,
        unit="positions",
        why=f"{len(findings)} of {len(cases)} half-way average prices are not banker's "
        "rounding, so P&L is computed from a skewed cost: "
        + "; ".join(findings)
        + " (see attachment b4_average_price_cases)",
    )


def _band_edge_cases(
    instruments: list[money.Instrument], evidence: CheckEvidence
) -> list[money.TickCase]:
    cases, unreachable = money.band_edge_cases(instruments)
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
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    account = new_account("b4-tick")
    rows, findings = [], []
    cases = [c for c in _band_edge_cases(instruments, spark_evidence) if c.aligned]
    with reach("api_url"):
        for case in cases:
            answer = _buy(spark_api, account, case.symbol, case.price, 1)
            if answer.status != 201:
                findings.append(f"{case.symbol} @ {case.price} ({case.where}): {answer.describe()}")
            rows.append((case.symbol, case.price, case.tick, case.where, answer.describe()))
    spark_evidence.attach(
        "b4_aligned_tick_cases", money.table(("symbol", "price", "tick", "case", "api"), rows)
    )
    spark_evidence.note(f"{len(cases)} aligned prices at band edges; {len(findings)} refused")
    spark_evidence.check(
        "aligned_prices_refused",
        len(findings),
        limit=limits.b4.aligned_prices_refused,
        unit="orders",
        why=f"{len(findings)} of {len(cases)} prices on the BIST tick grid were refused, so "
        "traders cannot quote valid prices at a band edge: "
        + "; ".join(findings)
        + " (see attachment b4_aligned_tick_cases)",
    )


def test_misaligned_prices_rejected_naming_the_tick(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    account = new_account("b4-offtick")
    rows, findings = [], []
    cases = [c for c in _band_edge_cases(instruments, spark_evidence) if not c.aligned]
    with reach("api_url"):
        for case in cases:
            answer = _buy(spark_api, account, case.symbol, case.price, 1)
            finding = orders.tick_rejection_finding(case, answer)
            if finding:
                findings.append(f"{case.symbol} {finding}")
            rows.append((case.symbol, case.price, case.tick, case.where, answer.describe()))
    spark_evidence.attach(
        "b4_misaligned_tick_cases", money.table(("symbol", "price", "tick", "case", "api"), rows)
    )
    spark_evidence.note(
        f"{len(cases)} prices off the grid at band edges; {len(findings)} not refused clearly"
    )
    spark_evidence.check(
        "misaligned_prices_not_refused",
        len(findings),
        limit=limits.b4.misaligned_prices_not_refused,
        unit="orders",
        why=f"{len(findings)} of {len(cases)} prices off the BIST tick grid were not refused "
        "with 400 tick_misaligned naming the tick (the exchange would reject them later): "
        + "; ".join(findings)
        + " (see attachment b4_misaligned_tick_cases)",
    )
