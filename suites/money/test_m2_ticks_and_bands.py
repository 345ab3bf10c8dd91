"""M2 BIST tick alignment and inward-rounded price bands.

Prices are drawn on the 0.01 grid of each instrument's band (the prices around every BIST band
edge first): the API must accept exactly the prices on the tick grid of their band and refuse
the others with ``tick_misaligned`` naming the tick. The band itself must be base ± 20 %
rounded inward (upper limit down, lower limit up), both as ``/api/market`` reports it and as
orders at and one tick beyond each limit are answered.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import strategies as st

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import money, orders
from pytest_spark.probes.spark_api import SparkApi, Ticket, new_account, new_key
from suites.limits import Limits

pytestmark = pytest.mark.money("M2")


def drawn_prices(instrument: money.Instrument) -> st.SearchStrategy[money.TickCase]:
    lower, upper = instrument.band
    cents = st.integers(int(lower * 100), int(upper * 100))
    return cents.map(
        lambda c: money.TickCase(instrument.symbol, Decimal(c).scaleb(-2), "drawn in the band")
    )


def test_only_prices_on_the_tick_grid_are_accepted(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    run_property: Callable[..., Any],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    account = new_account("m2-tick")
    edges, unreachable = money.band_edge_cases(instruments)
    if unreachable:
        spark_evidence.note(
            "BIST band edges outside every listed instrument's band (not testable here): "
            + ", ".join(str(e) for e in unreachable)
        )
    cases = st.one_of(st.sampled_from(edges), st.sampled_from(instruments).flatmap(drawn_prices))
    with reach("api_url"):

        def check(case: money.TickCase) -> str | None:
            ticket = Ticket(account, case.symbol, "buy", 1, case.price)
            reply = spark_api.submit(ticket, new_key())
            if case.aligned:
                if reply.status != 201:
                    return f"aligned (tick {case.tick}) but answered {reply.describe()}"
                return None
            return orders.tick_rejection_finding(case, reply)

        result = run_property(cases, check, examples=limits.m2.tick_examples, describe=_tick_case)
    spark_evidence.check(
        "tick_grid_findings",
        len(result.findings),
        limit=limits.m2.tick_grid_findings,
        unit="prices",
        why=f"{len(result.findings)} of {result.examples} prices were answered against the BIST "
        "tick grid (aligned must be accepted, off-grid refused with 400 tick_misaligned naming "
        f"the tick, or the exchange refuses them later); {result.failure(_tick_case)} "
        "(see attachment failing_cases)",
    )


def test_market_bands_rounded_inward(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    findings, rows = [], []
    with reach("api_url"):
        for instrument in instruments:
            band = spark_api.market(instrument.symbol).get("band") or {}
            shown = (money.as_decimal(band.get("lower")), money.as_decimal(band.get("upper")))
            lower, upper = instrument.band
            rows.append((instrument.symbol, instrument.base_price, lower, upper, *shown))
            if shown != (lower, upper):
                findings.append(
                    f"{instrument.symbol} (base {instrument.base_price}): /api/market band "
                    f"{shown[0]}–{shown[1]}, inward-rounded ±20 % is {lower}–{upper}"
                )
    spark_evidence.attach(
        "m2_bands",
        money.table(("symbol", "base", "lower", "upper", "api lower", "api upper"), rows),
    )
    spark_evidence.check(
        "band_findings",
        len(findings),
        limit=limits.m2.band_findings,
        unit="instruments",
        why=f"{len(findings)} of {len(instruments)} price bands are not base ± 20 % rounded "
        "inward to the tick grid, so the API shows limits the exchange does not trade at: "
        + "; ".join(findings)
        + " (attachment m2_bands)",
    )


def limit_prices(instrument: money.Instrument) -> list[tuple[Decimal, bool, str]]:
    """``(price, accepted?, where)``: each limit, and the first tradable price beyond it."""
    lower, upper = instrument.band
    below = lower - money.tick_size(max(lower - money.CENT, money.MIN_PRICE))
    cases = [
        (lower, True, "lower limit"),
        (upper, True, "upper limit"),
        (upper + money.tick_size(upper), False, "one tick above the upper limit"),
    ]
    if below >= money.MIN_PRICE:
        cases.append((below, False, "one tick below the lower limit"))
    return cases


def test_orders_at_the_band_limits(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    account = new_account("m2-band")
    findings, rows = [], []
    with reach("api_url"):
        for instrument in instruments:
            lower, upper = instrument.band
            for price, accepted, where in limit_prices(instrument):
                ticket = Ticket(account, instrument.symbol, "buy", 1, price)
                reply = spark_api.submit(ticket, new_key())
                rows.append((instrument.symbol, price, where, reply.describe()))
                named = (
                    money.as_decimal(reply.field("lower")),
                    money.as_decimal(reply.field("upper")),
                )
                if accepted and reply.status != 201:
                    findings.append(f"{instrument.symbol} @ {price} ({where}): {reply.describe()}")
                elif not accepted and (
                    reply.status != 400
                    or reply.code != "price_out_of_band"
                    or named != (lower, upper)
                ):
                    findings.append(
                        f"{instrument.symbol} @ {price} ({where}) answered {reply.describe()} "
                        f"naming {named[0]}–{named[1]}; expected 400 price_out_of_band naming "
                        f"{lower}–{upper}"
                    )
    spark_evidence.attach(
        "m2_band_limit_orders", money.table(("symbol", "price", "case", "api"), rows)
    )
    spark_evidence.check(
        "band_edge_findings",
        len(findings),
        limit=limits.m2.band_edge_findings,
        unit="orders",
        why=f"{len(findings)} of {len(rows)} orders at or one tick beyond a price limit were "
        "answered wrongly (the limits must be accepted, one tick outside refused with "
        "price_out_of_band naming the band): "
        + "; ".join(findings)
        + " (attachment m2_band_limit_orders)",
    )


def _tick_case(case: money.TickCase) -> str:
    return f"buy 1 {case.symbol} @ {case.price} ({case.where}; tick {case.tick})"
